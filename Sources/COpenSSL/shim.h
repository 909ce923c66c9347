// OpenSSL headers for Swift (TLS arrives with the TLS issue; linked now for `sluice version`).
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
