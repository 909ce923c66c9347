// Integration: the control plane's active health checks of TLS and HTTP/2 endpoints — https:// pods checked over TLS
// verified against upstreamTLS, h2c:// and h2:// pods with grpc.health.v1 (KServe V2 ModelReady where the pod has no
// health service) — and a gRPC client of a service whose only pod fails its check getting UNAVAILABLE, not 404.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

final class ActiveHealthCheckTests: XCTestCase {
    private func target(_ port: UInt16, _ kind: UpstreamProtocol, path: String = "/v1/models/{name}") -> ProbeTarget {
        var settings = ProbeSettings()
        settings.path = path
        settings.failureThreshold = 1
        return ProbeTarget(endpoint: Endpoint(host: "127.0.0.1", port: port, protocol: kind), modelName: "sklearn-iris", settings: settings)
    }

    private func passed(_ result: ProbeResult) -> Bool { result.isProbed && result.isReady && result.lastError == nil }

    func testHTTPSEndpointsAreCheckedOverTLSVerifiedAgainstTheUpstreamCA() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let other = try TestCA(certs, name: "other")
        let pod = try PythonTLSPod(try ca.issue("pod", san: "IP:127.0.0.1"), in: certs, name: "pod")
        defer { pod.stop() }
        let rogue = try PythonTLSPod(try other.issue("rogue", san: "IP:127.0.0.1"), in: certs, name: "rogue")
        defer { rogue.stop() }
        let good = target(pod.port, .https, path: "/v2/health/ready")
        let bad = target(rogue.port, .https, path: "/v2/health/ready")
        let prober = ReadinessProber(upstreamTLS: UpstreamTLSSettings(caFile: ca.cert)) { _ in }
        prober.setTargets([good, bad])
        prober.probeOnce()

        XCTAssertTrue(passed(prober.result(for: good)), "\(prober.result(for: good))")
        XCTAssertTrue(pod.wait(until: "requests", reaches: 1), "the GET reached the pod inside TLS")
        XCTAssertEqual(prober.result(for: bad).isReady, false)
        XCTAssertTrue(prober.result(for: bad).lastError?.contains("certificate verify failed") == true, "\(prober.result(for: bad))")
        XCTAssertEqual(rogue.counts["requests"] ?? 0, 0, "no request goes to a pod that is not who it should be")

        // Plain HTTP would not have reached it: the same pod probed as http:// fails.
        let plain = target(pod.port, .http1)
        prober.setTargets([good, plain])
        prober.probeOnce()
        XCTAssertFalse(prober.result(for: plain).isReady)

        // The pod dies: its check fails.
        pod.stop()
        prober.probeOnce()
        XCTAssertEqual(prober.result(for: good).isReady, false)
    }

    func testH2CEndpointsAreCheckedWithGRPCHealthAndKServeModelReadyWithoutIt() throws {
        let pod = H2EchoBackend(name: "grpc")
        defer { pod.stop() }
        let checked = target(pod.port, .h2c)
        let prober = ReadinessProber { _ in }
        prober.setTargets([checked])

        pod.healthStatus = 1  // SERVING
        prober.probeOnce()
        XCTAssertTrue(passed(prober.result(for: checked)), "\(prober.result(for: checked))")
        let asked = try XCTUnwrap(pod.requests.last)
        XCTAssertEqual(asked.first { $0.0 == ":path" }?.1, "/grpc.health.v1.Health/Check")
        XCTAssertEqual(asked.first { $0.0 == "content-type" }?.1, "application/grpc")
        XCTAssertEqual(asked.first { $0.0 == "te" }?.1, "trailers")

        pod.healthStatus = 2  // NOT_SERVING
        prober.probeOnce()
        XCTAssertEqual(prober.result(for: checked).isReady, false)
        XCTAssertEqual(prober.result(for: checked).lastError, "/grpc.health.v1.Health/Check answered NOT_SERVING")

        // A pod without the health service (KServe's model server): UNIMPLEMENTED, then V2 ModelReady for the model.
        pod.healthStatus = nil
        pod.modelReady = true
        prober.probeOnce()
        XCTAssertEqual(prober.result(for: checked).isReady, true)
        XCTAssertEqual(pod.requests.last?.first { $0.0 == ":path" }?.1, "/inference.GRPCInferenceService/ModelReady")
        pod.modelReady = false
        prober.probeOnce()
        XCTAssertEqual(prober.result(for: checked).lastError, "/inference.GRPCInferenceService/ModelReady: model sklearn-iris is not ready")
        pod.modelReady = nil
        prober.probeOnce()
        XCTAssertEqual(prober.result(for: checked).isReady, false, "a pod answering neither is not ready")
    }

    func testH2EndpointsAreCheckedWithGRPCHealthOverTLSWithALPNH2() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let files = try ca.issue("pod", san: "IP:127.0.0.1")
        let pod = H2EchoBackend(name: "h2", tls: files)
        defer { pod.stop() }
        let noALPN = H2EchoBackend(name: "no-alpn", tls: files, selectH2: false)
        defer { noALPN.stop() }
        pod.healthStatus = 1
        noALPN.healthStatus = 1
        let good = target(pod.port, .h2)
        let bad = target(noALPN.port, .h2)
        let prober = ReadinessProber(upstreamTLS: UpstreamTLSSettings(caFile: ca.cert)) { _ in }
        prober.setTargets([good, bad])
        prober.probeOnce()
        XCTAssertTrue(passed(prober.result(for: good)), "\(prober.result(for: good))")
        XCTAssertEqual(pod.handshakes, 1)
        XCTAssertEqual(prober.result(for: bad).lastError, "gRPC health check: TLS: the pod did not select ALPN h2")
    }

    /// A gRPC-only InferenceService (an h2c:// endpoint from the annotation) whose only pod stops SERVING: gRPC
    /// clients get UNAVAILABLE and REST clients 503 with the JSON reason, never "no InferenceService serves this host".
    func testTheOnlyGRPCPodFailingItsCheckIsUnavailableNot404() throws {
        let pod = H2EchoBackend(name: "grpc")
        defer { pod.stop() }
        pod.healthStatus = 1
        var config = GatewayConfig(services: [])
        config.proxy.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        config.proxy.workers = 1
        config.control.readiness.periodMs = 50
        config.control.readiness.failureThreshold = 1
        let box = Mutex<Gateway?>(nil)
        let plane = try ControlPlane(config: config, store: nil, events: EventLog(sink: { _ in })) { routes in
            box.withLock { $0 }?.publish(routes: routes)
        }
        let gateway = try Gateway(settings: config.proxy, routes: plane.routes)
        box.withLock { $0 = gateway }
        plane.start()
        defer { plane.stop(); gateway.shutdown(graceMs: 1000) }
        _ = try plane.apply("""
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata:
              name: sklearn-iris
              annotations: {serving.sluice.dev/endpoints: "h2c://127.0.0.1:\(pod.port)"}
            spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "gs://x"}}}
            """, defaultNamespace: "kserve-test")
        let authority = "sklearn-iris.kserve-test.example.com"
        let client = try H2TestClient(port: gateway.port)
        func call() throws -> H2TestResponse {
            let id = client.request("POST", grpcPath, authority: authority, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
            try client.run { client.responses[id]?.isClosed == true }
            return client.responses[id]!
        }
        /// Calls until `done` holds for an answer (the plane republishes within a check period or two).
        func callUntil(_ what: String, _ done: (H2TestResponse) -> Bool) throws -> H2TestResponse {
            let deadline = Date().addingTimeInterval(10)
            var last = try call()
            while !done(last) && Date() < deadline { last = try call() }
            XCTAssertTrue(done(last), "timed out waiting for \(what): \(last.headers)")
            return last
        }
        _ = try callUntil("the pod to be ready and served") { $0.header("x-backend") == "grpc" }

        pod.healthStatus = 2  // NOT_SERVING
        let refused = try callUntil("UNAVAILABLE") { $0.header("grpc-status") == "14" }
        XCTAssertEqual(refused.status, 200)
        XCTAssertTrue(refused.header("grpc-message")?.contains("no ready endpoint") == true, "\(refused.headers)")
        let rest = try BlockingClient(host: "127.0.0.1", port: gateway.port).send(method: "GET", path: "/v1/models/sklearn-iris", headers: [("Host", authority)])
        XCTAssertEqual(rest.status, 503)
        XCTAssertTrue(String(decoding: rest.body, as: UTF8.self).hasPrefix(#"{"error": ""#))
        XCTAssertTrue(String(decoding: rest.body, as: UTF8.self).contains("no ready endpoint"))
        let ready = plane.resource(namespace: "kserve-test", name: "sklearn-iris")?["status"]?["conditions"]?.arrayValue?
            .first { $0["type"]?.stringValue == "Ready" }
        XCTAssertEqual(ready?["status"]?.stringValue, "False")

        pod.healthStatus = 1
        _ = try callUntil("the pod back in rotation") { $0.header("x-backend") == "grpc" }
    }
}
