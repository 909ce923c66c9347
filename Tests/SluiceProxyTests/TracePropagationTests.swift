// Integration: W3C Trace Context through the gateway, on HTTP/1.1, HTTP/2 and gRPC — what the pod receives as
// `traceparent`/`tracestate` (continued, started, replaced), B3 untouched, `traceresponse` to the client when asked,
// and the trace ids and User-Agent in the request record.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import XCTest

final class TracePropagationTests: XCTestCase {
    static let clientTrace = "0af7651916cd43dd8448eb211c80319c"
    static let clientSpan = "b7ad6b7169203331"
    static let traceparent = "00-\(clientTrace)-\(clientSpan)-01"
    static let tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    static let b3: [(String, String)] = [
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"),
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"), ("x-b3-sampled", "1"),
    ]
    /// What the pod answers as its own `traceresponse` (replaced by ours when the gateway sends one).
    static let podTraceResponse = "00-11111111111111111111111111111111-2222222222222222-01"

    /// A pod that answers with the request head it received, one `name: value` per line, and a traceresponse.
    static let echo: @Sendable (BlockingRequest) -> BlockingResponse = { request in
        let lines = ["\(request.method) \(request.target)"] + request.headers.map { "\($0.name.lowercased()): \($0.value)" }
        return BlockingResponse(status: 200, headers: [("Content-Type", "text/plain"), ("traceresponse", podTraceResponse)],
                                body: Array(lines.joined(separator: "\n").utf8))
    }

    /// The header lines the pod saw, by lower-case name (every value of each).
    static func seen(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon]), default: []].append(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return out
    }

    private func gateway(pod: UInt16, collector: RecordCollector, _ adjust: (inout ProxySettings) -> Void = { _ in }) throws -> Gateway {
        try Gateway(settings: GatewayFixture.settings(workers: 1, adjust), routes: GatewayFixture.table(split: 0, ports: (pod, pod)),
                    requestObserver: collector.observer)
    }

    /// The checks every protocol shares for a continued trace: the pod's one traceparent carries the client's
    /// trace id and the gateway's span id (the record's), tracestate and B3 arrive unchanged.
    private func assertContinued(podSaw seen: [String: [String]], record: RequestRecord, file: StaticString = #filePath, line: UInt = #line) throws {
        let sent = try XCTUnwrap(seen["traceparent"], "the pod got a traceparent", file: file, line: line)
        XCTAssertEqual(sent.count, 1, "exactly one traceparent: ours replaced the client's", file: file, line: line)
        let pod = try XCTUnwrap(TraceContext.parse(traceparent: sent[0]), "a valid traceparent: \(sent[0])", file: file, line: line)
        XCTAssertEqual(pod.traceIdHex, Self.clientTrace, "the client's trace", file: file, line: line)
        XCTAssertNotEqual(pod.parentSpanIdHex, Self.clientSpan, "the pod's parent is the gateway's span, not the client's", file: file, line: line)
        XCTAssertTrue(pod.isSampled, "the client's sampled flag", file: file, line: line)
        XCTAssertEqual(record.trace.traceIdHex, Self.clientTrace, file: file, line: line)
        XCTAssertEqual(record.trace.parentSpanIdHex, Self.clientSpan, "the record keeps the client's span as parent", file: file, line: line)
        XCTAssertEqual(record.trace.spanIdHex, pod.parentSpanIdHex, "the gateway's span id is what the pod got", file: file, line: line)
        XCTAssertTrue(record.trace.isContinued, file: file, line: line)
        XCTAssertEqual(seen["tracestate"] ?? [], [Self.tracestate], "tracestate passes on unchanged", file: file, line: line)
        for (name, value) in Self.b3 {
            XCTAssertEqual(seen[name] ?? [], [value], "B3 \(name) untouched", file: file, line: line)
        }
    }

    // MARK: HTTP/1.1

    func testHTTP1ContinuesTheClientsTraceAndKeepsTracestateAndB3() throws {
        let pod = try BlockingServer(port: 0, handler: Self.echo)
        pod.start()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try gateway(pod: pod.port, collector: collector)
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        let r = try c.request("GET", "/v1/models/sklearn-iris", host: serviceHost,
                              headers: [("traceparent", Self.traceparent), ("tracestate", Self.tracestate), ("User-Agent", "curl/8.5.0")] + Self.b3)
        XCTAssertEqual(r.status, 200)
        let record = try XCTUnwrap(collector.wait(for: 1).first)
        try assertContinued(podSaw: Self.seen(r.text), record: record)
        XCTAssertEqual(record.userAgent.string, "curl/8.5.0")
        XCTAssertEqual(record.clientAddress.string, "127.0.0.1")
        XCTAssertEqual(r.headerLines("traceresponse"), [Self.podTraceResponse], "off by default: the pod's own passes through")
    }

    func testHTTP1StartsATraceWhenNoneOrAnInvalidOneCameAndSamplesAtTheRate() throws {
        let pod = try BlockingServer(port: 0, handler: Self.echo)
        pod.start()
        defer { pod.stop() }
        for rate in [1.0, 0.0] {
            let collector = RecordCollector()
            let g = try gateway(pod: pod.port, collector: collector) { $0.tracing.sampleRate = rate }
            defer { g.shutdown(graceMs: 1000) }
            let c = try TestClient(port: g.port)
            // None, a malformed one, an uppercase one, an all-zero parent, two of them: each starts a new trace.
            let sent: [[(String, String)]] = [
                [("tracestate", Self.tracestate)],
                [("traceparent", "00-abc-def-01"), ("tracestate", Self.tracestate)],
                [("traceparent", "00-\(Self.clientTrace.uppercased())-\(Self.clientSpan)-01")],
                [("traceparent", "00-\(Self.clientTrace)-0000000000000000-01")],
                [("traceparent", Self.traceparent), ("traceparent", Self.traceparent)],
            ] + Array(repeating: [], count: 15)
            var podTraces = Set<String>()
            for headers in sent {
                let r = try c.request("GET", "/", host: serviceHost, headers: headers)
                XCTAssertEqual(r.status, 200)
                let seen = Self.seen(r.text)
                let values = seen["traceparent"] ?? []
                XCTAssertEqual(values.count, 1, "one traceparent: \(values)")
                let tp = try XCTUnwrap(values.first.flatMap { TraceContext.parse(traceparent: $0) }, "a valid new traceparent: \(values)")
                XCTAssertNotEqual(tp.traceIdHex, Self.clientTrace, "a new trace, not the client's")
                XCTAssertEqual(tp.isSampled, rate == 1, "sampled at rate \(rate)")
                XCTAssertNil(seen["tracestate"], "a restarted trace drops the old trace's tracestate")
                podTraces.insert(tp.traceIdHex)
            }
            XCTAssertEqual(podTraces.count, sent.count, "every request got a trace of its own")
            let records = collector.wait(for: sent.count)
            XCTAssertEqual(Set(records.map(\.trace.traceIdHex)), podTraces, "the records hold the traces the pod saw")
            XCTAssertTrue(records.allSatisfy { !$0.trace.isContinued && $0.trace.parentSpanIdHex == "0000000000000000" })
        }
    }

    func testTraceResponseHeaderWhenAskedForOnHTTP1AndAGatewayAnswerHasATraceId() throws {
        let pod = try BlockingServer(port: 0, handler: Self.echo)
        pod.start()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try gateway(pod: pod.port, collector: collector) { $0.tracing.responseHeader = true }
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        let r = try c.request("GET", "/", host: serviceHost, headers: [("traceparent", Self.traceparent)])
        let record = try XCTUnwrap(collector.wait(for: 1).first)
        XCTAssertEqual(r.headerLines("traceresponse"), ["00-\(Self.clientTrace)-\(record.trace.spanIdHex)-01"],
                       "ours, replacing the pod's: the trace and the gateway's span")
        XCTAssertEqual(try c.request("GET", "/", host: "nobody.example.com").status, 404)
        let refused = collector.wait(for: 2)[1]
        XCTAssertTrue(refused.trace.hasTrace, "a request the gateway answered itself has a trace id too (for its log line)")
    }

    // MARK: HTTP/2 → HTTP/1.1 pod

    func testHTTP2ContinuesTheTraceAndAnswersWithTraceResponse() throws {
        let pod = try BlockingServer(port: 0, handler: Self.echo)
        pod.start()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try gateway(pod: pod.port, collector: collector) { $0.tracing.responseHeader = true }
        defer { g.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: g.port)
        let id = c.request("GET", "/v1/models/sklearn-iris", authority: serviceHost,
                           headers: [("traceparent", Self.traceparent), ("tracestate", Self.tracestate), ("user-agent", "grpcurl/1.9")] + Self.b3)
        let started = c.request("GET", "/", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true && c.responses[started]?.isClosed == true }
        let r = try XCTUnwrap(c.responses[id])
        XCTAssertEqual(r.status, 200)
        let records = collector.wait(for: 2)
        let record = try XCTUnwrap(records.first { $0.trace.isContinued })
        try assertContinued(podSaw: Self.seen(r.text), record: record)
        XCTAssertEqual(record.clientProtocol, .h2)
        XCTAssertEqual(record.userAgent.string, "grpcurl/1.9")
        XCTAssertEqual(r.headers.filter { $0.0 == "traceresponse" }.map(\.1), ["00-\(Self.clientTrace)-\(record.trace.spanIdHex)-01"])
        // Without a traceparent: a new trace, the same one in the pod's header, the record and the traceresponse.
        let other = try XCTUnwrap(records.first { !$0.trace.isContinued })
        let podSaw = try XCTUnwrap(Self.seen(c.responses[started]!.text)["traceparent"]?.first)
        XCTAssertEqual(podSaw, "00-\(other.trace.traceIdHex)-\(other.trace.spanIdHex)-0\(other.trace.flags)")
        XCTAssertEqual(c.responses[started]?.header("traceresponse"), podSaw)
    }

    // MARK: gRPC → HTTP/2 pod

    func testGRPCContinuesTheTraceTowardTheH2Pod() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try grpcGateway(pods: (pod.port, pod.port), settings: { $0.tracing.responseHeader = true }, requestObserver: collector.observer)
        defer { g.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: g.port)
        let id = c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost,
                           headers: grpcHeaders + [("traceparent", Self.traceparent), ("tracestate", Self.tracestate), ("user-agent", "grpc-python/1.60")] + Self.b3,
                           body: [0, 0, 0, 0, 1, 7])
        try c.run { c.responses[id]?.isClosed == true }
        let r = try XCTUnwrap(c.responses[id])
        XCTAssertEqual(r.header("grpc-status"), "0")
        let record = try XCTUnwrap(collector.wait(for: 1).first)
        let fields = try XCTUnwrap(pod.requests.first)
        var seen: [String: [String]] = [:]
        for (name, value) in fields where !name.hasPrefix(":") { seen[name, default: []].append(value) }
        try assertContinued(podSaw: seen, record: record)
        XCTAssertEqual(record.clientProtocol, .grpc)
        XCTAssertEqual(record.userAgent.string, "grpc-python/1.60")
        XCTAssertEqual(r.headers.filter { $0.0 == "traceresponse" }.map(\.1), ["00-\(Self.clientTrace)-\(record.trace.spanIdHex)-01"])
    }
}
