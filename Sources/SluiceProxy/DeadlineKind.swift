// Proxy layer: which timer a downstream connection (HTTP/1.1) or stream (HTTP/2) has armed.

enum DeadlineKind {
    case handshake, requestHead, keepAliveIdle, upstreamConnect, upstreamResponse, requestBodyIdle, responseBodyIdle
    /// HTTP/1.1 lingering close: the end of reading and dropping what the client still sends.
    case lingering
    case none
}
