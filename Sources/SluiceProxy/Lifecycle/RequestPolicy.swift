// Proxy layer: the policy one request runs under — timeouts, limits, retries and response headers — resolved once per
// request (phase 3 of RequestLifecycle.swift), so that a hand-over mid-request changes neither its routes nor its
// limits; the route's own parts (a revision's timeout, a service's retries) are resolved when it is routed.
import SluiceRouting

struct RequestPolicy {
    /// Upstream TCP connect (and TLS handshake).
    let upstreamConnectMs: Int
    /// From the request being sent to the pod's response head, over all attempts; 0 disables it. The revision's
    /// `spec.predictor.timeout` when it has one.
    private(set) var upstreamResponseMs: Int
    /// Longest silence while a body streams in either direction.
    let bodyIdleMs: Int
    /// 413 above; 0 means no limit.
    let maxRequestBodyBytes: Int
    /// Buffering per direction; a side stops being read when its peer's buffer holds this much.
    let bufferBytes: Int
    /// `Sluice-Revision` on responses.
    let revisionHeader: Bool
    /// `x-envoy-attempt-count` on responses.
    let attemptCountHeader: Bool
    /// The gateway's retry policy until `resolve` puts the service's in its place.
    private(set) var retries: RetryPolicy

    init(settings: ProxySettings) {
        upstreamConnectMs = settings.timeouts.upstreamConnectMs
        upstreamResponseMs = settings.timeouts.upstreamResponseMs
        bodyIdleMs = settings.timeouts.bodyIdleMs
        maxRequestBodyBytes = settings.limits.maxRequestBodyBytes
        bufferBytes = settings.limits.bufferBytes
        revisionHeader = settings.revisionHeader
        attemptCountHeader = settings.attemptCountHeader
        retries = settings.retries
    }

    /// A mirrored request's (ShadowExchange.swift): never retried, and the mirror's own timeout when one is set.
    mutating func resolveShadow(revision: Revision, mirror: MirrorSettings) {
        retries = .none
        if let own = revision.responseTimeoutMs { upstreamResponseMs = own }
        if mirror.timeoutMs > 0 { upstreamResponseMs = mirror.timeoutMs }
    }

    /// The routed request's own parts: its service's retry policy, its revision's response timeout.
    mutating func resolve(service: ServiceRoute, revision: Revision) {
        if let own = service.retries { retries = own }
        if let own = revision.responseTimeoutMs { upstreamResponseMs = own }
    }
}
