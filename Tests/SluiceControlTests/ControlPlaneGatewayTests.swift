// Integration: the control plane driving a real gateway — manifests applied over the admin API, readiness probes
// gating traffic, state surviving a restart — with demo predictors on loopback.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceDemo
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

/// Whether model-2's pod passes its readiness probe (tests flip it).
final class ReadinessSwitch: Sendable {
    let isReady = Atomic<Bool>(true)
}

final class ControlPlaneGatewayTests: XCTestCase {
    static let manifests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/manifests")
    static let host = "sklearn-iris.kserve-test.example.com"

    /// Demo predictors for model and model-2, a state directory, and a gateway + control plane + admin API over them.
    final class Stack: @unchecked Sendable {  // set up once, then only read (model1 is replaced only by the test's thread)
        private(set) var model1: BlockingServer
        let model2: BlockingServer
        let stateDir: String
        var plane: ControlPlane!
        var gateway: Gateway!
        var admin: BlockingServer!
        let readiness = ReadinessSwitch()
        /// Every event line the plane wrote (a new EventLog per start, lines kept across restarts).
        let lines = EventCapture()

        init() throws {
            model1 = try BlockingServer(port: 0, handler: Self.model1Handler)
            let ready = readiness
            let handler2 = predictorHandler(modelName: "sklearn-iris", version: .v2, revision: "model-2")
            model2 = try BlockingServer(port: 0) { request in
                if request.path == "/v1/models/sklearn-iris" && !ready.isReady.load(ordering: .relaxed) {
                    return .json(status: 503, #"{"error": "Model with name sklearn-iris is not ready yet."}"#)
                }
                return handler2(request)
            }
            model1.start()
            model2.start()
            stateDir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
            try start()
        }

        static let model1Handler = predictorHandler(modelName: "sklearn-iris", version: .v1, revision: "model-1")

        /// model-1's pod comes back on the same address after `model1.stop()` (a restarted pod).
        func restartModel1() throws {
            model1 = try BlockingServer(port: model1.port, handler: Self.model1Handler)
            model1.start()
        }

        var config: GatewayConfig {
            var config = GatewayConfig(services: [])
            config.proxy.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
            config.proxy.workers = 2
            config.control.models = [
                "gs://kfserving-examples/models/sklearn/1.0/model": [Endpoint(host: "127.0.0.1", port: model1.port)],
                "gs://kfserving-examples/models/sklearn/1.0/model-2": [Endpoint(host: "127.0.0.1", port: model2.port)],
            ]
            config.control.readiness.periodMs = 100
            config.control.readiness.failureThreshold = 1
            return config
        }

        func start() throws {
            let box = Mutex<Gateway?>(nil)
            plane = try ControlPlane(config: config, store: StateStore(directory: stateDir), events: EventLog(sink: lines.sink)) { routes in
                box.withLock { $0 }?.publish(routes: routes)
            }
            gateway = try Gateway(settings: config.proxy, routes: plane.routes)
            box.withLock { $0 = gateway }
            plane.start()
            let metrics = MetricsEndpoint(writers: [plane.writeMetrics, plane.events.writeMetrics])
            admin = try BlockingServer(port: 0, handler: AdminAPI(plane: plane, token: nil, metrics: metrics).handle)
            admin.start()
        }

        /// Like a process exit: everything, the state directory's lock included, is released.
        func stop() {
            admin?.stop()
            plane?.stop()
            gateway?.shutdown(graceMs: 1000)
            admin = nil
            plane = nil
            gateway = nil
        }

        func apply(_ file: String) throws -> BlockingResponse {
            let body = try Data(contentsOf: ControlPlaneGatewayTests.manifests.appendingPathComponent(file))
            return try BlockingClient(host: "127.0.0.1", port: admin.port).send(
                method: "PUT", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices", body: Array(body))
        }

        /// GET on the admin API under the InferenceService prefix (`/namespaces/…`), or at `path` when it is /metrics.
        func get(_ path: String, headers: [(String, String)] = []) throws -> BlockingResponse {
            try BlockingClient(host: "127.0.0.1", port: admin.port).send(
                method: "GET", path: path.hasPrefix("/metrics") ? path : AdminAPI.prefix + path, headers: headers)
        }

        func resource() throws -> JSONValue? {
            let r = try BlockingClient(host: "127.0.0.1", port: admin.port).send(method: "GET", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices/sklearn-iris")
            return JSONValue.parse(r.body)
        }

        /// Polls the admin API until `condition` holds for the predictor status (a rollout takes a probe round).
        func waitFor(_ what: String, timeout: TimeInterval = 10, _ condition: (JSONValue) -> Bool) throws {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let predictor = try resource()?["status"]?["components"]?["predictor"], condition(predictor) { return }
                usleep(20_000)  // polling the observable state, bounded by the deadline
            }
            XCTFail("timed out waiting for \(what): \(try resource()?.jsonText ?? "nil")")
        }

        /// Which demo model answered each of `n` requests to `host`.
        func answers(_ n: Int, host: String = ControlPlaneGatewayTests.host) throws -> [String: Int] {
            var counts: [String: Int] = [:]
            let client = BlockingClient(host: "127.0.0.1", port: gateway.port)
            for _ in 0..<n {
                let r = try client.send(method: "GET", path: "/v1/models/sklearn-iris", headers: [("Host", host)])
                counts[r.status == 200 ? (r.headers.first { $0.0 == "X-Demo-Revision" }?.1 ?? "?") : "status \(r.status)", default: 0] += 1
            }
            return counts
        }
    }

    func testTheSeedWorkflowThroughTheGateway() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try s.waitFor("00001 ready") { $0["latestReadyRevision"]?.stringValue == "sklearn-iris-predictor-default-00001" }
        XCTAssertEqual(try s.answers(20), ["model-1": 20])

        // Canary 10 %: model-2's pod is not ready yet, so no request may reach it.
        s.readiness.isReady.store(false, ordering: .relaxed)
        XCTAssertEqual(try s.apply("2-canary.yaml").status, 200)
        XCTAssertEqual(try s.answers(100), ["model-1": 100], "a revision that is not ready gets no traffic")
        XCTAssertEqual(try s.resource()?["status"]?["components"]?["predictor"]?["latestCreatedRevision"]?.stringValue, "sklearn-iris-predictor-default-00002")
        s.readiness.isReady.store(true, ordering: .relaxed)
        try s.waitFor("00002 ready") { $0["latestReadyRevision"]?.stringValue == "sklearn-iris-predictor-default-00002" }
        let split = try s.answers(1000)
        // Binomial(1000, 0.1): mean 100, sigma 9.5; 5 sigma either side.
        XCTAssertGreaterThan(split["model-2"] ?? 0, 52)
        XCTAssertLessThan(split["model-2"] ?? 0, 148)
        XCTAssertEqual((split["model-1"] ?? 0) + (split["model-2"] ?? 0), 1000)

        XCTAssertEqual(try s.apply("3-promote.yaml").status, 200)
        XCTAssertEqual(try s.answers(50), ["model-2": 50])

        XCTAssertEqual(try s.apply("4-rollback.yaml").status, 200)
        XCTAssertEqual(try s.answers(50), ["model-1": 50])
        let traffic = try XCTUnwrap(s.resource()?["status"]?["components"]?["predictor"]?["traffic"]?.arrayValue)
        XCTAssertEqual(traffic.map { $0["percent"]?.intValue }, [0, 100])

        // Restart: a new control plane on the same state directory serves the same traffic at once.
        s.stop()
        try s.start()
        XCTAssertEqual(try s.answers(50), ["model-1": 50], "the rollback survives a restart")

        XCTAssertEqual(try s.apply("5-tag-routing.yaml").status, 200)
        try s.waitFor("00003 ready") { $0["latestReadyRevision"]?.stringValue == "sklearn-iris-predictor-default-00003" }
        XCTAssertEqual(try s.answers(20, host: "latest-sklearn-iris-predictor-default.kserve-test.example.com"), ["model-2": 20])
        XCTAssertEqual(try s.answers(20, host: "prev-sklearn-iris-predictor-default.kserve-test.example.com"), ["model-1": 20])
    }

    func testInvalidManifestIsRefusedWholeAndTheRunningRoutesStay() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try s.waitFor("00001 ready") { $0["latestReadyRevision"]?.stringValue == "sklearn-iris-predictor-default-00001" }
        let bad = """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata: {name: sklearn-iris}
            spec: {predictor: {canaryTrafficPercent: 150, model: {modelFormat: {name: sklearn}, storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"}}}
            """
        let r = try BlockingClient(host: "127.0.0.1", port: s.admin.port).send(
            method: "PUT", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices", body: Array(bad.utf8))
        XCTAssertEqual(r.status, 422)
        XCTAssertEqual(JSONValue.parse(r.body)?["message"]?.stringValue,
                       #"The InferenceService "sklearn-iris" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: 150: must be between 0 and 100"#)
        XCTAssertEqual(try s.answers(20), ["model-1": 20])
        XCTAssertEqual(try s.resource()?["status"]?["components"]?["predictor"]?["latestCreatedRevision"]?.stringValue, "sklearn-iris-predictor-default-00001")
    }

    func testCorruptOrNewerStateStopsStartUp() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(#"{"formatVersion": 99, "services": {}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/state.json"))
        XCTAssertThrowsError(try ControlPlane(config: GatewayConfig(services: []), store: StateStore(directory: dir)) { _ in }) { error in
            XCTAssertTrue("\(error)".contains("refusing to start"), "\(error)")
        }
        let kept = try String(contentsOfFile: dir + "/state.json", encoding: .utf8)
        XCTAssertTrue(kept.contains("99"), "the newer file is left as it was")
    }
}
