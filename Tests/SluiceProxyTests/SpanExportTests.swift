// Integration: OTLP span export — a small OTLP/HTTP receiver in the test gets the sampled requests' spans (JSON
// and protobuf) and checks their ids against what the client sent and the pod saw, their timing against the pod's
// known delay, and their attributes; a dead or stalled collector costs spans (counted), never request latency.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

/// An OTLP/HTTP traces receiver on 127.0.0.1: keeps every POST to /v1/traces (content type and body).
final class OTLPReceiver: @unchecked Sendable {  // `posts` is guarded by `condition`
    private let condition = NSCondition()
    private var posts: [(contentType: String, body: [UInt8])] = []
    private(set) var server: BlockingServer!

    init() throws {
        server = try BlockingServer(port: 0) { [unowned self] request in
            guard request.method == "POST", request.path == "/v1/traces" else { return .text(status: 404, "no") }
            condition.lock()
            posts.append((request.header("content-type") ?? "", request.body))
            condition.broadcast()
            condition.unlock()
            return .json("{}")
        }
        server.start()
    }

    var endpoint: String { "http://127.0.0.1:\(server.port)/v1/traces" }

    /// The posts received so far, once `done` holds for them (fails after `seconds`).
    func wait(seconds: Double = 10, until done: ([(contentType: String, body: [UInt8])]) -> Bool,
              file: StaticString = #filePath, line: UInt = #line) -> [(contentType: String, body: [UInt8])] {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !done(posts) {
            if !condition.wait(until: deadline) { XCTFail("the receiver did not get what was expected in time", file: file, line: line); break }
        }
        return posts
    }

    func stop() { server.stop() }
}

final class SpanExportTests: XCTestCase {
    static let podDelayMs = 60

    /// A pod that answers with the request head it received (one `name: value` a line); /slow after a known
    /// delay, /fail with a 503.
    static let pod: @Sendable (BlockingRequest) -> BlockingResponse = { request in
        if request.path == "/slow" { usleep(UInt32(podDelayMs * 1000)) }  // the pod's own work, which the span must cover
        let lines = ["\(request.method) \(request.target)"] + request.headers.map { "\($0.name.lowercased()): \($0.value)" }
        return BlockingResponse(status: request.path == "/fail" ? 503 : 200, headers: [("Content-Type", "text/plain")],
                                body: Array(lines.joined(separator: "\n").utf8))
    }

    private func gateway(pod: UInt16, collector: String, queue: Int = 2048) throws -> Gateway {
        try Gateway(settings: GatewayFixture.settings(workers: 1) {
            $0.tracing.otlpEndpoint = collector
            $0.tracing.sampleRate = 1
            $0.tracing.exportQueueSpans = queue
        }, routes: GatewayFixture.table(split: 0, ports: (pod, pod)))
    }

    /// The spans of every JSON post, flattened: resourceSpans → scopeSpans → spans.
    static func jsonSpans(_ posts: [(contentType: String, body: [UInt8])]) -> [[String: Any]] {
        var spans: [[String: Any]] = []
        for post in posts {
            guard let root = try? JSONSerialization.jsonObject(with: Data(post.body)) as? [String: Any] else { continue }
            for rs in root["resourceSpans"] as? [[String: Any]] ?? [] {
                for ss in rs["scopeSpans"] as? [[String: Any]] ?? [] { spans += ss["spans"] as? [[String: Any]] ?? [] }
            }
        }
        return spans
    }

    static func attributes(_ span: [String: Any]) -> [String: Any] {
        var out: [String: Any] = [:]
        for a in span["attributes"] as? [[String: Any]] ?? [] {
            guard let key = a["key"] as? String, let value = a["value"] as? [String: Any] else { continue }
            out[key] = value["stringValue"] ?? value["intValue"]
        }
        return out
    }

    func testSampledRequestsArriveAsOTLPJSONSpansWithTheirIdsTimingAndAttributes() throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let pod = try BlockingServer(port: 0, handler: Self.pod)
        pod.start()
        defer { pod.stop() }
        let g = try gateway(pod: pod.port, collector: receiver.endpoint)
        defer { g.shutdown(graceMs: 1000) }
        let exporter = try OTLPExporter(gateway: g, endpoint: receiver.endpoint, encoding: .json, intervalMs: 100)
        exporter.start()
        defer { exporter.stop() }

        let before = UInt64(Date().timeIntervalSince1970 * 1e9)
        let c = try TestClient(port: g.port)
        let slow = try c.request("POST", "/slow?x=1", host: serviceHost,
                                 headers: [("traceparent", TracePropagationTests.traceparent), ("User-Agent", "span-test/1")], body: "{}")
        XCTAssertEqual(slow.status, 200)
        let fail = try c.request("GET", "/fail", host: serviceHost)
        XCTAssertEqual(fail.status, 503)
        let after = UInt64(Date().timeIntervalSince1970 * 1e9)
        let podSaw = try XCTUnwrap(TracePropagationTests.seen(slow.text)["traceparent"]?.first.flatMap { TraceContext.parse(traceparent: $0) })
        let failSaw = try XCTUnwrap(TracePropagationTests.seen(fail.text)["traceparent"]?.first.flatMap { TraceContext.parse(traceparent: $0) })

        let posts = receiver.wait { Self.jsonSpans($0).count >= 2 }
        XCTAssertTrue(posts.allSatisfy { $0.contentType == "application/json" })
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(posts[0].body)) as? [String: Any])
        let resource = try XCTUnwrap(((root["resourceSpans"] as? [[String: Any]])?.first?["resource"] as? [String: Any]))
        XCTAssertEqual(Self.attributes(resource)["service.name"] as? String, "sluice")
        let spans = Self.jsonSpans(posts)
        XCTAssertEqual(spans.count, 2)

        let span = try XCTUnwrap(spans.first { $0["traceId"] as? String == TracePropagationTests.clientTrace }, "the client's trace id")
        XCTAssertEqual(span["parentSpanId"] as? String, TracePropagationTests.clientSpan, "the client's span is the parent")
        XCTAssertEqual(span["spanId"] as? String, podSaw.parentSpanIdHex, "the span is the one the pod saw as its parent")
        XCTAssertEqual(span["kind"] as? Int, 2, "SPAN_KIND_SERVER")
        XCTAssertEqual(span["name"] as? String, "POST")
        let start = try XCTUnwrap(UInt64(span["startTimeUnixNano"] as? String ?? ""))
        let end = try XCTUnwrap(UInt64(span["endTimeUnixNano"] as? String ?? ""))
        XCTAssertLessThanOrEqual(start, end)
        XCTAssertGreaterThanOrEqual(end - start, UInt64(Self.podDelayMs) * 1_000_000, "the span covers the pod's delay")
        // Wall-clock time: within the test's own window (1 ms of slack for the clocks' granularity).
        XCTAssertGreaterThanOrEqual(start + 1_000_000, before)
        XCTAssertLessThanOrEqual(end, after + 1_000_000)
        let a = Self.attributes(span)
        XCTAssertEqual(a["http.request.method"] as? String, "POST")
        XCTAssertEqual(a["url.path"] as? String, "/slow")
        XCTAssertEqual(a["url.query"] as? String, "x=1")
        XCTAssertEqual(a["server.address"] as? String, serviceHost)
        XCTAssertEqual(a["http.response.status_code"] as? String, "200", "int64 as a decimal string (OTLP JSON)")
        XCTAssertEqual(a["network.protocol.version"] as? String, "1.1")
        XCTAssertEqual(a["user_agent.original"] as? String, "span-test/1")
        XCTAssertEqual(a["client.address"] as? String, "127.0.0.1")
        XCTAssertEqual(a["network.peer.address"] as? String, "127.0.0.1")
        XCTAssertEqual(a["network.peer.port"] as? String, String(pod.port))
        XCTAssertEqual(a["kserve.revision"] as? String, rev1)
        XCTAssertEqual(a["kserve.inference_service"] as? String, "sklearn-iris")
        XCTAssertEqual(a["kserve.namespace"] as? String, "kserve-test")
        XCTAssertNil((span["status"] as? [String: Any])?["code"], "a 200 leaves the status unset")

        let failed = try XCTUnwrap(spans.first { $0["traceId"] as? String == failSaw.traceIdHex }, "the started trace's id")
        XCTAssertNil(failed["parentSpanId"], "a trace started here has no parent")
        XCTAssertEqual(failed["spanId"] as? String, failSaw.parentSpanIdHex)
        XCTAssertEqual((failed["status"] as? [String: Any])?["code"] as? Int, 2, "STATUS_CODE_ERROR for a 5xx")
        XCTAssertEqual(Self.attributes(failed)["http.response.status_code"] as? String, "503")

        // The receiver has the batch before the exporter has read its answer.
        XCTAssertTrue(Self.eventually { exporter.counters.exported == 2 }, "counted as exported: \(exporter.counters)")
        let counters = exporter.counters
        XCTAssertEqual(counters.dropped, 0)
        XCTAssertEqual(counters.failures, 0)
        var exposition = MetricsExposition(format: .prometheus)
        exporter.writeMetrics(into: &exposition)
        let text = String(decoding: exposition.finish(), as: UTF8.self)
        XCTAssertTrue(text.contains("\nsluice_trace_spans_exported_total 2\n"), text)
        XCTAssertTrue(text.contains("\nsluice_trace_spans_dropped_total{reason=\"queue_full\"} 0\n"), text)
        XCTAssertTrue(text.contains("\nsluice_trace_export_failures_total 0\n"), text)
    }

    func testProtobufEncodingCarriesTheSameSpan() throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let pod = try BlockingServer(port: 0, handler: Self.pod)
        pod.start()
        defer { pod.stop() }
        let g = try gateway(pod: pod.port, collector: receiver.endpoint)
        defer { g.shutdown(graceMs: 1000) }
        let exporter = try OTLPExporter(gateway: g, endpoint: receiver.endpoint, encoding: .protobuf, intervalMs: 50)
        exporter.start()
        defer { exporter.stop() }
        let c = try TestClient(port: g.port)
        let r = try c.request("GET", "/slow", host: serviceHost, headers: [("traceparent", TracePropagationTests.traceparent)])
        let podSaw = try XCTUnwrap(TracePropagationTests.seen(r.text)["traceparent"]?.first.flatMap { TraceContext.parse(traceparent: $0) })
        let post = try XCTUnwrap(receiver.wait { !$0.isEmpty }.first)
        XCTAssertEqual(post.contentType, "application/x-protobuf")
        // ExportTraceServiceRequest.resource_spans(1) → ResourceSpans.scope_spans(2) → ScopeSpans.spans(2) → Span.
        let resourceSpans = try XCTUnwrap(Proto.fields(post.body)[1]?.first)
        let resourceAttribute = try XCTUnwrap(Proto.fields(try XCTUnwrap(Proto.fields(resourceSpans)[1]?.first))[1]?.first)
        XCTAssertEqual(Proto.fields(resourceAttribute)[1]?.first.map { String(decoding: $0, as: UTF8.self) }, "service.name")
        let scopeSpans = try XCTUnwrap(Proto.fields(resourceSpans)[2]?.first)
        let spans = Proto.fields(scopeSpans)[2] ?? []
        XCTAssertEqual(spans.count, 1)
        let span = Proto.fields(try XCTUnwrap(spans.first))
        XCTAssertEqual(span[1]?.first.map(Proto.hex), TracePropagationTests.clientTrace, "trace_id")
        XCTAssertEqual(span[2]?.first.map(Proto.hex), podSaw.parentSpanIdHex, "span_id: the pod's parent")
        XCTAssertEqual(span[4]?.first.map(Proto.hex), TracePropagationTests.clientSpan, "parent_span_id: the client's span")
        XCTAssertEqual(span[5]?.first.map { String(decoding: $0, as: UTF8.self) }, "GET")
        XCTAssertEqual(span[6]?.first, [2], "kind SERVER (varint)")
        let start = try XCTUnwrap(span[7]?.first.map(Proto.fixed64)), end = try XCTUnwrap(span[8]?.first.map(Proto.fixed64))
        XCTAssertGreaterThanOrEqual(end - start, UInt64(Self.podDelayMs) * 1_000_000)
        let keys = (span[9] ?? []).compactMap { Proto.fields($0)[1]?.first.map { String(decoding: $0, as: UTF8.self) } }
        for key in ["http.request.method", "url.path", "server.address", "http.response.status_code", "network.protocol.version", "kserve.revision"] {
            XCTAssertTrue(keys.contains(key), key)
        }
        XCTAssertTrue(Self.eventually { exporter.counters.exported == 1 }, "counted as exported: \(exporter.counters)")
    }

    /// Whether `condition` became true within `seconds` (checked every few milliseconds).
    static func eventually(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() >= deadline { return false }
            usleep(2_000)
        }
        return true
    }

    func testADeadCollectorCountsFailuresAndDropsWithoutFailingRequests() throws {
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        let pod = try BlockingServer(port: 0, handler: Self.pod)
        pod.start()
        defer { pod.stop() }
        let endpoint = "http://127.0.0.1:\(deadPort)/v1/traces"
        let g = try gateway(pod: pod.port, collector: endpoint, queue: 4)
        defer { g.shutdown(graceMs: 1000) }
        let exporter = try OTLPExporter(gateway: g, endpoint: endpoint, intervalMs: 20, timeoutMs: 500)
        exporter.start()
        let c = try TestClient(port: g.port)
        for _ in 0..<10 { XCTAssertEqual(try c.request("GET", "/", host: serviceHost).status, 200) }
        XCTAssertTrue(Self.eventually { exporter.counters.failures > 0 })
        exporter.stop()  // the rest is tried once more, and fails too
        let counters = exporter.counters
        XCTAssertGreaterThanOrEqual(counters.failures, 1)
        XCTAssertEqual(counters.exported, 0)
        XCTAssertEqual(counters.dropped, 10, "every span was lost: refused by the full queue or in a failed batch")
        var exposition = MetricsExposition(format: .prometheus)
        exporter.writeMetrics(into: &exposition)
        let text = String(decoding: exposition.finish(), as: UTF8.self)
        XCTAssertTrue(text.contains("\nsluice_trace_export_failures_total \(counters.failures)\n"), text)
        XCTAssertTrue(text.contains("sluice_trace_spans_dropped_total{reason=\"export_failed\"}"), text)
    }

    func testAStalledCollectorNeverSlowsRequestsAndTheFullQueueDrops() throws {
        // A collector that accepts and reads but never answers: the exporter waits out its timeout.
        final class Accepted: @unchecked Sendable {  // `count` is guarded by `condition`
            let condition = NSCondition()
            var count = 0
        }
        let accepted = Accepted()
        let stalled = RawBackend()
        stalled.start { conn in
            accepted.condition.lock(); accepted.count += 1; accepted.condition.broadcast(); accepted.condition.unlock()
            while (try? conn.fill()) == true {}  // until the exporter gives up and closes
        }
        defer { stalled.stop() }
        let pod = try BlockingServer(port: 0, handler: Self.pod)
        pod.start()
        defer { pod.stop() }
        let endpoint = "http://127.0.0.1:\(stalled.port)/v1/traces"
        let g = try gateway(pod: pod.port, collector: endpoint, queue: 4)
        defer { g.shutdown(graceMs: 1000) }
        let exporter = try OTLPExporter(gateway: g, endpoint: endpoint, intervalMs: 1, timeoutMs: 1_000)
        exporter.start()
        defer { exporter.stop() }
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/", host: serviceHost).status, 200)
        // The first span's batch is now stuck at the collector.
        accepted.condition.lock()
        let until = Date().addingTimeInterval(10)
        while accepted.count == 0 { if !accepted.condition.wait(until: until) { break } }
        let connections = accepted.count
        accepted.condition.unlock()
        XCTAssertEqual(connections, 1, "the exporter is sending to the stalled collector")

        var slowest = 0.0
        for _ in 0..<30 {
            let t = Date()
            XCTAssertEqual(try c.request("GET", "/", host: serviceHost).status, 200)
            slowest = max(slowest, Date().timeIntervalSince(t))
        }
        XCTAssertLessThan(slowest, 0.5, "requests never wait for the exporter (it is blocked for 1 s)")
        XCTAssertGreaterThanOrEqual(g.droppedSpans, 30 - 4, "the queue holds 4; the rest is dropped and counted")
        XCTAssertGreaterThanOrEqual(exporter.counters.dropped, 30 - 4)
    }
}

/// Just enough of the protobuf wire format to read the exporter's messages back: length-delimited fields as bytes,
/// varints as their bytes, fixed-width fields as their bytes, by field number.
enum Proto {
    static func fields(_ bytes: [UInt8]) -> [Int: [[UInt8]]] {
        var out: [Int: [[UInt8]]] = [:]
        var i = 0
        func varint() -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < bytes.count {
                let b = bytes[i]; i += 1
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { break }
                shift += 7
            }
            return v
        }
        while i < bytes.count {
            let key = varint()
            let field = Int(key >> 3)
            switch key & 7 {
            case 0:
                let start = i
                _ = varint()
                out[field, default: []].append(Array(bytes[start..<i]))
            case 1:
                out[field, default: []].append(Array(bytes[i..<min(i + 8, bytes.count)])); i += 8
            case 5:
                out[field, default: []].append(Array(bytes[i..<min(i + 4, bytes.count)])); i += 4
            case 2:
                let n = Int(varint())
                out[field, default: []].append(Array(bytes[i..<min(i + n, bytes.count)])); i += n
            default:
                return out
            }
        }
        return out
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func fixed64(_ bytes: [UInt8]) -> UInt64 {
        bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}
