// Routing layer: when a failed attempt gets another one — the conditions, the count, the per-try timeout, the replay
// bound and the retry budget — per service (config `retries:`, a service's own `retries:`, or the manifest annotation
// `serving.sluice.dev/retries`), with Istio's ingress defaults.

/// What makes a failed attempt worth another one. Names as Envoy's `retry_on` where one exists.
public struct RetryConditions: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The TCP connect (or the TLS handshake) failed or timed out: the pod never saw the request.
    public static let connectFailure = RetryConditions(rawValue: 1 << 0)
    /// HTTP/2 REFUSED_STREAM, or a GOAWAY that left the stream unprocessed (RFC 9113 §8.7: not processed).
    public static let refusedStream = RetryConditions(rawValue: 1 << 1)
    /// The connection ended before the whole request was written to it: the pod cannot have had all of it.
    public static let resetBeforeRequest = RetryConditions(rawValue: 1 << 2)
    /// The connection ended after the whole request was sent and before any response byte, for idempotent methods
    /// only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE: RFC 9110 §9.2.2 lets a client repeat those on its own).
    public static let resetIdempotent = RetryConditions(rawValue: 1 << 3)
    /// As `resetIdempotent`, for every method: a POST the pod read before it died is delivered twice.
    public static let reset = RetryConditions(rawValue: 1 << 4)
    /// The pod answered with one of `retriableStatusCodes` (503 by default: Knative's queue-proxy overload answer).
    public static let retriableStatusCodes = RetryConditions(rawValue: 1 << 5)

    /// The configuration names, in the order they are documented.
    public static let names: [(String, RetryConditions)] = [
        ("connect-failure", .connectFailure), ("refused-stream", .refusedStream),
        ("reset-before-request", .resetBeforeRequest), ("reset-idempotent", .resetIdempotent),
        ("reset", .reset), ("retriable-status-codes", .retriableStatusCodes),
    ]

    public static let defaults: RetryConditions = [.connectFailure, .refusedStream, .resetBeforeRequest, .resetIdempotent, .retriableStatusCodes]
}

/// One service's retry policy.
public struct RetryPolicy: Hashable, Sendable {
    /// Retries after the first try (Istio's default: 2); 0 turns retries off.
    public var attempts = 2
    /// Longest wait for one try's response head; 0: only the overall `timeouts.upstreamResponse`. A try that runs
    /// past it is retried whatever the conditions say (setting it is the opt-in), and the pod is sent the request again.
    public var perTryTimeoutMs = 0
    public var retryOn = RetryConditions.defaults
    /// The statuses `retriable-status-codes` retries, 400...599; kept inline (a bit per status), so that copying a
    /// policy into each request's costs no reference count on a buffer every worker shares.
    public var retriableStatusCodes: [Int] {
        get { (400...599).filter { statusBits.contains($0) } }
        set { statusBits = StatusBits(newValue) }
    }
    private var statusBits = StatusBits([503])
    /// A request is retried only while every byte sent is still held; a bigger upload is not retried.
    public var maxReplayBytes = 64 * 1024
    /// At most this percent of a revision's active requests (per worker) may be retries...
    public var budgetPercent = 20
    /// ...but always this many, so that a quiet revision can still retry.
    public var budgetMinConcurrency = 3

    public init() {}

    /// No retries at all.
    public static let none: RetryPolicy = { var p = RetryPolicy(); p.attempts = 0; return p }()

    @inline(__always)
    public func retries(status: Int) -> Bool {
        retryOn.contains(.retriableStatusCodes) && statusBits.contains(status)
    }

    /// The statuses a retry may be made for: 400...599 (a 2xx or 3xx is an answer, not a failure).
    public static let retriableStatusRange = 400...599
}

/// A set of statuses in 400...599 as 200 bits.
struct StatusBits: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(_ statuses: [Int]) {
        for status in statuses where RetryPolicy.retriableStatusRange.contains(status) {
            let bit = status - 400
            switch bit >> 6 {
            case 0: words.0 |= 1 << UInt64(bit & 63)
            case 1: words.1 |= 1 << UInt64(bit & 63)
            case 2: words.2 |= 1 << UInt64(bit & 63)
            default: words.3 |= 1 << UInt64(bit & 63)
            }
        }
    }

    @inline(__always)
    func contains(_ status: Int) -> Bool {
        guard RetryPolicy.retriableStatusRange.contains(status) else { return false }
        let bit = status - 400
        let word: UInt64
        switch bit >> 6 {
        case 0: word = words.0
        case 1: word = words.1
        case 2: word = words.2
        default: word = words.3
        }
        return word & (1 << UInt64(bit & 63)) != 0
    }

    static func == (a: StatusBits, b: StatusBits) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(words.0); hasher.combine(words.1); hasher.combine(words.2); hasher.combine(words.3)
    }
}

/// Passive outlier ejection (Envoy's `outlier_detection`), for every endpoint of the gateway.
public struct OutlierDetection: Hashable, Sendable {
    /// Consecutive gateway failures (connect failure, reset, timeout) that eject an endpoint; 0 disables.
    public var consecutiveGatewayFailures = 5
    /// Consecutive 5xx answers (gateway failures count too) that eject an endpoint; 0 disables.
    public var consecutive5xx = 5
    /// An endpoint is ejected for this long times the number of its ejections so far...
    public var baseEjectionMs = 30_000
    /// ...at most this long; an endpoint not ejected for this long starts from one again.
    public var maxEjectionMs = 300_000
    /// At most this percent of a revision's endpoints are ejected at once (always at least one may be).
    public var maxEjectionPercent = 50

    public init() {}
}
