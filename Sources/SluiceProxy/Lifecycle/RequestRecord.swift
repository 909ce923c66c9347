// Proxy layer: what one request was — a fixed-size, allocation-free record filled as the lifecycle's phases run and
// handed once to `Worker.finish`. Metrics, access logs and traces read it; nothing else keeps per-request history.
import SluiceIO
import SluiceRouting

/// A short byte string stored inline (no heap): longer input is cut and `isTruncated` says so.
public struct InlineText<let capacity: Int>: Sendable {
    private var storage = InlineArray<capacity, UInt8>(repeating: 0)
    public private(set) var count = 0
    public private(set) var isTruncated = false

    public init() {}

    mutating func set(_ bytes: UnsafeRawBufferPointer) {
        let n = min(bytes.count, capacity)
        withUnsafeMutableBytes(of: &storage) { out in
            if n > 0 { out.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: n) }
        }
        count = n
        isTruncated = bytes.count > capacity
    }

    mutating func set(_ bytes: [UInt8]) { bytes.withUnsafeBytes { set($0) } }

    mutating func clear() { count = 0; isTruncated = false }

    /// The bytes, valid inside `body` only.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: storage) { body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    /// As text (allocates: for logs and tests, never on the request path).
    public var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }
}

public struct RequestRecord: Sendable {
    /// What the client spoke for this request.
    public enum ClientProtocol: UInt8, Sendable {
        case http11
        case h2
        /// gRPC over HTTP/2 (`content-type: application/grpc…`), relayed to an HTTP/2 pod.
        case grpc
    }

    /// How the request ended.
    public enum Outcome: UInt8, Sendable {
        /// Still running (never seen by finish).
        case inFlight
        /// The pod's whole response reached our side of the client connection.
        case completed
        /// The gateway answered itself (`gatewayAnswer` says why): no route, no endpoint, timeouts, limits, bad input.
        case gatewayAnswered
        /// Ended without a complete response: the client left, the pod broke off mid-response, a body timed out.
        case aborted
    }

    /// Envoy-style response flags: what went wrong, for logs and metrics (several may be set).
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// NR: no service serves the host.
        public static let noRoute = Flags(rawValue: 1 << 0)
        /// UH: the revision had no (ready) endpoint, or no revision had traffic.
        public static let noHealthyUpstream = Flags(rawValue: 1 << 1)
        /// UF: connecting to the pod failed (or timed out: with `upstreamConnectTimeout`).
        public static let upstreamConnectFailure = Flags(rawValue: 1 << 2)
        /// The pod did not accept the connection in time.
        public static let upstreamConnectTimeout = Flags(rawValue: 1 << 3)
        /// UT: the pod did not answer in time.
        public static let upstreamRequestTimeout = Flags(rawValue: 1 << 4)
        /// UC: the pod closed or reset the connection (before or during the response).
        public static let upstreamConnectionTermination = Flags(rawValue: 1 << 5)
        /// UPE: the pod's response was not valid HTTP.
        public static let upstreamProtocolError = Flags(rawValue: 1 << 6)
        /// DC: the client closed or reset before the response was complete.
        public static let downstreamConnectionTermination = Flags(rawValue: 1 << 7)
        /// DPE: the request was malformed (a 4xx from the parser or a framing error in the body).
        public static let downstreamProtocolError = Flags(rawValue: 1 << 8)
        /// The client was too slow (request head or body timeout: 408).
        public static let downstreamTimeout = Flags(rawValue: 1 << 9)
        /// SI: a body went silent for longer than the body idle timeout after the response started.
        public static let streamIdleTimeout = Flags(rawValue: 1 << 10)
        /// A limit refused the request (413, 414, 431).
        public static let limitExceeded = Flags(rawValue: 1 << 11)
        /// More than one attempt was made (a retry).
        public static let retried = Flags(rawValue: 1 << 12)
        /// The gateway was draining (shutdown) when the request ended early.
        public static let draining = Flags(rawValue: 1 << 13)
        /// Refused by a concurrency limit: a revision's containerConcurrency queue (Envoy's UO, upstream overflow).
        public static let upstreamOverflow = Flags(rawValue: 1 << 14)
    }

    public internal(set) var clientProtocol: ClientProtocol = .http11
    public internal(set) var isTLS = false
    public internal(set) var method = InlineText<12>()
    /// Host (HTTP/1.1) or `:authority` (HTTP/2), as the client sent it.
    public internal(set) var authority = InlineText<96>()
    public internal(set) var path = InlineText<160>()
    public internal(set) var requestId = InlineText<40>()
    /// The client's `User-Agent`, cut at 128 bytes.
    public internal(set) var userAgent = InlineText<128>()
    /// The client's IP address as text (the connection's peer).
    public internal(set) var clientAddress = InlineText<46>()
    /// W3C Trace Context of the request (continued from `traceparent`, or started by the gateway).
    public internal(set) var trace = TraceContext()
    /// The route: nil until routed (and for requests refused before a revision was picked).
    public internal(set) var revision: Revision?
    /// The tag the request was routed by (`latest`, `prev`), if any.
    public internal(set) var tag: String?
    /// The endpoint of the last attempt.
    public internal(set) var endpoint: Endpoint?
    /// The status sent to the client (0: none was sent).
    public internal(set) var status = 0
    /// The gRPC status of a gRPC call (-1: none seen).
    public internal(set) var grpcStatus = -1
    /// Why the gateway answered itself, when it did.
    public internal(set) var gatewayAnswer: GatewayAnswer?
    /// Request and response body bytes as relayed (without framing).
    public internal(set) var requestBodyBytes = 0
    public internal(set) var responseBodyBytes = 0
    /// Monotonic nanoseconds: first request byte (HTTP/1.1) or stream opened (HTTP/2); 0 where the phase never ran.
    public internal(set) var startNs: UInt64 = 0
    /// The pod's connection was ready for this request (connected, or reused from the pool).
    public internal(set) var upstreamConnectedNs: UInt64 = 0
    /// The pod's response head arrived.
    public internal(set) var firstResponseByteNs: UInt64 = 0
    public internal(set) var endNs: UInt64 = 0
    /// Tries toward pods (0: never routed to one).
    public internal(set) var attempts = 0
    public internal(set) var outcome: Outcome = .inFlight
    public internal(set) var flags: Flags = []

    public init() {}

    /// What an owner with no request open reads.
    static let empty = RequestRecord()

    /// Starts the record of a new request: every field back to empty, field by field (the texts only forget their
    /// length: rewriting their storage would cost more than the rest of the record).
    mutating func open(_ clientProtocol: ClientProtocol, isTLS: Bool, now: UInt64) {
        self.clientProtocol = clientProtocol
        self.isTLS = isTLS
        method.clear()
        authority.clear()
        path.clear()
        requestId.clear()
        userAgent.clear()
        clientAddress.clear()
        trace = TraceContext()
        revision = nil
        tag = nil
        endpoint = nil
        status = 0
        grpcStatus = -1
        gatewayAnswer = nil
        requestBodyBytes = 0
        responseBodyBytes = 0
        startNs = now
        upstreamConnectedNs = 0
        firstResponseByteNs = 0
        endNs = 0
        attempts = 0
        outcome = .inFlight
        flags = []
    }

    /// Copies what the head says (method, authority, path) into the record.
    mutating func noteHead(method: UnsafeRawBufferPointer, authority: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer) {
        self.method.set(method)
        self.authority.set(authority)
        self.path.set(path)
    }

    mutating func noteRoute(revision: Revision, tag: TagRoute?) {
        self.revision = revision
        self.tag = tag?.tag
    }

    /// The request ended: its outcome, the status the client got (nil: the one recorded as the pod's head was
    /// relayed), why, and when.
    mutating func close(_ outcome: Outcome, status: Int?, flags: Flags, isDraining: Bool, now: UInt64) {
        self.outcome = outcome
        if let status { self.status = status }
        self.flags.formUnion(flags)
        if attempts > 1 { self.flags.insert(.retried) }
        if outcome == .aborted && isDraining { self.flags.insert(.draining) }
        endNs = now
    }

    /// Total time from start to end in nanoseconds (0 while in flight).
    public var durationNs: UInt64 { endNs > startNs && startNs > 0 ? endNs - startNs : 0 }
}

extension RequestRecord.Flags {
    /// Envoy's short response flags for these flags, in Envoy's order (its ResponseFlag enum) — the one mapping
    /// the access log, Istio's `response_flags` label and span attributes all print. Flags Envoy has no letter for
    /// give none: a retry that succeeded (Envoy's URX means retries exhausted), draining, a client timeout (Envoy's
    /// 408s carry no flag), a 413. A head over its limit (414, 431) is a codec error in Envoy: DPE.
    public func forEachEnvoyCode(status: Int, _ body: (StaticString) -> Void) {
        if contains(.noHealthyUpstream) { body("UH") }
        if contains(.upstreamRequestTimeout) { body("UT") }
        if contains(.upstreamConnectFailure) || contains(.upstreamConnectTimeout) { body("UF") }
        if contains(.upstreamConnectionTermination) { body("UC") }
        if contains(.noRoute) { body("NR") }
        if contains(.downstreamConnectionTermination) { body("DC") }
        if contains(.streamIdleTimeout) { body("SI") }
        if contains(.downstreamProtocolError) || (contains(.limitExceeded) && (status == 414 || status == 431)) { body("DPE") }
        if contains(.upstreamProtocolError) { body("UPE") }
        if contains(.upstreamOverflow) { body("UO") }
    }

    /// The codes comma-separated, `-` for none, as Envoy prints `%RESPONSE_FLAGS%` (allocates: not for the request path).
    public func envoyCodes(status: Int) -> String {
        var codes: [String] = []
        forEachEnvoyCode(status: status) { codes.append($0.description) }
        return codes.isEmpty ? "-" : codes.joined(separator: ",")
    }
}
