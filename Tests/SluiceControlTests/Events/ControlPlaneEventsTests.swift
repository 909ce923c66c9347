// Integration: the events of a real control plane and gateway over demo predictors — an apply, a pod that stops and
// comes back, a refused manifest, reloads refused and applied — as JSON lines, in the per-service events API and in
// the control plane's /metrics families.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

final class ControlPlaneEventsTests: XCTestCase {
    typealias Stack = ControlPlaneGatewayTests.Stack
    static let rev1 = "sklearn-iris-predictor-default-00001"

    func eventList(_ s: Stack) throws -> [JSONValue] {
        let response = try s.get("/namespaces/kserve-test/inferenceservices/sklearn-iris/events")
        XCTAssertEqual(response.status, 200)
        let list = try XCTUnwrap(JSONValue.parse(response.body))
        XCTAssertEqual(list["kind"], "EventList")
        return list["items"]?.arrayValue ?? []
    }

    func metrics(_ s: Stack) throws -> MetricsText {
        let response = try s.get("/metrics")
        XCTAssertEqual(response.status, 200)
        return MetricsText(response.body)
    }

    /// Polls /metrics until `series` has at least `value` (a probe round runs every 100 ms).
    func waitForMetric(_ s: Stack, _ series: String, atLeast value: Double, timeout: TimeInterval = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = try metrics(s)[series], found >= value { return }
            usleep(20_000)  // polling the observable counter, bounded by the deadline
        }
        XCTFail("\(series) did not reach \(value): \(try metrics(s).text)")
    }

    func testApplyAndAPodThatStopsAndComesBackAreEventsLinesAndMetrics() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        let endpoint = "127.0.0.1:\(s.model1.port)"
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try s.waitFor("00001 ready") { $0["latestReadyRevision"]?.stringValue == Self.rev1 }

        let applied = try s.lines.waitFor("isvc.applied")
        XCTAssertEqual(applied["level"] as? String, "info")
        XCTAssertEqual(applied["reason"] as? String, "Created")
        XCTAssertEqual(applied["namespace"] as? String, "kserve-test")
        XCTAssertEqual(applied["inferenceservice"] as? String, "sklearn-iris")
        XCTAssertEqual(applied["result"] as? String, "created")
        XCTAssertEqual(applied["revision"] as? String, Self.rev1)
        XCTAssertEqual(applied["revisionCreated"] as? Bool, true)
        let ready = try s.lines.waitFor("revision.ready")
        XCTAssertEqual(ready["revision"] as? String, Self.rev1)
        let traffic = try XCTUnwrap(ready["traffic"] as? [[String: Any]])
        XCTAssertEqual(traffic.map { $0["revisionName"] as? String }, [Self.rev1])
        XCTAssertEqual(traffic.map { $0["percent"] as? Int }, [100])
        let published = try s.lines.waitFor("routes.published")
        XCTAssertNotNil(published["generation"] as? Int)
        XCTAssertEqual(try s.answers(5), ["model-1": 5])
        let generationBefore = try XCTUnwrap(try metrics(s)["sluice_route_table_generation"])
        XCTAssertEqual(try metrics(s)[#"sluice_manifests_applied_total{result="created"}"#], 1)
        XCTAssertEqual(try metrics(s)[#"sluice_endpoint_ready{namespace="kserve-test",service="sklearn-iris",revision="\#(Self.rev1)",endpoint="\#(endpoint)"}"#], 1)
        XCTAssertEqual(try metrics(s)[#"sluice_readiness_probes_total{endpoint="\#(endpoint)",model="sklearn-iris",result="failure"}"#], 0)

        // The pod stops: its probe fails (failureThreshold 1), the endpoint and then the revision are not ready.
        s.model1.stop()
        let unhealthy = try s.lines.waitFor("endpoint.unhealthy")
        XCTAssertEqual(unhealthy["level"] as? String, "warning")
        XCTAssertEqual(unhealthy["endpoint"] as? String, endpoint)
        XCTAssertEqual(unhealthy["source"] as? String, "probe")
        XCTAssertEqual(unhealthy["revisions"] as? [String], [Self.rev1])
        let probeError = try XCTUnwrap(unhealthy["error"] as? String)
        XCTAssertFalse(probeError.isEmpty)
        let notReady = try s.lines.waitFor("revision.not_ready")
        XCTAssertEqual(notReady["revision"] as? String, Self.rev1)
        XCTAssertEqual(notReady["error"] as? String, probeError, "the revision says which probe error")
        XCTAssertTrue((notReady["message"] as? String)?.contains(probeError) == true)
        try waitForMetric(s, #"sluice_readiness_probes_total{endpoint="\#(endpoint)",model="sklearn-iris",result="failure"}"#, atLeast: 1)
        XCTAssertEqual(try metrics(s)[#"sluice_endpoint_ready{namespace="kserve-test",service="sklearn-iris",revision="\#(Self.rev1)",endpoint="\#(endpoint)"}"#], 0)
        XCTAssertGreaterThan(try XCTUnwrap(try metrics(s)["sluice_route_table_generation"]), generationBefore, "the routes without the pod were published")
        XCTAssertGreaterThanOrEqual(try metrics(s)[#"sluice_route_table_publications_total{cause="probe"}"#] ?? 0, 1)

        // It comes back on the same address.
        try s.restartModel1()
        let healthy = try s.lines.waitFor("endpoint.healthy")
        XCTAssertEqual(healthy["endpoint"] as? String, endpoint)
        try s.lines.waitFor("revision.ready", count: 2)
        try s.waitFor("00001 ready again") { $0["latestReadyRevision"]?.stringValue == Self.rev1 }
        XCTAssertEqual(try s.answers(5), ["model-1": 5])

        // The service's history, as kubectl describe would list it: the second RevisionReady folded into the first.
        let events = try eventList(s)
        XCTAssertEqual(events.map { $0["reason"]?.stringValue ?? "" },
                       ["Created", "EndpointUnhealthy", "RevisionNotReady", "EndpointHealthy", "RevisionReady"])
        XCTAssertEqual(events.map { $0["type"]?.stringValue ?? "" }, ["Normal", "Warning", "Warning", "Normal", "Normal"])
        XCTAssertEqual(events.last?["count"], .int(2))
        XCTAssertEqual(events.map { $0["involvedObject"]?["name"]?.stringValue ?? "" }, Array(repeating: "sklearn-iris", count: 5))
        XCTAssertTrue(events[2]["message"]?.stringValue?.contains(probeError) == true, "\(events[2])")
        let eventsTotal = try metrics(s)
        XCTAssertEqual(eventsTotal[#"sluice_events_total{reason="EndpointUnhealthy"}"#], 1)
        XCTAssertEqual(eventsTotal[#"sluice_events_total{reason="RevisionReady"}"#], 2)

        // Every line the plane wrote is one JSON object with the standard fields.
        for object in s.lines.objects() {
            XCTAssertNotNil(object["time"] as? String, "\(object)")
            XCTAssertNotNil(object["level"] as? String, "\(object)")
            XCTAssertNotNil(object["event"] as? String, "\(object)")
            XCTAssertNotNil(object["message"] as? String, "\(object)")
        }
    }

    func testARefusedManifestIsAnEventAndCountedAndUnknownServicesHaveNoEvents() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try s.get("/namespaces/kserve-test/inferenceservices/sklearn-iris/events").status, 404)
        let bad = """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata: {name: sklearn-iris}
            spec: {predictor: {canaryTrafficPercent: 150, model: {modelFormat: {name: sklearn}, storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"}}}
            """
        let r = try BlockingClient(host: "127.0.0.1", port: s.admin.port).send(
            method: "PUT", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices", body: Array(bad.utf8))
        XCTAssertEqual(r.status, 422)
        let refused = try s.lines.waitFor("manifests.refused")
        XCTAssertEqual(refused["level"] as? String, "warning")
        XCTAssertEqual(refused["status"] as? Int, 422)
        XCTAssertTrue((refused["message"] as? String)?.contains("spec.predictor.canaryTrafficPercent: Invalid value: 150") == true, "\(refused)")
        XCTAssertEqual(try metrics(s)[#"sluice_manifests_applied_total{result="refused"}"#], 1)
        XCTAssertEqual(try metrics(s)[#"sluice_manifests_applied_total{result="created"}"#], 0)
        XCTAssertTrue(s.lines.events("isvc.applied").isEmpty)
    }

    func testReloadsRefusedAndAppliedAreEventsWithTheFieldAndAreCounted() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        let reloader = Reloader(plane: s.plane, gateway: s.gateway, config: s.config)
        let metrics = MetricsEndpoint(writers: [reloader.writeMetrics])
        func counts() -> MetricsText { MetricsText(metrics.scrape(accept: nil).collectedBody) }
        XCTAssertEqual(counts()[#"sluice_config_reloads_total{result="refused"}"#], 0)

        // A file whose traffic does not add up: refused with its field and reason, nothing changes.
        let routes = s.gateway.routes
        let bad = """
            services:
            - name: static-iris
              namespace: kserve-test
              revisions: {static-iris-00001: [127.0.0.1:9009]}
              traffic: [{revisionName: static-iris-00001, percent: 60}, {revisionName: static-iris-00001, percent: 50}]
            """
        XCTAssertFalse(reloader.reload { () throws(ConfigError) in try GatewayConfig.parse(yaml: bad, file: "sluice.yaml") })
        let refused = try s.lines.waitFor("config.reload_refused")
        XCTAssertEqual(refused["level"] as? String, "warning")
        XCTAssertEqual(refused["field"] as? String, "services[0].traffic")
        XCTAssertEqual(refused["file"] as? String, "sluice.yaml")
        XCTAssertEqual(refused["error"] as? String, "percents add up to 110, must be 100")
        let message = try XCTUnwrap(refused["message"] as? String)
        XCTAssertTrue(message.contains("110") && message.hasSuffix("the running configuration stays"), message)
        XCTAssertTrue(s.gateway.routes === routes, "the running routes stay")
        XCTAssertEqual(counts()[#"sluice_config_reloads_total{result="refused"}"#], 1)
        XCTAssertEqual(counts()[#"sluice_config_reloads_total{result="ok"}"#], 0)

        // A good file that also moves the metrics listener, the access log and the span exporter: applied, with
        // those left for a restart; the access log's sampling applies at once.
        var next = s.config
        next.proxy.metrics.listen = SocketAddressSpec(host: "127.0.0.1", port: 9)
        next.proxy.accessLog.destination = .file(NSTemporaryDirectory() + "access.log")
        next.proxy.accessLog.sampleRate = 0.5
        next.proxy.tracing.otlpEndpoint = "http://127.0.0.1:4318/v1/traces"
        next.proxy.tracing.otlpEncoding = .protobuf
        next.file = "sluice.yaml"
        XCTAssertTrue(reloader.reload { () throws(ConfigError) in next })
        let reloaded = try s.lines.waitFor("config.reloaded")
        XCTAssertEqual(reloaded["needsRestart"] as? [String], ["metrics.listen", "accessLog.path", "tracing.otlp"])
        XCTAssertEqual(reloader.config.proxy.accessLog.destination, .off)
        XCTAssertEqual(reloader.config.proxy.accessLog.sampleRate, 0.5)
        XCTAssertNil(reloader.config.proxy.tracing.otlpEndpoint)
        XCTAssertEqual(reloader.config.proxy.tracing.otlpEncoding, .json)
        XCTAssertTrue((reloaded["message"] as? String)?.contains("sluice.yaml applied") == true, "\(reloaded)")
        XCTAssertNil(reloader.config.proxy.metrics.listen, "the running listener stays until a restart")
        XCTAssertEqual(counts()[#"sluice_config_reloads_total{result="ok"}"#], 1)
        XCTAssertEqual(try s.lines.waitFor("routes.published")["cause"] as? String, "reload")
    }
}
