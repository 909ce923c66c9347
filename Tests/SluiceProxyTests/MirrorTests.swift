// Integration: traffic mirroring (shadow) through a real gateway on loopback — the mirror revision gets a marked copy
// of the default host's requests, the client only ever sees the primary's answers (whatever the mirror does, however
// slow it is), the bounds drop and count, the share holds, and mirrored results stay out of the client series.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

/// What the mirror revision's pod saw: every request, in arrival order.
private final class SeenRequests: Sendable {
    private let requests = Mutex<[BlockingRequest]>([])
    func add(_ r: BlockingRequest) { requests.withLock { $0.append(r) } }
    var all: [BlockingRequest] { requests.withLock { $0 } }
    var count: Int { requests.withLock { $0.count } }
}

private func header(_ r: BlockingRequest, _ name: String) -> String? {
    r.headers.first { $0.name.lowercased() == name }?.value
}

/// Waits for `condition` with a bounded deadline (no sleep as synchronisation).
private func waitUntil(seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line, _ what: String, until condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { XCTFail("timed out waiting: \(what)", file: file, line: line); return }
        usleep(2_000)
    }
}

/// A primary revision (rev1, 100 %) and a mirror revision (rev2, 0 %, tag `latest`) mirrored `percent` %.
private final class MirrorFixture: @unchecked Sendable {  // immutable after init
    static let primaryBody = Array(#"{"predictions": [1, 1]}"#.utf8)
    let primary: BlockingServer
    let canary: BlockingServer
    let seen = SeenRequests()
    let gateway: Gateway

    /// `canaryPort`: the mirror revision's pod is another listener (a misbehaving RawBackend) rather than `canary`.
    init(percent: Double = 100, workers: Int = 1, canaryPort: UInt16? = nil,
         canaryHandler: (@Sendable (BlockingRequest) -> BlockingResponse)? = nil,
         settings: (inout ProxySettings) -> Void = { _ in }) throws {
        primary = try BlockingServer(port: 0) { _ in
            BlockingResponse(status: 200, headers: [("Content-Type", "application/json"), ("X-Pod", "primary")], body: MirrorFixture.primaryBody)
        }
        let seen = self.seen
        let handler = canaryHandler ?? { _ in BlockingResponse(status: 200, body: Array("canary".utf8)) }
        canary = try BlockingServer(port: 0) { r in
            seen.add(r)
            return handler(r)
        }
        primary.start()
        canary.start()
        let spec = ServiceSpec(
            name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
            revisions: [RevisionSpec(name: rev1, endpoints: [Endpoint(host: "127.0.0.1", port: primary.port)]),
                        RevisionSpec(name: rev2, endpoints: [Endpoint(host: "127.0.0.1", port: canaryPort ?? canary.port)])],
            traffic: [TrafficTargetSpec(revisionName: rev1, percent: 100, tag: "prev"),
                      TrafficTargetSpec(revisionName: rev2, percent: 0, tag: "latest", latestRevision: true)],
            mirror: MirrorSpec(revisionName: rev2, percent: percent))
        var rules = HostRules()
        rules.tagHeaderRouting = true
        gateway = try Gateway(settings: GatewayFixture.settings(workers: workers, settings), routes: RouteTable(services: [spec], rules: rules))
    }

    func mirrorCount(_ result: String) throws -> Double {
        try MetricsText(gateway.scrape(), format: .prometheus).sum("sluice_mirror_requests_total", ["revision": rev2, "result": result])
    }

    deinit {
        gateway.shutdown(graceMs: 2_000)
        primary.stop()
        canary.stop()
    }
}

final class MirrorTests: XCTestCase {
    private func predict(_ c: TestClient, host: String = serviceHost, headers: [(String, String)] = [], body: String = irisBody) throws -> TestResponse {
        try c.request("POST", "/v1/models/sklearn-iris:predict", host: host, headers: headers, body: body)
    }

    private func assertPrimaryAnswer(_ r: TestResponse, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 200, file: file, line: line)
        XCTAssertEqual(r.body, MirrorFixture.primaryBody, "the primary's body, byte for byte", file: file, line: line)
        XCTAssertEqual(r.header("X-Pod"), "primary", file: file, line: line)
        XCTAssertEqual(r.header("Sluice-Revision"), rev1, file: file, line: line)
    }

    func testEveryRequestReachesTheMirrorMarkedAsShadowAndTheClientSeesOnlyThePrimary() throws {
        let f = try MirrorFixture(percent: 100)
        let c = try TestClient(port: f.gateway.port)
        for i in 0..<20 {
            // A client's own shadow marker never reaches a pod as the client sent it.
            assertPrimaryAnswer(try predict(c, headers: [("X-Request-Id", "req-\(i)"), ("x-sluice-shadow", "spoofed")]))
        }
        assertPrimaryAnswer(try predict(c, host: serviceHost + ":8080", headers: [("X-Request-Id", "req-port")]))
        let get = try c.request("GET", "/v1/models/sklearn-iris", host: serviceHost, headers: [("X-Request-Id", "req-get")])
        XCTAssertEqual(get.body, MirrorFixture.primaryBody)
        waitUntil("22 mirrored requests at the mirror's pod") { f.seen.count == 22 }
        // Mirrors run on connections of their own, several at once: matched by request id, not by arrival order.
        let byID = Dictionary(f.seen.all.map { (header($0, "x-request-id") ?? "none", $0) }) { first, _ in first }
        XCTAssertEqual(byID.count, 22, "one mirror per client request, each with the client request's id")
        for i in 0..<20 {
            let r = try XCTUnwrap(byID["req-\(i)"])
            XCTAssertEqual(r.method, "POST")
            XCTAssertEqual(r.target, "/v1/models/sklearn-iris:predict")
            XCTAssertEqual(header(r, "host"), serviceHost + "-shadow", "Envoy's convention: -shadow after the host name")
            XCTAssertEqual(r.headers.filter { $0.name.lowercased() == "x-sluice-shadow" }.map(\.value), ["1"], "our marker, once: the client's was dropped")
            XCTAssertEqual(header(r, "knative-serving-revision"), rev2, "the mirror revision's own Knative headers")
            XCTAssertEqual(r.headers.filter { $0.name.lowercased() == "knative-serving-revision" }.count, 1)
            XCTAssertEqual(r.body, Array(irisBody.utf8), "the body, byte for byte")
        }
        XCTAssertEqual(byID["req-port"].flatMap { header($0, "host") }, serviceHost + "-shadow:8080", "the port stays after the suffix")
        XCTAssertEqual(byID["req-get"]?.method, "GET")
        XCTAssertEqual(byID["req-get"].flatMap { header($0, "host") }, serviceHost + "-shadow")
        XCTAssertEqual(f.primary.requestsServed, 22, "every request served once by the primary")
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "ok"]) == 22 }
    }

    func testTaggedRequestsAreNotMirrored() throws {
        let f = try MirrorFixture(percent: 100)
        let c = try TestClient(port: f.gateway.port)
        let prevHost = "prev-sklearn-iris-predictor-default.kserve-test.example.com"
        let latestHost = "latest-sklearn-iris-predictor-default.kserve-test.example.com"
        for _ in 0..<5 { assertPrimaryAnswer(try predict(c, host: prevHost)) }
        for _ in 0..<5 { assertPrimaryAnswer(try predict(c, headers: [("Knative-Serving-Tag", "prev")])) }
        for _ in 0..<3 { XCTAssertEqual(try predict(c, host: latestHost).body, Array("canary".utf8)) }
        // The default host's request after them is the barrier: mirrored, it comes after anything else would have.
        assertPrimaryAnswer(try predict(c, headers: [("X-Request-Id", "barrier")]))
        waitUntil("the barrier's mirror") { f.seen.all.contains { header($0, "x-request-id") == "barrier" } }
        let shadows = f.seen.all.filter { header($0, "x-sluice-shadow") != nil }
        XCTAssertEqual(shadows.map { header($0, "x-request-id") }, ["barrier"], "tag host and tag header requests are not mirrored")
        XCTAssertEqual(f.seen.count, 4, "3 tagged requests to the mirror revision itself, and the one mirror")
    }

    func testAMirrorThatFailsOrClosesNeverReachesTheClient() throws {
        // The mirror's pod answers its first request on a connection with a 500, and closes the connection without
        // an answer at the next one.
        let canary = RawBackend()
        defer { canary.stop() }
        canary.start { conn in
            defer { conn.close() }
            var answered = false
            while let head = try? conn.readRequestHead(), !head.isEmpty {
                let length = head.first { $0.lowercased().hasPrefix("content-length:") }.map { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0 } ?? 0
                _ = try? conn.take(length)
                if answered { return }
                answered = true
                try? conn.send("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}")
            }
        }
        let f = try MirrorFixture(percent: 100, canaryPort: canary.port)
        let c = try TestClient(port: f.gateway.port)
        for _ in 0..<10 { assertPrimaryAnswer(try predict(c)) }
        let m = try f.gateway.waitForMetrics {
            $0.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "failed"]) == 10
        }
        XCTAssertEqual(m.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "ok"]), 0)
        XCTAssertEqual(m.sum("sluice_requests_total", ["revision": rev1, "code": "200"]), 10, "the client series: 10 answers, all 200")
        XCTAssertEqual(m.sum("sluice_requests_total", ["revision": rev2]), 0, "no client request reached revision 2")
        XCTAssertEqual(m.sum("sluice_mirror_request_duration_seconds_count", ["revision": rev2]), 10)
    }

    func testASlowMirrorDelaysNoClientAndOverItsBoundMirrorsAreDropped() throws {
        let release = DispatchSemaphore(value: 0)
        let held = Atomic<Int>(0)
        let f = try MirrorFixture(percent: 100, canaryHandler: { _ in
            held.add(1, ordering: .relaxed)
            release.wait()  // holds its answer until the test lets go
            return BlockingResponse(status: 200, body: Array("late".utf8))
        }, settings: { $0.mirror.maxInFlight = 4 })
        let c = try TestClient(port: f.gateway.port)
        for _ in 0..<10 { assertPrimaryAnswer(try predict(c)) }
        // Every client answer came while the mirror's pod still holds each request it got (nothing released yet).
        waitUntil("4 mirrors held at the pod") { held.load(ordering: .relaxed) == 4 }
        XCTAssertEqual(f.seen.count, 4, "the in-flight bound: 4 sent, the 6 others dropped")
        XCTAssertEqual(try f.mirrorCount("dropped_full"), 6)
        XCTAssertEqual(try f.mirrorCount("ok"), 0)
        for _ in 0..<4 { release.signal() }
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "ok"]) == 4 }
        // Room again: the next mirror is sent.
        release.signal()
        assertPrimaryAnswer(try predict(c))
        waitUntil("the fifth mirror sent once there was room") { f.seen.count == 5 }
    }

    func testAMirrorPastItsTimeoutIsCountedAndItsConnectionClosed() throws {
        let release = DispatchSemaphore(value: 0)
        let f = try MirrorFixture(percent: 100, canaryHandler: { _ in
            _ = release.wait(timeout: .now() + 10)
            return BlockingResponse(status: 200)
        }, settings: { $0.mirror.timeoutMs = 200 })
        defer { for _ in 0..<3 { release.signal() } }
        let c = try TestClient(port: f.gateway.port)
        for _ in 0..<3 { assertPrimaryAnswer(try predict(c)) }
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "timeout"]) == 3 }
    }

    func testBodiesOverTheCopyBoundAreNotMirroredAndAreCounted() throws {
        let f = try MirrorFixture(percent: 100, settings: { $0.mirror.maxRequestBytes = 2048 })
        let c = try TestClient(port: f.gateway.port)
        let big = String(repeating: "x", count: 4096)
        assertPrimaryAnswer(try predict(c, body: big))
        // A chunked body (its length unknown at the head) over the bound: given up while it is copied.
        try c.send("POST /v1/models/sklearn-iris:predict HTTP/1.1\r\nHost: \(serviceHost)\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + "800\r\n\(String(repeating: "y", count: 2048))\r\n800\r\n\(String(repeating: "z", count: 2048))\r\n0\r\n\r\n")
        assertPrimaryAnswer(try c.readResponse())
        XCTAssertEqual(f.primary.requestsServed, 2, "the primary got both")
        assertPrimaryAnswer(try predict(c, headers: [("X-Request-Id", "small")]))
        waitUntil("the small request's mirror") { f.seen.count >= 1 }
        XCTAssertEqual(f.seen.all.map { header($0, "x-request-id") }, ["small"], "only the request within the bound was mirrored")
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "dropped_body"]) == 2 }
        XCTAssertEqual(try f.mirrorCount("ok"), 1)
    }

    func testAQuarterShareIsMirroredWithinStatisticalBounds() throws {
        let f = try MirrorFixture(percent: 25, workers: 2)
        for _ in 0..<4 {  // several connections, so that both workers draw
            let c = try TestClient(port: f.gateway.port)
            for _ in 0..<100 { XCTAssertEqual(try predict(c).status, 200) }
        }
        // Every mirror counted (a mirror is counted when its pod's answer is in, after the pod saw it): the pod saw
        // exactly what the gateway counts.
        let m = try f.gateway.waitForMetrics {
            $0.sum("sluice_requests_total", ["revision": rev1]) == 400
                && $0.sum("sluice_mirror_requests_total", ["revision": rev2]) == Double(f.seen.count)
        }
        let mirrored = m.sum("sluice_mirror_requests_total", ["revision": rev2])
        XCTAssertEqual(m.sum("sluice_mirror_requests_total", ["revision": rev2, "result": "ok"]), mirrored, "none dropped or failed")
        // Binomial(400, 0.25): mean 100, standard deviation 8.7; ±5 deviations fails by chance once in 3.5 million.
        XCTAssertGreaterThan(mirrored, 56, "\(mirrored) of 400")
        XCTAssertLessThan(mirrored, 144, "\(mirrored) of 400")
    }

    func testMirroredResultsAreRevisionStatsOfTheirOwnAndStayOutOfClientSeries() throws {
        let calls = Atomic<Int>(0)
        let f = try MirrorFixture(percent: 100, canaryHandler: { _ in
            BlockingResponse(status: calls.add(1, ordering: .relaxed).oldValue % 4 == 0 ? 503 : 200)
        })
        let c = try TestClient(port: f.gateway.port)
        for _ in 0..<12 { assertPrimaryAnswer(try predict(c)) }
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_mirror_request_duration_seconds_count", ["revision": rev2]) == 12 }
        let stats = f.gateway.revisionStats()
        let shadow = try XCTUnwrap(stats.first { $0.revision == rev2 && $0.shadow })
        XCTAssertEqual(shadow.requests, 12)
        XCTAssertEqual(shadow.failed, 3, "every fourth mirror answered 503")
        XCTAssertEqual(shadow.durationCumulativeCounts.last, 12)
        XCTAssertEqual(stats.first { $0.revision == rev2 && !$0.shadow }?.requests ?? 0, 0, "revision 2's client entry counts no mirror")
        XCTAssertEqual(stats.first { $0.revision == rev1 && !$0.shadow }?.requests, 12)
        XCTAssertNil(stats.first { $0.revision == rev1 && $0.shadow }, "the primary mirrors nothing to itself")
    }

    func testHTTP2ClientsAreMirroredToo() throws {
        let f = try MirrorFixture(percent: 100)
        let c = try H2TestClient(port: f.gateway.port)
        var ids: [Int32] = []
        for _ in 0..<5 {
            ids.append(c.request("POST", "/v1/models/sklearn-iris:predict", authority: serviceHost + ":8080", body: Array(irisBody.utf8)))
        }
        try c.run { ids.allSatisfy { c.responses[$0]?.isClosed == true } }
        for id in ids {
            XCTAssertEqual(c.responses[id]?.status, 200)
            XCTAssertEqual(c.responses[id]?.body, MirrorFixture.primaryBody)
        }
        waitUntil("5 mirrors of HTTP/2 requests") { f.seen.count == 5 }
        for r in f.seen.all {
            XCTAssertEqual(header(r, "host"), serviceHost + "-shadow:8080")
            XCTAssertEqual(header(r, "x-sluice-shadow"), "1")
            XCTAssertEqual(r.body, Array(irisBody.utf8))
        }
    }

    func testAMirrorToAnUnknownRevisionOrOutsideItsRangeIsRefused() {
        func table(_ mirror: MirrorSpec) throws -> RouteTable {
            try RouteTable(services: [ServiceSpec(name: "m", namespace: "ns", revisions: [RevisionSpec(name: "m-1", endpoints: [])],
                                                  traffic: [TrafficTargetSpec(revisionName: "m-1", percent: 100)], mirror: mirror)],
                           rules: HostRules())
        }
        XCTAssertThrowsError(try table(MirrorSpec(revisionName: "m-2", percent: 10))) {
            XCTAssertEqual(($0 as? RouteTableError)?.path, "services[0].mirror.revision")
        }
        for percent in [0, -1, 100.5] {
            XCTAssertThrowsError(try table(MirrorSpec(revisionName: "m-1", percent: percent))) {
                XCTAssertEqual(($0 as? RouteTableError)?.path, "services[0].mirror.percent")
            }
        }
        XCTAssertNoThrow(try table(MirrorSpec(revisionName: "m-1", percent: 2.5)))
    }
}
