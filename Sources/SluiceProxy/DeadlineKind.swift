// Proxy layer: which timer a downstream connection (HTTP/1.1) or stream (HTTP/2) has armed (the TLS handshake's is
// ClientAcceptor's own).

enum DeadlineKind {
    case requestHead, keepAliveIdle, upstreamConnect, upstreamResponse, requestBodyIdle, responseBodyIdle
    /// HTTP/1.1 lingering close: the end of reading and dropping what the client still sends.
    case lingering
    /// Waiting in a revision's containerConcurrency queue.
    case queued
    case none
}
