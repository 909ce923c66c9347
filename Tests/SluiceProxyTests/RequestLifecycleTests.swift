// Integration: every request passes through the lifecycle's one finish exactly once, with the record a user of
// metrics and access logs would expect — whatever the protocol and however the request ends.
import Foundation
import SluiceBlockingHTTP
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Collects the records the gateway's workers finish, in order, and waits for them with a bounded deadline.
final class RecordCollector: @unchecked Sendable {  // every field is guarded by `condition`
    private let condition = NSCondition()
    private var records: [RequestRecord] = []

    var observer: RequestObserver {
        { [self] record in
            condition.lock()
            records.append(record)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The first `count` records, once they have arrived (fails after `seconds`).
    func wait(for count: Int, seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line) -> [RequestRecord] {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while records.count < count {
            if !condition.wait(until: deadline) { break }
        }
        XCTAssertGreaterThanOrEqual(records.count, count, "finished requests", file: file, line: line)
        return Array(records.prefix(count))
    }

    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return records.count
    }
}

final class RequestLifecycleTests: XCTestCase {
    private func gateway(endpoints: [(String, UInt16)], collector: RecordCollector, workers: Int = 1,
                         _ adjust: (inout ProxySettings) -> Void = { _ in }) throws -> Gateway {
        var services: [ServiceSpec] = []
        for (name, port) in endpoints {
            let revision = "\(name)-predictor-default-00001"
            services.append(ServiceSpec(name: name, namespace: "ns", revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: port)])],
                                        traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)]))
        }
        return try Gateway(settings: GatewayFixture.settings(workers: workers, adjust), routes: RouteTable(services: services, rules: HostRules()),
                           requestObserver: collector.observer)
    }

    func testEveryHTTP1ExitReachesFinishOnceWithItsRecord() throws {
        let pod = try BlockingServer(port: 0, handler: predictorHandler(modelName: "iris", version: .v1, revision: "iris-predictor-default-00001"))
        pod.start()
        defer { pod.stop() }
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        let collector = RecordCollector()
        let g = try gateway(endpoints: [("iris", pod.port), ("dead", deadPort)], collector: collector) { $0.limits.maxRequestBodyBytes = 1000 }
        defer { g.shutdown(graceMs: 1000) }

        let c = try TestClient(port: g.port)
        let ok = try c.request("POST", "/v1/models/iris:predict?x=1", host: "iris.ns.example.com", body: irisBody)
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(try c.request("GET", "/v1/models/iris", host: "nobody.example.com").status, 404)
        XCTAssertEqual(try c.request("GET", "/", host: "dead.ns.example.com").status, 502)
        XCTAssertEqual(try c.request("POST", "/v1/models/iris:predict", host: "iris.ns.example.com", body: String(repeating: "x", count: 1001)).status, 413)
        let bad = try TestClient(port: g.port)
        try bad.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        XCTAssertEqual(try bad.readResponse().status, 400)

        let records = collector.wait(for: 5)
        guard records.count == 5 else { return }
        let r = records[0]
        XCTAssertEqual(r.outcome, .completed)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.clientProtocol, .http11)
        XCTAssertFalse(r.isTLS)
        XCTAssertEqual(r.method.string, "POST")
        XCTAssertEqual(r.authority.string, "iris.ns.example.com")
        XCTAssertEqual(r.path.string, "/v1/models/iris:predict?x=1")
        XCTAssertEqual(r.revision?.name, "iris-predictor-default-00001")
        XCTAssertEqual(r.endpoint?.port, pod.port)
        XCTAssertEqual(r.attempts, 1)
        XCTAssertEqual(r.requestBodyBytes, irisBody.utf8.count)
        XCTAssertEqual(r.responseBodyBytes, ok.body.count)
        XCTAssertEqual(r.requestId.string, ok.header("X-Request-Id"))
        XCTAssertEqual(r.flags, [])
        XCTAssertNil(r.gatewayAnswer)
        XCTAssertTrue(r.startNs > 0 && r.startNs <= r.upstreamConnectedNs && r.upstreamConnectedNs <= r.firstResponseByteNs
                      && r.firstResponseByteNs <= r.endNs, "phase timestamps in order")

        XCTAssertEqual(records[1].outcome, .gatewayAnswered)
        XCTAssertEqual(records[1].status, 404)
        XCTAssertEqual(records[1].gatewayAnswer, .noRoute)
        XCTAssertEqual(records[1].flags, .noRoute)
        XCTAssertNil(records[1].revision)
        XCTAssertEqual(records[1].authority.string, "nobody.example.com")

        XCTAssertEqual(records[2].status, 502)
        XCTAssertEqual(records[2].gatewayAnswer, .upstreamConnectFailed)
        XCTAssertTrue(records[2].flags.contains(.upstreamConnectFailure))
        XCTAssertEqual(records[2].endpoint?.port, deadPort)
        XCTAssertEqual(records[2].revision?.name, "dead-predictor-default-00001")

        XCTAssertEqual(records[3].status, 413)
        XCTAssertEqual(records[3].gatewayAnswer, .payloadTooLarge)
        XCTAssertTrue(records[3].flags.contains(.limitExceeded))

        XCTAssertEqual(records[4].status, 400)
        XCTAssertEqual(records[4].gatewayAnswer, .malformedRequest)
        XCTAssertTrue(records[4].flags.contains(.downstreamProtocolError))

        // Exactly once: a last request is the sixth record, nothing was finished twice in between. (The 413 closed
        // its connection: the last request goes on a new one.)
        XCTAssertEqual(try TestClient(port: g.port).request("GET", "/v1/models/iris", host: "iris.ns.example.com").status, 200)
        let all = collector.wait(for: 6)
        XCTAssertEqual(all.last?.path.string, "/v1/models/iris")
        XCTAssertEqual(collector.count, 6)
    }

    func testTimeoutsAndAbortsReachFinishWithTheirFlags() throws {
        let atPod = DispatchSemaphore(value: 0)
        let slow = try BlockingServer(port: 0) { _ in
            atPod.signal()
            usleep(600_000)
            return .json(status: 200, "{}")
        }
        slow.start()
        defer { slow.stop() }
        let timeouts = RecordCollector()
        let g1 = try gateway(endpoints: [("slow", slow.port)], collector: timeouts) { $0.timeouts.upstreamResponseMs = 150 }
        defer { g1.shutdown(graceMs: 1000) }
        XCTAssertEqual(try TestClient(port: g1.port).request("GET", "/", host: "slow.ns.example.com").status, 504)
        let timedOut = timeouts.wait(for: 1)
        XCTAssertEqual(timedOut.first?.status, 504)
        XCTAssertEqual(timedOut.first?.gatewayAnswer, .upstreamTimeout)
        XCTAssertEqual(timedOut.first?.flags.contains(.upstreamRequestTimeout), true)
        XCTAssertEqual(atPod.wait(timeout: .now() + 5), .success)

        // A client that resets its connection while its request is at the pod.
        let aborts = RecordCollector()
        let g2 = try gateway(endpoints: [("slow", slow.port)], collector: aborts)
        defer { g2.shutdown(graceMs: 1000) }
        let leaving = try connectLoopback(port: g2.port)
        _ = "GET /gone HTTP/1.1\r\nHost: slow.ns.example.com\r\n\r\n".withCString { Glibc.send(leaving, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        XCTAssertEqual(atPod.wait(timeout: .now() + 5), .success, "the pod has the request")
        resetAndClose(leaving)
        let records = aborts.wait(for: 1)
        guard let r = records.first else { return }
        XCTAssertEqual(r.outcome, .aborted)
        XCTAssertEqual(r.path.string, "/gone")
        XCTAssertEqual(r.status, 0, "nothing was sent to the client")
        XCTAssertTrue(r.flags.contains(.downstreamConnectionTermination))
        XCTAssertEqual(r.attempts, 1)
        XCTAssertEqual(r.endpoint?.port, slow.port)
    }

    func testHTTP2StreamsReachFinishOnce() throws {
        let pod = try BlockingServer(port: 0, handler: predictorHandler(modelName: "iris", version: .v1, revision: "iris-predictor-default-00001"))
        pod.start()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try gateway(endpoints: [("iris", pod.port)], collector: collector)
        defer { g.shutdown(graceMs: 1000) }
        let client = try H2TestClient(port: g.port)
        let ok = client.request("POST", "/v1/models/iris:predict", authority: "iris.ns.example.com", body: Array(irisBody.utf8))
        let missing = client.request("GET", "/x", authority: "nobody.example.com")
        try client.run { client.responses[ok]?.isClosed == true && client.responses[missing]?.isClosed == true }
        let records = collector.wait(for: 2).sorted { $0.path.string < $1.path.string }
        guard records.count == 2 else { return }
        XCTAssertEqual(records[0].clientProtocol, .h2)
        XCTAssertEqual(records[0].outcome, .completed)
        XCTAssertEqual(records[0].status, 200)
        XCTAssertEqual(records[0].method.string, "POST")
        XCTAssertEqual(records[0].requestBodyBytes, irisBody.utf8.count)
        XCTAssertEqual(records[0].responseBodyBytes, client.responses[ok]?.body.count)
        XCTAssertEqual(records[1].status, 404)
        XCTAssertEqual(records[1].gatewayAnswer, .noRoute)
        XCTAssertEqual(collector.count, 2)
    }

    func testGRPCCallsReachFinishOnceWithTheirGRPCStatus() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let collector = RecordCollector()
        let g = try grpcGateway(pods: (pod.port, pod.port), requestObserver: collector.observer)
        defer { g.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: g.port)
        let paths = ["/inference.GRPCInferenceService/echo", "/inference.GRPCInferenceService/fail"]
        let ids = paths.map { c.request("POST", $0, authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 1, 7]) }
        let refused = c.request("POST", grpcPath, authority: "nobody.example.com", headers: grpcHeaders, body: [0, 0, 0, 0, 0])
        try c.run { (ids + [refused]).allSatisfy { c.responses[$0]?.isClosed == true } }
        let records = collector.wait(for: 3)
        guard records.count == 3 else { return }
        let byPath = Dictionary(records.map { ($0.path.string + " " + $0.authority.string, $0) }, uniquingKeysWith: { a, _ in a })
        let echo = try XCTUnwrap(byPath[paths[0] + " " + serviceHost])
        XCTAssertEqual(echo.clientProtocol, .grpc)
        XCTAssertEqual(echo.outcome, .completed)
        XCTAssertEqual(echo.status, 200)
        XCTAssertEqual(echo.grpcStatus, 0)
        XCTAssertEqual(echo.requestBodyBytes, 6)
        XCTAssertEqual(echo.responseBodyBytes, 6)
        XCTAssertEqual(echo.endpoint?.port, pod.port)
        XCTAssertEqual(echo.attempts, 1)
        XCTAssertEqual(echo.revision?.name, rev1)
        let failed = try XCTUnwrap(byPath[paths[1] + " " + serviceHost])
        XCTAssertEqual(failed.grpcStatus, 5, "trailers-only NOT_FOUND from the pod")
        let noRoute = try XCTUnwrap(byPath[grpcPath + " nobody.example.com"])
        XCTAssertEqual(noRoute.outcome, .gatewayAnswered)
        XCTAssertEqual(noRoute.gatewayAnswer, .noRoute)
        XCTAssertEqual(noRoute.grpcStatus, 12)
        XCTAssertEqual(collector.count, 3)
    }
}
