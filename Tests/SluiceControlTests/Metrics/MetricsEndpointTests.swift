// Tests of /metrics: on the admin API behind its token, on the metrics-only listener without one (GET /metrics only),
// the format chosen by Accept, and the process and build families' values.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import SluiceProxy
import XCTest

final class MetricsEndpointTests: XCTestCase {
    static let openMetricsAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

    /// What `sluice serve` scrapes, less the data plane: process, build info, control plane, events.
    static func endpoint(_ plane: ControlPlane) -> MetricsEndpoint {
        MetricsEndpoint(writers: [
            ProcessMetrics.write,
            { ProcessMetrics.writeBuildInfo(version: "9.9.9", into: &$0) },
            plane.writeMetrics,
            plane.events.writeMetrics,
        ])
    }

    func contentType(_ response: BlockingResponse) -> String? {
        response.headers.first { $0.0.lowercased() == "content-type" }?.1
    }

    func testAdminMetricsNeedTheTokenAndFollowAccept() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil, events: EventLog(sink: { _ in })) { _ in }
        let api = AdminAPI(plane: plane, token: "s3cret", metrics: Self.endpoint(plane))
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/metrics")).status, 401, "the admin listener's token covers /metrics")
        let auth = ("Authorization", "Bearer s3cret")

        let text = api.handle(BlockingRequest(method: "GET", target: "/metrics", headers: [auth]))
        XCTAssertEqual(text.status, 200)
        XCTAssertEqual(contentType(text), "text/plain; version=0.0.4; charset=utf-8")
        let metrics = MetricsText(text.collectedBody)
        XCTAssertEqual(metrics[#"sluice_build_info{version="9.9.9"}"#], 1)
        XCTAssertEqual(metrics["sluice_route_table_generation"], 1)
        XCTAssertEqual(metrics.type(of: "sluice_manifests_applied_total"), "counter", "0.0.4 names a counter family with _total")
        XCTAssertFalse(metrics.text.contains("# EOF"))

        let open = api.handle(BlockingRequest(method: "GET", target: "/metrics", headers: [auth, ("Accept", Self.openMetricsAccept)]))
        XCTAssertEqual(contentType(open), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        let openText = MetricsText(open.collectedBody)
        XCTAssertTrue(openText.text.hasSuffix("# EOF\n"))
        XCTAssertEqual(openText.type(of: "sluice_manifests_applied"), "counter", "OpenMetrics names it without _total")
        XCTAssertEqual(openText[#"sluice_manifests_applied_total{result="refused"}"#], 0)

        XCTAssertEqual(api.handle(BlockingRequest(method: "POST", target: "/metrics", headers: [auth])).status, 405)
        // Without a metrics endpoint, the admin API has no /metrics.
        XCTAssertEqual(AdminAPI(plane: plane, token: nil).handle(BlockingRequest(method: "GET", target: "/metrics")).status, 404)
    }

    func testTheMetricsListenerServesOnlyGETMetricsWithoutAToken() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil, events: EventLog(sink: { _ in })) { _ in }
        let endpoint = Self.endpoint(plane)
        let server = try BlockingServer(port: 0, handler: endpoint.handleMetricsOnly)
        server.start()
        defer { server.stop() }
        let client = BlockingClient(host: "127.0.0.1", port: server.port)

        let scrape = try client.send(method: "GET", path: "/metrics")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertEqual(contentType(scrape), "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertNotNil(MetricsText(scrape.body)["process_open_fds"])
        let open = try client.send(method: "GET", path: "/metrics", headers: [("Accept", Self.openMetricsAccept)])
        XCTAssertEqual(contentType(open), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        XCTAssertTrue(String(decoding: open.body, as: UTF8.self).hasSuffix("# EOF\n"))

        XCTAssertEqual(try client.send(method: "GET", path: "/metrics?x=1").status, 200, "a query string is still /metrics")
        XCTAssertEqual(try client.send(method: "GET", path: "/healthz").status, 404)
        XCTAssertEqual(try client.send(method: "GET", path: AdminAPI.prefix + "/inferenceservices").status, 404, "no admin API here")
        let post = try client.send(method: "POST", path: "/metrics", body: Array("x".utf8))
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers.first { $0.0 == "Allow" }?.1, "GET")
    }

    func testProcessMetricsArePlausible() throws {
        let fd = open("/dev/null", O_RDONLY)  // one more descriptor than before, seen by the next reading
        let metrics = try XCTUnwrap(ProcessMetrics.current(), "/proc is mounted")
        close(fd)
        XCTAssertGreaterThan(metrics.openFDs, 3, "stdin, stdout, stderr and /dev/null at least")
        XCTAssertLessThanOrEqual(metrics.openFDs, metrics.maxFDs)
        var limit = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        XCTAssertEqual(metrics.maxFDs, Int(limit.rlim_cur))
        XCTAssertGreaterThan(metrics.residentMemoryBytes, 1 << 20, "an XCTest process holds more than 1 MiB")
        XCTAssertGreaterThanOrEqual(metrics.virtualMemoryBytes, metrics.residentMemoryBytes)
        XCTAssertGreaterThan(metrics.cpuSeconds, 0)
        // This test process started before this test and within the last day (the run's start is not known here;
        // the e2e test checks a started `sluice serve` to the second).
        let now = Date().timeIntervalSince1970
        XCTAssertLessThanOrEqual(metrics.startTimeSeconds, now + 1)
        XCTAssertGreaterThan(metrics.startTimeSeconds, now - 86_400)

        var exposition = MetricsExposition(format: .prometheus)
        metrics.write(into: &exposition)
        let text = MetricsText(exposition.finish())
        XCTAssertEqual(text["process_open_fds"], Double(metrics.openFDs))
        XCTAssertEqual(text["process_max_fds"], Double(metrics.maxFDs))
        XCTAssertEqual(text["process_resident_memory_bytes"], Double(metrics.residentMemoryBytes))
        XCTAssertEqual(text["process_start_time_seconds"] ?? 0, metrics.startTimeSeconds, accuracy: 0.001)
        XCTAssertEqual(text.type(of: "process_cpu_seconds_total"), "counter")
        XCTAssertNotNil(text["process_cpu_seconds_total"])
    }

    func testProcStatFieldsAreCountedFromTheLastParenthesis() throws {
        // A command name with spaces and parentheses (proc(5): field 2 is "(comm)"), then fields 3...24.
        let line = "4242 (sluice (w) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 4321 18446744073709551615\n"
        let fields = try XCTUnwrap(ProcessMetrics.parse(stat: line))
        XCTAssertEqual(fields.userTicks, 250)
        XCTAssertEqual(fields.systemTicks, 75)
        XCTAssertEqual(fields.startTicks, 123456)
        XCTAssertEqual(fields.virtualBytes, 987654321)
        XCTAssertEqual(fields.residentPages, 4321)
        XCTAssertNil(ProcessMetrics.parse(stat: "4242 no parenthesis"))
    }
}
