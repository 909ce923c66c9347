// Integration and unit tests of active health checks seen from clients: a static service's endpoint failing its
// check is taken out and returns after the success threshold; the only pod of the only revision going down gives
// 503 with the JSON reason, never 404; the config's healthCheck and the readiness-path annotation.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import SluiceDemo
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

/// A demo predictor whose /v2/health/ready answers 200 while `isReady`, counting the passing answers.
final class CheckedPod: Sendable {
    final class Health: Sendable {
        let isReady = Atomic<Bool>(true)
        let passes = Atomic<Int>(0)
    }
    let health = Health()
    let server: BlockingServer
    var port: UInt16 { server.port }

    init(revision: String) throws {
        let handler = predictorHandler(modelName: "sklearn-iris", version: .v2, revision: revision)
        let health = health
        server = try BlockingServer(port: 0) { request in
            guard request.path == "/v2/health/ready" else { return handler(request) }
            guard health.isReady.load(ordering: .relaxed) else { return .json(status: 503, #"{"error": "not ready"}"#) }
            health.passes.add(1, ordering: .relaxed)
            return .json(status: 200, "{}")
        }
        server.start()
    }
}

final class HealthCheckTests: XCTestCase {
    static let host = "sklearn-iris.kserve-test.example.com"

    /// Which demo pod answered each of `n` requests (X-Demo-Revision), or the status when the gateway answered.
    func answers(_ n: Int, port: UInt16) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        let client = BlockingClient(host: "127.0.0.1", port: port)
        for _ in 0..<n {
            let r = try client.send(method: "GET", path: "/v2/models/sklearn-iris", headers: [("Host", Self.host)])
            counts[r.status == 200 ? (r.headers.first { $0.0 == "X-Demo-Revision" }?.1 ?? "?") : "status \(r.status)", default: 0] += 1
        }
        return counts
    }

    /// Asks until `done` holds for a batch of answers; fails after `timeout`.
    @discardableResult
    func answersUntil(_ what: String, port: UInt16, timeout: TimeInterval = 10, _ done: ([String: Int]) -> Bool) throws -> [String: Int] {
        let deadline = Date().addingTimeInterval(timeout)
        var last = try answers(20, port: port)
        while !done(last) && Date() < deadline { last = try answers(20, port: port) }
        XCTAssertTrue(done(last), "timed out waiting for \(what): \(last)")
        return last
    }

    func testAStaticEndpointFailingItsCheckIsTakenOutAndReturnsAfterTheSuccessThreshold() throws {
        let a = try CheckedPod(revision: "pod-a")
        let b = try CheckedPod(revision: "pod-b")
        defer { a.server.stop(); b.server.stop() }
        var config = try GatewayConfig.parse(yaml: """
            workers: 2
            readiness: {period: 50ms, timeout: 500ms}
            services:
            - name: sklearn-iris
              namespace: kserve-test
              healthCheck: {path: /v2/health/ready, failureThreshold: 1, successThreshold: 3}
              revisions:
                sklearn-iris-predictor-default-00001: [127.0.0.1:\(a.port), 127.0.0.1:\(b.port)]
              traffic:
              - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
            """, file: "test.yaml")
        config.proxy.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        let lines = EventCapture()
        let box = Mutex<Gateway?>(nil)
        let plane = try ControlPlane(config: config, store: nil, events: EventLog(sink: lines.sink)) { box.withLock { $0 }?.publish(routes: $0) }
        let gateway = try Gateway(settings: config.proxy, routes: plane.routes)
        box.withLock { $0 = gateway }
        plane.start()
        defer { plane.stop(); gateway.shutdown(graceMs: 1000) }

        try answersUntil("both pods to serve", port: gateway.port) { ($0["pod-a"] ?? 0) > 0 && ($0["pod-b"] ?? 0) > 0 }

        b.health.isReady.store(false, ordering: .relaxed)
        let unhealthy = try lines.waitFor("endpoint.unhealthy")
        XCTAssertEqual(unhealthy["endpoint"] as? String, "127.0.0.1:\(b.port)")
        XCTAssertEqual(unhealthy["source"] as? String, "healthCheck")
        XCTAssertEqual(unhealthy["namespace"] as? String, "kserve-test")
        XCTAssertEqual(unhealthy["revisions"] as? [String], ["sklearn-iris-predictor-default-00001"])
        XCTAssertEqual(unhealthy["error"] as? String, "GET /v2/health/ready answered 503")
        // The table without it is published right after the event.
        try answersUntil("pod-b out of rotation", port: gateway.port) { $0 == ["pod-a": 20] }
        XCTAssertEqual(try answers(100, port: gateway.port), ["pod-a": 100], "a failing endpoint gets no new requests")
        var exposition = MetricsExposition(format: .prometheus)
        plane.writeMetrics(into: &exposition)
        let metrics = MetricsText(exposition.bytes)
        let revision = "sklearn-iris-predictor-default-00001"
        XCTAssertEqual(metrics[#"sluice_endpoint_ready{namespace="kserve-test",service="sklearn-iris",revision="\#(revision)",endpoint="127.0.0.1:\#(b.port)"}"#], 0, metrics.text)
        XCTAssertEqual(metrics[#"sluice_endpoint_ready{namespace="kserve-test",service="sklearn-iris",revision="\#(revision)",endpoint="127.0.0.1:\#(a.port)"}"#], 1)
        XCTAssertGreaterThanOrEqual(metrics[#"sluice_readiness_probes_total{endpoint="127.0.0.1:\#(b.port)",model="sklearn-iris",result="failure"}"#] ?? 0, 1)

        b.health.passes.store(0, ordering: .relaxed)
        b.health.isReady.store(true, ordering: .relaxed)
        try answersUntil("pod-b back", port: gateway.port) { ($0["pod-b"] ?? 0) > 0 }
        XCTAssertGreaterThanOrEqual(b.health.passes.load(ordering: .relaxed), 3, "back only after successThreshold passing checks")
        let healthy = try lines.waitFor("endpoint.healthy")
        XCTAssertEqual(healthy["endpoint"] as? String, "127.0.0.1:\(b.port)")
    }

    func testTheOnlyPodOfTheOnlyRevisionDownAnswers503WithTheReasonNot404() throws {
        let s = try ControlPlaneGatewayTests.Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try s.waitFor("00001 ready") { $0["latestReadyRevision"]?.stringValue == "sklearn-iris-predictor-default-00001" }
        XCTAssertEqual(try s.answers(5), ["model-1": 5])

        s.model1.stop()
        var seen: [Int: Int] = [:]
        let client = BlockingClient(host: "127.0.0.1", port: s.gateway.port)
        let deadline = Date().addingTimeInterval(10)
        var last: BlockingResponse?
        while Date() < deadline {
            let r = try client.send(method: "GET", path: "/v1/models/sklearn-iris", headers: [("Host", ControlPlaneGatewayTests.host)])
            seen[r.status, default: 0] += 1
            last = r
            if r.status == 503 { break }
        }
        let answer = try XCTUnwrap(last)
        XCTAssertEqual(answer.status, 503, "\(seen)")
        XCTAssertNil(seen[404], "the service exists: never 'no InferenceService serves this host'")
        let reason = try XCTUnwrap(JSONValue.parse(answer.body)?["error"]?.stringValue)
        XCTAssertTrue(reason.contains("no ready endpoint"), reason)
        // Still 503 once the revision is marked not ready, and `get isvc` shows it not Ready.
        try s.waitFor("00001 not ready") { _ in
            let conditions = (try? s.resource()?["status"]?["conditions"]?.arrayValue) ?? nil
            return conditions?.first { $0["type"]?.stringValue == "Ready" }?["status"]?.stringValue == "False"
        }
        XCTAssertEqual(try s.answers(10), ["status 503": 10])

        try s.restartModel1()
        try s.waitFor("00001 ready again") { _ in
            let conditions = (try? s.resource()?["status"]?["conditions"]?.arrayValue) ?? nil
            return conditions?.first { $0["type"]?.stringValue == "Ready" }?["status"]?.stringValue == "True"
        }
        XCTAssertEqual(try s.answers(5), ["model-1": 5])
    }

    func testACanaryRevisionLosingItsOnlyEndpointGivesItsShareToTheOther() {
        let a = Endpoint(host: "127.0.0.1", port: 9001)
        let b = Endpoint(host: "127.0.0.1", port: 9002)
        let spec = ServiceSpec(name: "m", namespace: "ns",
                               revisions: [RevisionSpec(name: "m-2", endpoints: [b]), RevisionSpec(name: "m-1", endpoints: [a])],
                               traffic: [TrafficTargetSpec(revisionName: "m-2", percent: 10, tag: "latest", latestRevision: true),
                                         TrafficTargetSpec(revisionName: "m-1", percent: 90, tag: "prev")])
        let canaryDown = spec.withHealthyEndpoints { $0 != b }
        XCTAssertEqual(canaryDown.traffic.map(\.percent), [0, 100])
        XCTAssertEqual(canaryDown.revisions.map(\.endpoints), [[], [a]])
        XCTAssertEqual(canaryDown.traffic.map(\.tag), ["latest", "prev"], "tags stay: the tag host answers 503")
        XCTAssertEqual(spec.withHealthyEndpoints { $0 != a }.traffic.map(\.percent), [100, 0])
        let allDown = spec.withHealthyEndpoints { _ in false }
        XCTAssertEqual(allDown.traffic.map(\.percent), [10, 90], "nothing to move to: the split stays and every request gets 503")
        XCTAssertEqual(allDown.revisions.map(\.endpoints), [[], []])
        XCTAssertEqual(spec.withHealthyEndpoints { _ in true }, spec)
    }

    func testHealthCheckConfigAndItsErrors() throws {
        func parse(_ healthCheck: String) throws -> GatewayConfig {
            try GatewayConfig.parse(yaml: """
                readiness: {path: /v2/health/ready, period: 2s, failureThreshold: 4}
                services:
                - name: sklearn-iris
                  namespace: kserve-test
                  \(healthCheck)
                  revisions:
                    sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
                  traffic:
                  - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
                """, file: "test.yaml")
        }
        let key = GatewayConfig.serviceKey(namespace: "kserve-test", name: "sklearn-iris")
        XCTAssertNil(try parse("").healthChecks[key], "static services are not checked unless asked")
        XCTAssertNil(try parse("healthCheck: false").healthChecks[key])
        let defaults = try XCTUnwrap(try parse("healthCheck: true").healthChecks[key])
        XCTAssertEqual(defaults.path, "/v2/health/ready")
        XCTAssertEqual(defaults.periodMs, 2000)
        XCTAssertEqual(defaults.failureThreshold, 4)
        let own = try XCTUnwrap(try parse("healthCheck: {path: /healthz, timeout: 250ms, successThreshold: 2}").healthChecks[key])
        XCTAssertEqual(own.path, "/healthz")
        XCTAssertEqual(own.timeoutMs, 250)
        XCTAssertEqual(own.successThreshold, 2)
        XCTAssertEqual(own.periodMs, 2000, "unset fields are readiness:'s")
        XCTAssertEqual(own.failureThreshold, 4)
        XCTAssertThrowsError(try parse("healthCheck: {path: healthz}")) { error in
            XCTAssertEqual("\(error)", "test.yaml: services[0].healthCheck.path: must start with /")
        }
        XCTAssertThrowsError(try parse("healthCheck: {interval: 1s}")) { error in
            XCTAssertTrue("\(error)".contains("services[0].healthCheck.interval: unknown key"), "\(error)")
        }
        XCTAssertThrowsError(try parse("healthCheck: {failureThreshold: 0}")) { error in
            XCTAssertTrue("\(error)".contains("services[0].healthCheck.failureThreshold"), "\(error)")
        }
    }

    func testReadinessPathAnnotationIsValidatedAndDecidesTheRevisionsCheck() throws {
        func manifest(_ path: String) -> String {
            """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata:
              name: sklearn-iris
              annotations: {serving.sluice.dev/readiness-path: "\(path)", serving.sluice.dev/endpoints: "127.0.0.1:9001"}
            spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "gs://x"}}}
            """
        }
        XCTAssertThrowsError(try ManifestDecoder.decode(manifest("v2/health/ready"), defaultNamespace: "default")) { error in
            XCTAssertTrue("\(error)".contains("metadata.annotations[serving.sluice.dev/readiness-path]: Invalid value: \"v2/health/ready\""), "\(error)")
        }
        XCTAssertThrowsError(try ManifestDecoder.decode(manifest("/v2/health ready"), defaultNamespace: "default"))
        let isvc = try XCTUnwrap(try ManifestDecoder.decode(manifest("/v2/models/{name}/ready"), defaultNamespace: "default").first)
        var state = RolloutState()
        _ = state.apply(isvc, now: Date()) { _ in .success([]) }
        let revision = try XCTUnwrap(state.record(namespace: "default", name: "sklearn-iris")?.revisions.first)
        var config = GatewayConfig(services: [])
        config.control.readiness.periodMs = 300
        let target = CheckedEndpoint.target(Endpoint(host: "127.0.0.1", port: 9001), "sklearn-iris", revision, config)
        XCTAssertEqual(target.path, "/v2/models/sklearn-iris/ready")
        XCTAssertEqual(target.settings.periodMs, 300, "the rest of the check is readiness:'s")
    }
}
