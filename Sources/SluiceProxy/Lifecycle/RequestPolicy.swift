// Proxy layer: the policy one request runs under — timeouts, limits and response headers — resolved once per request
// (phase 3 of RequestLifecycle.swift), so that a hand-over mid-request changes neither its routes
// nor its limits, and per-route policy (a revision's own timeout, retries) has one place to be resolved in.
struct RequestPolicy {
    /// Upstream TCP connect (and TLS handshake).
    let upstreamConnectMs: Int
    /// From the request being sent to the pod's response head; 0 disables it.
    let upstreamResponseMs: Int
    /// Longest silence while a body streams in either direction.
    let bodyIdleMs: Int
    /// 413 above; 0 means no limit.
    let maxRequestBodyBytes: Int
    /// Buffering per direction; a side stops being read when its peer's buffer holds this much.
    let bufferBytes: Int
    /// `Sluice-Revision` on responses.
    let revisionHeader: Bool

    init(settings: ProxySettings) {
        upstreamConnectMs = settings.timeouts.upstreamConnectMs
        upstreamResponseMs = settings.timeouts.upstreamResponseMs
        bodyIdleMs = settings.timeouts.bodyIdleMs
        maxRequestBodyBytes = settings.limits.maxRequestBodyBytes
        bufferBytes = settings.limits.bufferBytes
        revisionHeader = settings.revisionHeader
    }
}
