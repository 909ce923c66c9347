// Proxy layer: every knob of the data plane (listeners, timeouts, limits, headers, TLS), as plain values.
import SluiceHTTP1
import SluiceRouting
import SluiceTLS

/// An IP literal and port to listen on or connect to.
public struct SocketAddressSpec: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public init(host: String, port: UInt16) { self.host = host; self.port = port }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Timeouts in milliseconds. Zero disables the timeout where noted.
public struct ProxyTimeouts: Hashable, Sendable {
    /// From accept (or the end of the previous request) to the end of the request head; absolute, 408 and close.
    public var requestHeaderMs: Int = 10_000
    /// Downstream keep-alive idle between requests.
    public var keepAliveIdleMs: Int = 75_000
    /// Upstream TCP connect.
    public var upstreamConnectMs: Int = 5_000
    /// From the request being sent to the upstream's response head; 0 disables it (streaming).
    public var upstreamResponseMs: Int = 300_000
    /// Longest silence while a body streams in either direction.
    public var bodyIdleMs: Int = 60_000
    public init() {}
}

/// Size limits for one connection and request.
public struct ProxyLimits: Hashable, Sendable {
    /// Request line plus header block (431 above; 414 when the target alone is over `maxRequestTargetBytes`).
    public var maxHeaderBytes: Int = 60 * 1024
    public var maxHeaderCount: Int = 100
    public var maxRequestTargetBytes: Int = 8 * 1024
    /// 413 above; 0 means no limit.
    public var maxRequestBodyBytes: Int = 1024 * 1024 * 1024
    /// Per-connection buffer in each direction; a side stops being read when its peer's buffer is full.
    public var bufferBytes: Int = 32 * 1024
    /// Requests served on one downstream keep-alive connection before it is closed.
    public var maxRequestsPerConnection: Int = 10_000
    /// HTTP/2 streams served on one client connection before a graceful GOAWAY (the client reconnects);
    /// HAProxy reports ~1000 renews connections "without perceptible latency" (hardening.md §2.8).
    public var maxStreamsPerConnection: Int = 1_000
    public init() {}
}

/// TLS termination on the listener. Turning TLS on or off needs a restart; certificates reload in place
/// (`Gateway.reloadTLS`).
public struct TLSSettings: Hashable, Sendable {
    /// The first is the default certificate (no SNI, or a name no certificate covers).
    public var certificates: [TLSCertificateFiles]
    /// From accept to the end of the handshake; a silent or slow client is closed after this.
    public var handshakeTimeoutMs: Int = 10_000
    /// Offer `h2` in ALPN (before `http/1.1`); `tls.http2: false` in the configuration offers only HTTP/1.1.
    public var offersH2 = true
    public init(certificates: [TLSCertificateFiles]) { self.certificates = certificates }
}

/// How the gateway verifies pods on `https://` endpoints (HTTP/1.1 over TLS). Verification is always on: the pod's
/// certificate must chain to `caFile` (nil: the system's default trust store) and name `serverName`, or, without
/// one, the endpoint's IP address (an IP subjectAltName).
public struct UpstreamTLSSettings: Hashable, Sendable {
    /// PEM file of the CA certificates pods' certificates are issued by; nil uses the system trust store.
    public var caFile: String?
    /// Sent as SNI and checked against the certificate's DNS names; nil checks the endpoint's IP instead (no SNI).
    public var serverName: String?
    public init(caFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
    }
}

/// Requests beyond a revision's `containerConcurrency` wait here, served in order as slots free.
public struct RevisionQueueSettings: Hashable, Sendable {
    /// Requests waiting per slot (Knative's queue-proxy: 10 × containerConcurrency per pod); beyond, 503.
    public var depthPerSlot = 10
    /// Longest wait in the queue; then 503.
    public var timeoutMs = 10_000
    public init() {}
}

/// Traffic mirroring's bounds (a service's share and target are its routes': ServiceSpec.mirror).
public struct MirrorSettings: Hashable, Sendable {
    /// Mirrored requests in flight per worker and target revision; a mirror over it is dropped (`dropped_full`).
    public var maxInFlight = 64
    /// A mirrored request's response timeout; 0: the target revision's (its `spec.predictor.timeout`, else
    /// `timeouts.upstreamResponse`).
    public var timeoutMs = 0
    /// The largest request (head as sent plus body) copied for a mirror; a larger or longer one is not mirrored
    /// (`dropped_body`). The retry replay bound's default: the shadow is a buffered copy, like a replay.
    public var maxRequestBytes = 64 * 1024
    public init() {}
}

/// Everything the data plane needs besides the routes.
public struct ProxySettings: Hashable, Sendable {
    public var listen = SocketAddressSpec(host: "127.0.0.1", port: 8080)
    /// Number of workers (threads with their own epoll, listener and pools); nil means one per core.
    public var workers: Int? = nil
    public var admin = SocketAddressSpec(host: "127.0.0.1", port: 15000)
    public var timeouts = ProxyTimeouts()
    public var limits = ProxyLimits()
    /// Adds `Sluice-Revision: <revision>` to every proxied response.
    public var revisionHeader = true
    /// TLS on the listener; nil for plain HTTP.
    public var tls: TLSSettings? = nil
    /// Verification of pods on `https://` endpoints.
    public var upstreamTLS = UpstreamTLSSettings()
    /// How long a shutdown (SIGTERM) lets in-flight requests finish before the rest are cut; 30 s as Kubernetes'
    /// default terminationGracePeriodSeconds, since inference requests and LLM streams run long.
    public var shutdownTimeoutMs = 30_000
    public var metrics = MetricsSettings()
    public var accessLog = AccessLogSettings()
    public var tracing = TracingSettings()
    /// Every service's retry policy unless it has its own (a static service's `retries:`, the manifest annotation).
    public var retries = RetryPolicy()
    /// Passive outlier ejection of endpoints.
    public var outlierDetection = OutlierDetection()
    /// The queue of a revision with a `containerConcurrency`, as Knative's queue-proxy keeps it.
    public var revisionQueue = RevisionQueueSettings()
    /// `x-envoy-attempt-count: N` on every proxied response (Envoy's `include_attempt_count_in_response`).
    public var attemptCountHeader = false
    /// Traffic mirroring's bounds: in flight, timeout, copied size.
    public var mirror = MirrorSettings()
    public init() {}
}

extension HTTP1Limits {
    /// The head bounds the proxy's parsers apply: request heads from clients, response heads from pods.
    init(_ limits: ProxyLimits) {
        self.init()
        maxHeadBytes = limits.maxHeaderBytes
        maxHeaderCount = limits.maxHeaderCount
        maxTargetBytes = limits.maxRequestTargetBytes
    }
}
