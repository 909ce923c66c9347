// Proxy layer: which timer a downstream connection (HTTP/1.1) or stream (HTTP/2) has armed.

enum DeadlineKind {
    case handshake, requestHead, keepAliveIdle, upstreamConnect, upstreamResponse, requestBodyIdle, responseBodyIdle, none
}
