// Control layer: exports the gateway's sampled request spans to an OpenTelemetry collector — OTLP over HTTP
// (`POST /v1/traces`, JSON or protobuf), from a thread of its own that drains the workers' span queues
// (Gateway.drainSpans), batches them and counts what it exported, dropped and failed to send (its /metrics families).
// The workers never wait
// for it: a slow or dead collector only fills their bounded queues, which then drop (and count) new spans.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import Synchronization

public struct OTLPExporterError: Error, CustomStringConvertible {
    public let description: String
}

public final class OTLPExporter: Sendable {
    /// What the exporter did since it started (for /metrics).
    public struct Counters: Sendable, Equatable {
        /// Spans the collector accepted (a 2xx answer to their batch).
        public var exported = 0
        /// Spans lost: refused by a full worker queue, or in a batch that could not be delivered.
        public var dropped = 0
        /// Batches that could not be delivered (no connection, a timeout, a non-2xx answer); never retried.
        public var failures = 0
    }

    private let gateway: Gateway
    public let host: String
    public let port: UInt16
    public let path: String
    public let encoding: TracingSettings.OTLPEncoding
    /// A batch is sent when it holds this many spans, or `intervalMs` after the previous send.
    private let batchSpans: Int
    private let intervalMs: Int
    /// Connecting to the collector, and each read and write, is bounded by this.
    private let timeoutMs: Int
    private let exported = Atomic<Int>(0)
    private let failedSpans = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let running = Mutex<DispatchSemaphore?>(nil)

    /// `endpoint` is the collector's traces URL: `http://HOST[:PORT][/PATH]` (port 80, as for any http URL, and
    /// /v1/traces when left out; the config loader writes it canonical, with both).
    public init(gateway: Gateway, endpoint: String, encoding: TracingSettings.OTLPEncoding = .json,
                batchSpans: Int = 512, intervalMs: Int = 1_000, timeoutMs: Int = 2_000) throws(OTLPExporterError) {
        guard let url = URL(string: endpoint), url.scheme == "http", let host = url.host, !host.isEmpty else {
            throw OTLPExporterError(description: "tracing.otlpEndpoint: expected http://HOST[:PORT]/v1/traces, got \(endpoint)")
        }
        self.gateway = gateway
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.port = UInt16(url.port ?? 80)
        self.path = url.path.isEmpty ? "/v1/traces" : url.path
        self.encoding = encoding
        self.batchSpans = max(1, batchSpans)
        self.intervalMs = max(1, intervalMs)
        self.timeoutMs = timeoutMs
    }

    public var counters: Counters {
        Counters(exported: exported.load(ordering: .relaxed),
                 dropped: gateway.droppedSpans + failedSpans.load(ordering: .relaxed),
                 failures: failures.load(ordering: .relaxed))
    }

    /// The exporter's families for /metrics (MetricsEndpoint writer): spans exported, spans dropped by reason,
    /// batches that failed.
    public func writeMetrics(into exposition: inout MetricsExposition) {
        exposition.family("sluice_trace_spans_exported", .counter, help: "Sampled request spans the OTLP collector accepted.")
        exposition.counter(MetricLabels(), UInt64(exported.load(ordering: .relaxed)))
        exposition.family("sluice_trace_spans_dropped", .counter,
                          help: "Sampled request spans lost, by reason: queue_full (a worker's export queue was full), export_failed (their batch was not delivered).")
        exposition.counter(MetricLabels(["reason": "queue_full"]), UInt64(gateway.droppedSpans))
        exposition.counter(MetricLabels(["reason": "export_failed"]), UInt64(failedSpans.load(ordering: .relaxed)))
        exposition.family("sluice_trace_export_failures", .counter,
                          help: "OTLP export batches not delivered (no connection, a timeout, a non-2xx answer); never retried.")
        exposition.counter(MetricLabels(), UInt64(failures.load(ordering: .relaxed)))
    }

    /// Starts the export thread; a second call does nothing.
    public func start() {
        running.withLock { done in
            guard done == nil else { return }
            let finished = DispatchSemaphore(value: 0)
            done = finished
            let thread = Thread { [self] in
                run()
                finished.signal()
            }
            thread.name = "sluice-otlp"
            thread.start()
        }
    }

    /// Sends what is queued (one last batch per `batchSpans`, each tried once), then stops the thread.
    public func stop() {
        guard let finished = running.withLock({ $0 }) else { return }
        stopping.store(true, ordering: .releasing)
        finished.wait()
        running.withLock { $0 = nil }
        stopping.store(false, ordering: .releasing)
    }

    private func run() {
        var batch: [FinishedSpan] = []
        batch.reserveCapacity(batchSpans)
        var lastSend = DispatchTime.now().uptimeNanoseconds
        while !stopping.load(ordering: .acquiring) {
            gateway.drainSpans(into: &batch, limit: batchSpans - batch.count)
            let now = DispatchTime.now().uptimeNanoseconds
            if batch.count >= batchSpans || (!batch.isEmpty && now - lastSend >= UInt64(intervalMs) * 1_000_000) {
                send(batch)
                batch.removeAll(keepingCapacity: true)
                lastSend = DispatchTime.now().uptimeNanoseconds
            } else if batch.isEmpty {
                lastSend = now  // an idle exporter sends the first span of a burst within one interval
                usleep(20_000)
            } else {
                usleep(20_000)
            }
        }
        // Stopping: what the workers queued until now goes out, once.
        repeat {
            gateway.drainSpans(into: &batch, limit: batchSpans - batch.count)
            if batch.isEmpty { break }
            send(batch)
            batch.removeAll(keepingCapacity: true)
        } while true
    }

    private func send(_ spans: [FinishedSpan]) {
        let body: [UInt8]
        let contentType: String
        switch encoding {
        case .json:
            body = Array(OTLPEncoder.json(spans).utf8)
            contentType = "application/json"
        case .protobuf:
            body = OTLPEncoder.protobuf(spans)
            contentType = "application/x-protobuf"
        }
        do {
            let client = BlockingClient(host: try Self.resolve(host), port: port, timeoutMilliseconds: timeoutMs)
            let response = try client.send(method: "POST", path: path, headers: [("Host", hostHeader), ("Content-Type", contentType)], body: body)
            guard (200..<300).contains(response.status) else { throw OTLPExporterError(description: "HTTP \(response.status)") }
            exported.store(exported.load(ordering: .relaxed) + spans.count, ordering: .relaxed)
        } catch {
            failures.store(failures.load(ordering: .relaxed) + 1, ordering: .relaxed)
            failedSpans.store(failedSpans.load(ordering: .relaxed) + spans.count, ordering: .relaxed)
        }
    }

    private var hostHeader: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    /// An IP literal as it is; a name through the resolver (at each batch, so a collector that moves is followed).
    private static func resolve(_ host: String) throws -> String {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return host }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else {
            throw OTLPExporterError(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = first.pointee.ai_family
        let ok: Bool
        if family == AF_INET6 {
            ok = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var a = sin6.pointee.sin6_addr
                return inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil
            }
        } else {
            ok = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var a = sin.pointee.sin_addr
                return inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil
            }
        }
        guard ok else { throw OTLPExporterError(description: "cannot resolve \(host)") }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// The OTLP trace messages for a batch of request spans: ExportTraceServiceRequest → ResourceSpans (resource
/// `service.name: sluice`) → ScopeSpans (scope `sluice`) → Span, kind SERVER, with OpenTelemetry's HTTP (and
/// gRPC) semantic-convention attributes and Sluice's own (revision, service, namespace, tag, response flags).
public enum OTLPEncoder {
    /// One attribute value.
    public enum Value: Equatable, Sendable {
        case string(String)
        case int(Int)
    }

    public static let scopeName = "sluice"

    /// OTLP SpanKind SERVER.
    static let kindServer = 2
    /// OTLP StatusCode ERROR (UNSET is 0, and is what a successful server span carries).
    static let statusError = 2

    /// The span's name: `{method}` for HTTP (no route template is known), `{service}/{method}` for gRPC.
    public static func name(of span: FinishedSpan) -> String {
        let r = span.record
        if r.clientProtocol == .grpc {
            let path = r.path.string
            return path.hasPrefix("/") ? String(path.dropFirst()) : path
        }
        return r.method.string
    }

    /// ERROR for a 5xx (or no response at all) on a server span (4xx is the client's error: unset), and for
    /// gRPC the codes the gRPC conventions count as server errors.
    public static func isError(_ span: FinishedSpan) -> Bool {
        let r = span.record
        if r.clientProtocol == .grpc && r.grpcStatus >= 0 {
            return [2, 4, 12, 13, 14, 15].contains(r.grpcStatus)
        }
        return r.status >= 500 || r.status == 0
    }

    /// The span's attributes, in a fixed order.
    public static func attributes(of span: FinishedSpan) -> [(String, Value)] {
        let r = span.record
        var a: [(String, Value)] = []
        a.append(("http.request.method", .string(r.method.string)))
        let target = r.path.string
        if let q = target.firstIndex(of: "?") {
            a.append(("url.path", .string(String(target[..<q]))))
            a.append(("url.query", .string(String(target[target.index(after: q)...]))))
        } else {
            a.append(("url.path", .string(target)))
        }
        a.append(("url.scheme", .string(r.isTLS ? "https" : "http")))
        let (address, port) = splitAuthority(r.authority.string)
        if !address.isEmpty { a.append(("server.address", .string(address))) }
        if let port { a.append(("server.port", .int(port))) }
        if r.status > 0 { a.append(("http.response.status_code", .int(r.status))) }
        if r.status >= 500 { a.append(("error.type", .string(String(r.status)))) }
        a.append(("network.protocol.name", .string("http")))
        a.append(("network.protocol.version", .string(r.clientProtocol == .http11 ? "1.1" : "2")))
        if r.userAgent.count > 0 { a.append(("user_agent.original", .string(r.userAgent.string))) }
        if r.clientAddress.count > 0 { a.append(("client.address", .string(r.clientAddress.string))) }
        if r.clientProtocol == .grpc {
            a.append(("rpc.system", .string("grpc")))
            if r.grpcStatus >= 0 { a.append(("rpc.grpc.status_code", .int(r.grpcStatus))) }
        }
        if let endpoint = r.endpoint {
            a.append(("network.peer.address", .string(endpoint.host)))
            a.append(("network.peer.port", .int(Int(endpoint.port))))
        }
        if r.requestBodyBytes > 0 { a.append(("http.request.body.size", .int(r.requestBodyBytes))) }
        a.append(("http.response.body.size", .int(r.responseBodyBytes)))
        if let revision = r.revision {
            a.append(("kserve.revision", .string(revision.name)))
            a.append(("kserve.inference_service", .string(revision.serviceName)))
            a.append(("kserve.namespace", .string(revision.namespace)))
        }
        if let tag = r.tag { a.append(("kserve.tag", .string(tag))) }
        if r.requestId.count > 0 { a.append(("sluice.request_id", .string(r.requestId.string))) }
        if r.attempts > 1 { a.append(("sluice.attempts", .int(r.attempts))) }
        let flags = r.flags.envoyCodes(status: r.status)
        if flags != "-" { a.append(("sluice.response_flags", .string(flags))) }
        return a
    }

    /// `host[:port]` or `[v6]:port`: the address without brackets, and the port when one is given.
    static func splitAuthority(_ authority: String) -> (String, Int?) {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            let address = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            return (address, rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil)
        }
        if let colon = authority.lastIndex(of: ":"), authority.firstIndex(of: ":") == colon, let port = Int(authority[authority.index(after: colon)...]) {
            return (String(authority[..<colon]), port)
        }
        return (authority, nil)
    }

    /// W3C flags in the low byte, and "the parent's remoteness is known" (0x100), "the parent is remote" (0x200).
    static func spanFlags(_ trace: TraceContext) -> UInt32 {
        UInt32(trace.flags) | 0x100 | (trace.isContinued ? 0x200 : 0)
    }

    // MARK: JSON (OTLP/HTTP JSON mapping: lowerCamelCase names, ids as hex strings, enums as numbers, 64-bit
    // integers as decimal strings)

    public static func json(_ spans: [FinishedSpan]) -> String {
        var out = #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"sluice"}}]},"#
        out += #""scopeSpans":[{"scope":{"name":"sluice"},"spans":["#
        for (i, span) in spans.enumerated() {
            if i > 0 { out += "," }
            appendJSON(span, to: &out)
        }
        out += "]}]}]}"
        return out
    }

    private static func appendJSON(_ span: FinishedSpan, to out: inout String) {
        let trace = span.record.trace
        out += #"{"traceId":""# + trace.traceIdHex + #"","spanId":""# + trace.spanIdHex + #"""#
        if trace.isContinued { out += #","parentSpanId":""# + trace.parentSpanIdHex + #"""# }
        out += #","flags":"# + String(spanFlags(trace))
        out += #","name":"# + quoted(name(of: span))
        out += #","kind":"# + String(kindServer)
        out += #","startTimeUnixNano":""# + String(span.startUnixNs) + #"""#
        out += #","endTimeUnixNano":""# + String(span.endUnixNs) + #"""#
        out += #","attributes":["#
        for (i, (key, value)) in attributes(of: span).enumerated() {
            if i > 0 { out += "," }
            out += #"{"key":"# + quoted(key) + #","value":"#
            switch value {
            case .string(let s): out += #"{"stringValue":"# + quoted(s) + "}"
            case .int(let n): out += #"{"intValue":""# + String(n) + #""}"#
            }
            out += "}"
        }
        out += "]"
        if isError(span) {
            out += #","status":{"code":"# + String(statusError) + "}"
        } else {
            out += #","status":{}"#
        }
        out += "}"
    }

    /// A JSON string literal (RFC 8259 escapes); invalid UTF-8 in the input was already replaced when decoded.
    static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        JSONValue.writeString(s, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Protobuf (opentelemetry/proto/collector/trace/v1 ExportTraceServiceRequest, hand-encoded: the few
    // messages and fields used here)

    public static func protobuf(_ spans: [FinishedSpan]) -> [UInt8] {
        var resource = ProtoWriter()
        resource.message(1, keyValue("service.name", .string("sluice")))  // Resource.attributes
        var scope = ProtoWriter()
        scope.string(1, scopeName)  // InstrumentationScope.name
        var scopeSpans = ProtoWriter()
        scopeSpans.message(1, scope.bytes)  // ScopeSpans.scope
        for span in spans { scopeSpans.message(2, protobufSpan(span)) }  // ScopeSpans.spans
        var resourceSpans = ProtoWriter()
        resourceSpans.message(1, resource.bytes)  // ResourceSpans.resource
        resourceSpans.message(2, scopeSpans.bytes)  // ResourceSpans.scope_spans
        var request = ProtoWriter()
        request.message(1, resourceSpans.bytes)  // ExportTraceServiceRequest.resource_spans
        return request.bytes
    }

    private static func protobufSpan(_ span: FinishedSpan) -> [UInt8] {
        let trace = span.record.trace
        var w = ProtoWriter()
        w.bytes(1, withUnsafeBytes(of: trace.traceId) { Array($0) })  // trace_id
        w.bytes(2, withUnsafeBytes(of: trace.spanId) { Array($0) })  // span_id
        if trace.isContinued { w.bytes(4, withUnsafeBytes(of: trace.parentSpanId) { Array($0) }) }  // parent_span_id
        w.string(5, name(of: span))  // name
        w.varint(6, UInt64(kindServer))  // kind
        w.fixed64(7, span.startUnixNs)  // start_time_unix_nano
        w.fixed64(8, span.endUnixNs)  // end_time_unix_nano
        for (key, value) in attributes(of: span) { w.message(9, keyValue(key, value)) }  // attributes
        var status = ProtoWriter()
        if isError(span) { status.varint(3, UInt64(statusError)) }  // Status.code
        w.message(15, status.bytes)  // status
        w.fixed32(16, spanFlags(trace))  // flags
        return w.bytes
    }

    private static func keyValue(_ key: String, _ value: Value) -> [UInt8] {
        var any = ProtoWriter()
        switch value {
        case .string(let s): any.string(1, s)  // AnyValue.string_value
        case .int(let n): any.varint(3, UInt64(bitPattern: Int64(n)))  // AnyValue.int_value
        }
        var kv = ProtoWriter()
        kv.string(1, key)
        kv.message(2, any.bytes)
        return kv.bytes
    }
}

/// Protocol Buffers wire format: tags, varints, fixed-width and length-delimited fields.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    mutating func varint(_ field: Int, _ value: UInt64) {
        tag(field, 0)
        rawVarint(value)
    }

    mutating func fixed64(_ field: Int, _ value: UInt64) {
        tag(field, 1)
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }

    mutating func fixed32(_ field: Int, _ value: UInt32) {
        tag(field, 5)
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        rawVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ value: [UInt8]) { bytes(field, value) }
}
