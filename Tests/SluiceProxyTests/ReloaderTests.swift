// Integration: a configuration reload (SIGHUP, `Reloader` in the control layer) is one generation — certificates,
// settings and routes apply together or not at all — and never installs a table older than the plane's.
// It lives here, not in SluiceControlTests, for the certificate fixture (TLSFixture.swift).
import Foundation
import SluiceControl
import SluiceProxy
import SluiceRouting
import SluiceTLS
import Synchronization
import XCTest

final class ReloaderTests: XCTestCase {
    /// A control plane (no state directory) handing its tables to a gateway, wired as `sluice serve` wires them.
    final class Stack: @unchecked Sendable {  // set up in init, then only read
        let plane: ControlPlane
        let gateway: Gateway
        let reloader: Reloader

        init(_ config: GatewayConfig) throws {
            let box = Mutex<Gateway?>(nil)
            let plane = try ControlPlane(config: config, store: nil) { routes in box.withLock { $0 }?.publish(routes: routes) }
            let gateway = try Gateway(settings: config.proxy, routes: plane.routes)
            box.withLock { $0 = gateway }
            self.plane = plane
            self.gateway = gateway
            reloader = Reloader(plane: plane, gateway: gateway, config: config)
        }

        deinit {
            plane.stop()
            gateway.shutdown(graceMs: 1_000)
        }

        /// Applies InferenceService `name` in kserve-test on the pod its annotation names: an h2c (gRPC) port,
        /// which has no readiness probe, so the revision is ready and routed at once.
        func apply(_ name: String, port: Int = 9001) throws {
            _ = try plane.apply("""
                apiVersion: serving.kserve.io/v1beta1
                kind: InferenceService
                metadata: {name: \(name), annotations: {serving.sluice.dev/endpoints: "h2c://127.0.0.1:\(port)"}}
                spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: "gs://models/\(name)"}}}
                """, defaultNamespace: "kserve-test")
        }
    }

    static func config(tls: [TLSCertificateFiles]? = nil) -> GatewayConfig {
        var config = GatewayConfig(services: [])
        config.proxy = GatewayFixture.settings(workers: 1) { $0.tls = tls.map { TLSSettings(certificates: $0) } }
        return config
    }

    /// A static service in the configuration file, as `services:` would define it.
    static func staticService(_ name: String, port: UInt16 = 9003) -> ServiceSpec {
        let revision = "\(name)-predictor-default-00001"
        return ServiceSpec(name: name, namespace: "kserve-test", revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: port)])],
                           traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
    }

    func testRoutesThatFailKeepTheOldCertificatesAndTheOldRoutes() throws {
        let certs = try TestCertificates()
        let old = try certs.make("old", dnsNames: [serviceHost], organization: "Old")
        let new = try certs.make("new", dnsNames: [serviceHost], organization: "New")
        let s = try Stack(Self.config(tls: [old]))
        try s.apply("sklearn-iris")
        let routes = s.gateway.routes
        XCTAssertTrue(routes === s.plane.routes)
        XCTAssertEqual(routes.services.map(\.name), ["sklearn-iris"])

        // Good certificates, but a static service that collides with the managed sklearn-iris.
        var next = Self.config(tls: [new])
        next.services = [Self.staticService("sklearn-iris")]
        XCTAssertThrowsError(try s.reloader.reload(next)) { error in
            XCTAssertTrue("\(error)".contains("service sklearn-iris in namespace kserve-test is already defined"), "\(error)")
        }
        XCTAssertEqual(s.gateway.tlsContext?.certificates, [old], "the old certificates stay")
        XCTAssertEqual(servedSubject(sClient(port: s.gateway.port, ["-servername", serviceHost])), "subject=O = Old, CN = \(serviceHost)")
        XCTAssertTrue(s.gateway.routes === routes, "the old routes stay on the gateway")
        XCTAssertTrue(s.plane.routes === routes, "and in the plane")
        XCTAssertEqual(s.reloader.config.services.count, 0, "the running configuration is the old one")
    }

    func testAGoodConfigurationAppliesCertificatesSettingsAndRoutesTogether() throws {
        let certs = try TestCertificates()
        let old = try certs.make("old", dnsNames: [serviceHost], organization: "Old")
        let new = try certs.make("new", dnsNames: [serviceHost], organization: "New")
        let s = try Stack(Self.config(tls: [old]))
        try s.apply("sklearn-iris")

        var next = Self.config(tls: [new])
        next.services = [Self.staticService("static-model")]
        next.proxy.timeouts.bodyIdleMs = 12_345
        next.proxy.shutdownTimeoutMs = 45_000
        next.proxy.workers = 3  // start-only: reported, not applied
        XCTAssertEqual(try s.reloader.reload(next), ["workers"])

        XCTAssertEqual(s.gateway.tlsContext?.certificates, [new])
        XCTAssertEqual(servedSubject(sClient(port: s.gateway.port, ["-servername", serviceHost])), "subject=O = New, CN = \(serviceHost)")
        XCTAssertTrue(s.gateway.routes === s.plane.routes)
        XCTAssertEqual(Set(s.gateway.routes.services.map(\.name)), ["sklearn-iris", "static-model"])
        XCTAssertEqual(s.gateway.settings.timeouts.bodyIdleMs, 12_345)
        XCTAssertEqual(s.gateway.settings.shutdownTimeoutMs, 45_000)
        XCTAssertEqual(s.gateway.settings.workers, 1)
        XCTAssertEqual(s.gateway.settings.listen, s.reloader.config.proxy.listen)
        XCTAssertEqual(s.reloader.config.proxy.workers, 1, "the running configuration keeps start-only values")

        // Turning TLS off needs a restart: refused whole, the new generation stays.
        XCTAssertThrowsError(try s.reloader.reload(Self.config())) { error in
            XCTAssertEqual("\(error)", "tls: the listener was started with TLS; turning it off needs a restart")
        }
        XCTAssertEqual(Set(s.gateway.routes.services.map(\.name)), ["sklearn-iris", "static-model"])
        XCTAssertEqual(s.gateway.tlsContext?.certificates, [new])
    }

    func testAReloadRacingOtherChangesNeverLeavesAnOlderTableInstalled() throws {
        let s = try Stack(Self.config())
        try s.apply("sklearn-iris")
        let config = Self.config()
        let start = DispatchSemaphore(value: 0)
        let failures = Mutex<[String]>([])
        // Each round: one reload and one other change (the same path as a probe result) start together; when both
        // are done, whichever came last must be the table the workers were given.
        for round in 0..<500 {
            let group = DispatchGroup()
            DispatchQueue.global().async(group: group) {
                start.wait()
                do { try s.reloader.reload(config) } catch { failures.withLock { $0.append("reload: \(error)") } }
            }
            DispatchQueue.global().async(group: group) {
                start.wait()
                do {
                    if round % 2 == 0 { try s.apply("other", port: 9002) } else { _ = try s.plane.delete(namespace: "kserve-test", name: "other") }
                } catch {
                    failures.withLock { $0.append("change: \(error)") }
                }
            }
            start.signal()
            start.signal()
            XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
            guard s.gateway.routes === s.plane.routes else {
                XCTFail("round \(round): the gateway holds an older table than the plane's")
                break
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
    }
}
