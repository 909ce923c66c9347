// libnghttp2 headers for Swift (HTTP/2 arrives with its own issue; linked now for `sluice version`).
#include <nghttp2/nghttp2.h>
