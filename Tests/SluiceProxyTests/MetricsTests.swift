// Integration: the data plane's metrics through a real gateway on loopback — exact request counts per revision,
// code, protocol and tag (Sluice's and Istio's names), gateway-made answers by reason, quantiles within 5 %, a
// route-table swap, HTTP/2 and gRPC, and an exposition that parses strictly in both formats.
import Foundation
import SluiceBlockingHTTP
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest

final class MetricsTests: XCTestCase {
    private let latestHost = "latest-sklearn-iris-predictor-default.kserve-test.example.com"
    private let prevHost = "prev-sklearn-iris-predictor-default.kserve-test.example.com"

    private func predict(_ c: TestClient, host: String = serviceHost) throws -> TestResponse {
        try c.request("POST", "/v1/models/sklearn-iris:predict", host: host, body: irisBody)
    }

    func testSplitAndTagHostsCountExactlyPerRevisionCodeProtocolAndTag() throws {
        let f = try GatewayFixture(split: 10, workers: 2)
        var byRevision: [String: Int] = [:]
        // Several connections, so that both workers serve some.
        for _ in 0..<4 {
            let c = try f.client()
            for _ in 0..<50 {
                let r = try predict(c)
                XCTAssertEqual(r.status, 200)
                byRevision[r.header("Sluice-Revision") ?? "none", default: 0] += 1
            }
        }
        let c = try f.client()
        for _ in 0..<7 { XCTAssertEqual(try predict(c, host: latestHost).status, 200) }
        for _ in 0..<5 { XCTAssertEqual(try predict(c, host: prevHost).status, 200) }
        XCTAssertEqual(byRevision[rev1, default: 0] + byRevision[rev2, default: 0], 200)
        XCTAssertGreaterThan(byRevision[rev2, default: 0], 0, "10 % of 200 reached revision 2")

        let m = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total") == 212 }
        let base = ["namespace": "kserve-test", "service": "sklearn-iris", "code": "200", "protocol": "http/1.1"]
        XCTAssertEqual(m.sum("sluice_requests_total", base.merging(["revision": rev1, "tag": ""]) { $1 }), Double(byRevision[rev1, default: 0]))
        XCTAssertEqual(m.sum("sluice_requests_total", base.merging(["revision": rev2, "tag": ""]) { $1 }), Double(byRevision[rev2, default: 0]))
        XCTAssertEqual(m.sum("sluice_requests_total", base.merging(["revision": rev2, "tag": "latest"]) { $1 }), 7)
        XCTAssertEqual(m.sum("sluice_requests_total", base.merging(["revision": rev1, "tag": "prev"]) { $1 }), 5)
        XCTAssertEqual(m.sum("sluice_request_duration_seconds_count", ["revision": rev1]), Double(byRevision[rev1, default: 0] + 5))
        XCTAssertEqual(m.sum("sluice_request_body_bytes_sum", ["revision": rev2]), Double((byRevision[rev2, default: 0] + 7) * irisBody.utf8.count))

        // Istio's names for the same requests: what Flagger's and Grafana's queries select on.
        let istio = ["reporter": "destination", "destination_workload_namespace": "kserve-test", "response_code": "200",
                     "request_protocol": "http", "response_flags": "-"]
        XCTAssertEqual(m.sum("istio_requests_total", istio.merging(["destination_canonical_revision": rev1]) { $1 }), Double(byRevision[rev1, default: 0] + 5))
        XCTAssertEqual(m.sum("istio_requests_total", istio.merging(["destination_canonical_revision": rev2]) { $1 }), Double(byRevision[rev2, default: 0] + 7))
        let one = try XCTUnwrap(m.matching("istio_requests_total", ["destination_canonical_revision": rev2]).first)
        XCTAssertEqual(one.labels["destination_workload"], rev2 + "-deployment")
        XCTAssertEqual(one.labels["destination_app"], rev2)
        XCTAssertEqual(one.labels["destination_service"], "sklearn-iris-predictor-default.kserve-test.svc.cluster.local")
        XCTAssertEqual(one.labels["destination_service_name"], "sklearn-iris-predictor-default")
        XCTAssertEqual(one.labels["destination_canonical_service"], "sklearn-iris-predictor-default")
        XCTAssertEqual(Set(one.labels.keys), Set(Self.istioLabelNames), "Istio's exact label set")
        XCTAssertEqual(m.matching("istio_requests_total").count, 2, "one series per revision: no empty overflow series")
        XCTAssertEqual(m.sum("istio_request_duration_milliseconds_count"), 212)
        XCTAssertEqual(m.sum("istio_request_bytes_sum"), Double(212 * irisBody.utf8.count))

        XCTAssertEqual(m.sum("sluice_downstream_connections_accepted_total"), 5)
        XCTAssertEqual(m.sum("sluice_downstream_connections_total", ["protocol": "http/1.1"]), 5)
        let stats = f.gateway.revisionStats()
        XCTAssertEqual(stats.map(\.revision), [rev1, rev2])
        XCTAssertEqual(stats.map(\.requests), [UInt64(byRevision[rev1, default: 0] + 5), UInt64(byRevision[rev2, default: 0] + 7)])
        XCTAssertEqual(stats.map(\.failed), [0, 0])
        XCTAssertEqual(stats[0].durationCumulativeCounts.last, stats[0].requests)
        XCTAssertEqual(stats[0].durationBounds.last, .infinity)
        try assertValidInBothFormats(f.gateway)
    }

    /// Istio's standard labels (its stats filter's list), and no others.
    static let istioLabelNames = [
        "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
        "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
        "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
        "destination_service", "destination_service_name", "destination_service_namespace",
        "destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
        "response_flags", "connection_security_policy", "response_code", "grpc_response_status",
    ]

    func testPodAnswering500sCountsItsFailures() throws {
        let f = try GatewayFixture(split: 0, workers: 1, handler1: { _ in BlockingResponse(status: 500, body: Array("boom".utf8)) })
        let c = try f.client()
        for _ in 0..<6 { XCTAssertEqual(try predict(c, host: prevHost).status, 500) }
        for _ in 0..<3 { XCTAssertEqual(try predict(c, host: latestHost).status, 200) }
        let m = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total") == 9 }
        XCTAssertEqual(m.sum("sluice_requests_total", ["revision": rev1, "code": "500"]), 6)
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_canonical_revision": rev1, "response_code": "500"]), 6)
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_canonical_revision": rev2, "response_code": "200"]), 3)
        XCTAssertEqual(m.sum("sluice_gateway_answers_total"), 0, "a pod's 500 is not a gateway answer")
        let stats = Dictionary(uniqueKeysWithValues: f.gateway.revisionStats().map { ($0.revision, $0) })
        XCTAssertEqual(stats[rev1]?.failed, 6)
        XCTAssertEqual(stats[rev2]?.failed, 0)
    }

    func testGatewayAnswersAppearByReasonAndUnderTheirRevision() throws {
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        let services = [
            ServiceSpec(name: "dead", namespace: "ns", revisions: [RevisionSpec(name: "dead-00001", endpoints: [Endpoint(host: "127.0.0.1", port: deadPort)])],
                        traffic: [TrafficTargetSpec(revisionName: "dead-00001", percent: 100, latestRevision: true)]),
            ServiceSpec(name: "cold", namespace: "ns", revisions: [RevisionSpec(name: "cold-00001", endpoints: [])],
                        traffic: [TrafficTargetSpec(revisionName: "cold-00001", percent: 100, latestRevision: true)]),
        ]
        let g = try Gateway(settings: GatewayFixture.settings(workers: 1), routes: RouteTable(services: services, rules: HostRules()))
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        for _ in 0..<3 { XCTAssertEqual(try c.request("GET", "/", host: "nobody.example.com").status, 404) }
        for _ in 0..<2 { XCTAssertEqual(try c.request("GET", "/", host: "dead.ns.example.com").status, 502) }
        for _ in 0..<4 { XCTAssertEqual(try c.request("GET", "/", host: "cold.ns.example.com").status, 503) }

        let m = try g.waitForMetrics { $0.sum("sluice_gateway_answers_total") == 9 }
        XCTAssertEqual(m.sum("sluice_gateway_answers_total", ["reason": "no_route", "code": "404"]), 3)
        XCTAssertEqual(m.sum("sluice_gateway_answers_total", ["reason": "upstream_connect_failed", "code": "502"]), 2)
        XCTAssertEqual(m.sum("sluice_gateway_answers_total", ["reason": "no_ready_endpoint", "code": "503"]), 4)
        // Istio: a request with no route has Istio's unknown destination; the others count under their revision.
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_service": "unknown", "response_code": "404", "response_flags": "NR"]), 3)
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_canonical_revision": "dead-00001", "response_code": "502", "response_flags": "UF"]), 2)
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_canonical_revision": "cold-00001", "response_code": "503", "response_flags": "UH"]), 4)
        XCTAssertEqual(m.sum("sluice_requests_total", ["revision": "cold-00001", "code": "503"]), 4)
        // Each of the two requests tried the dead pod three times (the first try and two retries).
        XCTAssertEqual(m.sum("sluice_upstream_connect_failures_total", ["endpoint": "127.0.0.1:\(deadPort)"]), 6)
        XCTAssertEqual(m.sum("sluice_upstream_connects_total", ["endpoint": "127.0.0.1:\(deadPort)"]), 6)
        try assertValidInBothFormats(g)
    }

    func testQuantilesReadFromTheHistogramAreWithinFivePercent() throws {
        // A pod whose answer takes a known, spread delay: 1…12 ms, so p50, p90 and p99 fall in different buckets.
        let delays = (0..<60).map { 1 + ($0 * 7) % 12 }
        let next = Ticker()
        let pod = try BlockingServer(port: 0) { _ in
            usleep(UInt32(delays[next.take() % delays.count] * 1000))
            return BlockingResponse(status: 200, body: Array("ok".utf8))
        }
        pod.start()
        defer { pod.stop() }
        let collector = RecordCollector()
        let service = ServiceSpec(name: "slow", namespace: "ns", revisions: [RevisionSpec(name: "slow-00001", endpoints: [Endpoint(host: "127.0.0.1", port: pod.port)])],
                                  traffic: [TrafficTargetSpec(revisionName: "slow-00001", percent: 100, latestRevision: true)])
        let g = try Gateway(settings: GatewayFixture.settings(workers: 1), routes: RouteTable(services: [service], rules: HostRules()),
                            requestObserver: collector.observer)
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        for _ in delays { XCTAssertEqual(try c.request("GET", "/", host: "slow.ns.example.com").status, 200) }
        let records = collector.wait(for: delays.count)
        let m = try g.waitForMetrics { $0.sum("sluice_request_duration_seconds_count") == Double(delays.count) }

        // The exact quantiles of what the gateway measured, against histogram_quantile over the exposed buckets.
        func exact(_ q: Double, _ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted[Int((q * Double(sorted.count)).rounded(.up)) - 1]
        }
        let durations = records.map { Double($0.durationNs) / 1e9 }
        let firstBytes = records.map { Double($0.firstResponseByteNs - $0.startNs) / 1e9 }
        for q in [0.5, 0.9, 0.99] {
            let d = try XCTUnwrap(m.quantile(q, "sluice_request_duration_seconds", ["revision": "slow-00001"]))
            XCTAssertEqual(d, exact(q, durations), accuracy: exact(q, durations) * 0.05, "duration p\(Int(q * 100))")
            let t = try XCTUnwrap(m.quantile(q, "sluice_request_time_to_first_byte_seconds", ["revision": "slow-00001"]))
            XCTAssertEqual(t, exact(q, firstBytes), accuracy: exact(q, firstBytes) * 0.05, "time to first byte p\(Int(q * 100))")
        }
        // The delays themselves show through: p99 is at least the longest delay (12 ms).
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(m.quantile(0.99, "sluice_request_duration_seconds")), 0.012 * 0.95)
        XCTAssertEqual(m.sum("sluice_request_duration_seconds_sum"), durations.reduce(0, +), accuracy: 1e-6)
        // Istio's histogram (ms, Envoy's bounds) holds the same requests, bucket for bucket: at each of its bounds
        // its count is Sluice's cumulative count there (the last bucket shown at or below it; those not shown are empty).
        XCTAssertEqual(m.sum("istio_request_duration_milliseconds_count"), Double(delays.count))
        let sluiceBuckets = m.matching("sluice_request_duration_seconds_bucket").map { (MetricsText.number($0.labels["le"]!)!, $0.value) }
        for (text, ms) in [("0.5", 0.5), ("1", 1), ("5", 5), ("10", 10), ("25", 25), ("50", 50), ("100", 100), ("250", 250)] {
            let sluice = sluiceBuckets.filter { $0.0 <= ms / 1000 * (1 + 1e-9) }.map(\.1).max() ?? 0
            XCTAssertEqual(m.sum("istio_request_duration_milliseconds_bucket", ["le": text]), sluice, "le=\(text) ms")
        }
        let stats = try XCTUnwrap(g.revisionStats().first)
        XCTAssertEqual(stats.requests, UInt64(delays.count))
        let fastest = durations.min()!
        XCTAssertEqual(stats.durationCumulativeCounts[stats.durationBounds.firstIndex { $0 >= fastest }! - 1], 0)
    }

    func testRouteTableSwapAddsTheNewRevisionAndKeepsTheOldCounts() throws {
        let f = try GatewayFixture(split: 0, workers: 2)
        let c = try f.client()
        for _ in 0..<5 { XCTAssertEqual(try predict(c).status, 200) }
        _ = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total", ["revision": rev1]) == 5 }

        // Revision 1 leaves, revision 3 (on pod 1) takes all the traffic.
        let rev3 = "sklearn-iris-predictor-default-00003"
        let service = ServiceSpec(name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
                                  revisions: [RevisionSpec(name: rev2, endpoints: [Endpoint(host: "127.0.0.1", port: f.backend2.port)]),
                                              RevisionSpec(name: rev3, endpoints: [Endpoint(host: "127.0.0.1", port: f.backend1.port)])],
                                  traffic: [TrafficTargetSpec(revisionName: rev3, percent: 100, tag: "latest", latestRevision: true),
                                            TrafficTargetSpec(revisionName: rev2, percent: 0, tag: "prev")])
        f.gateway.publish(routes: try RouteTable(services: [service], rules: HostRules()))
        // Each worker swaps between requests: new connections until one lands on the new table.
        var onNew = 0
        let deadline = Date().addingTimeInterval(10)
        while onNew < 4 && Date() < deadline {
            let c = try f.client()
            if try predict(c).header("Sluice-Revision") == rev3 { onNew += 1 }
        }
        XCTAssertEqual(onNew, 4)
        let m = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total", ["revision": rev3]) == 4 }
        XCTAssertEqual(m.sum("sluice_requests_total", ["revision": rev1]), m.sum("sluice_requests_total") - 4,
                       "every request not on revision 3 counted on revision 1, none lost")
        XCTAssertGreaterThanOrEqual(m.sum("sluice_requests_total", ["revision": rev1]), 5, "revision 1's counts stay after it left")
        XCTAssertEqual(m.sum("istio_requests_total", ["destination_canonical_revision": rev3]), 4)
        XCTAssertEqual(Set(f.gateway.revisionStats().map(\.revision)), [rev1, rev2, rev3])
    }

    func testHTTP2AndGRPCRequestsCountWithTheirProtocol() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let h2 = try H2TestClient(port: f.port)
        for _ in 0..<3 {
            let id = h2.request("POST", "/v1/models/sklearn-iris:predict", authority: serviceHost, body: Array(irisBody.utf8))
            try h2.run { h2.responses[id]?.isClosed == true }
            XCTAssertEqual(h2.responses[id]?.status, 200)
        }
        let m = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total", ["protocol": "h2"]) == 3 }
        XCTAssertEqual(m.sum("sluice_requests_total", ["protocol": "h2", "revision": rev1, "code": "200"]), 3)
        XCTAssertEqual(m.sum("istio_requests_total", ["request_protocol": "http", "destination_canonical_revision": rev1]), 3)
        XCTAssertEqual(m.sum("sluice_http2_streams_total"), 3)
        XCTAssertEqual(m.sum("sluice_downstream_connections_open", ["protocol": "h2"]), 1)

        let pod = H2EchoBackend()
        defer { pod.stop() }
        let g = try grpcGateway(pods: (pod.port, pod.port))
        defer { g.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: g.port)
        for method in ["echo", "echo", "fail"] {
            let id = c.request("POST", "/inference.GRPCInferenceService/\(method)", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
            try c.run { c.responses[id]?.isClosed == true }
        }
        let g2 = try g.waitForMetrics { $0.sum("sluice_requests_total", ["protocol": "grpc"]) == 3 }
        XCTAssertEqual(g2.sum("sluice_requests_total", ["protocol": "grpc", "grpc_status": "0", "code": "200"]), 2)
        XCTAssertEqual(g2.sum("sluice_requests_total", ["protocol": "grpc", "grpc_status": "5"]), 1)
        XCTAssertEqual(g2.sum("istio_requests_total", ["request_protocol": "grpc", "grpc_response_status": "5"]), 1)
        XCTAssertEqual(g.revisionStats().first { $0.revision == rev1 }?.failed, 1, "a gRPC error counts as failed")
        try assertValidInBothFormats(g)
    }

    func testTLSHandshakesCountFullResumedAndFailed() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 2)
        let file = certs.directory + "/session.pem"
        let request = "GET /v2/health/ready HTTP/1.1\r\nHost: \(serviceHost)\r\nConnection: close\r\n\r\n"
        XCTAssertTrue(sClient(port: f.port, ["-tls1_3", "-ign_eof", "-sess_out", file], input: request).output.contains("New, TLSv1.3"))
        for _ in 0..<2 {
            XCTAssertTrue(sClient(port: f.port, ["-tls1_3", "-ign_eof", "-sess_in", file], input: request).output.contains("Reused, TLSv1.3"))
        }
        // Plain HTTP to the TLS port: the handshake fails.
        let plain = try TestClient(port: f.port)
        try plain.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(try plain.isClosedByPeer())
        let m = try f.gateway.waitForMetrics { $0.sum("sluice_tls_handshakes_total") == 4 }
        XCTAssertEqual(m.sum("sluice_tls_handshakes_total", ["result": "full"]), 1)
        XCTAssertEqual(m.sum("sluice_tls_handshakes_total", ["result": "resumed"]), 2)
        XCTAssertEqual(m.sum("sluice_tls_handshakes_total", ["result": "failed"]), 1)
        XCTAssertEqual(m.sum("sluice_downstream_connections_accepted_total", ["tls": "true"]), 4)
        XCTAssertEqual(m.sum("sluice_requests_total", ["tls": "true"]), 0, "no tls label on request counts")
        XCTAssertEqual(m.sum("sluice_requests_total", ["code": "200"]), 3)
    }

    func testIstioFamiliesCanBeTurnedOff() throws {
        let f = try GatewayFixture(split: 0, workers: 1, settings: { $0.metrics.istio = false })
        XCTAssertEqual(try predict(try f.client()).status, 200)
        let m = try f.gateway.waitForMetrics { $0.sum("sluice_requests_total") == 1 }
        XCTAssertNil(m.types["istio_requests_total"])
        XCTAssertNotNil(m.types["sluice_requests_total"])
    }

    /// Strictly valid in both formats, and to promtool when Debian's prometheus is installed.
    private func assertValidInBothFormats(_ g: Gateway, file: StaticString = #filePath, line: UInt = #line) throws {
        let prometheus = g.scrape(.prometheus)
        XCTAssertNoThrow(try MetricsText(prometheus, format: .prometheus), file: file, line: line)
        XCTAssertNoThrow(try MetricsText(g.scrape(.openMetrics), format: .openMetrics), file: file, line: line)
        if let problems = try promtoolProblems(prometheus) {
            XCTAssertEqual(problems, "", "promtool check metrics", file: file, line: line)
        }
    }
}

/// Hands out 0, 1, 2, … to a test pod's threads.
final class Ticker: @unchecked Sendable {  // guarded by its lock
    private let lock = NSLock()
    private var value = 0
    func take() -> Int { lock.withLock { defer { value += 1 }; return value } }
}
