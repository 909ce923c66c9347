// Integration: gRPC through the gateway to pods that speak HTTP/2 over TLS (`h2://` endpoints, ALPN h2) — the h2c
// echo pod wrapped in OpenSSL with a certificate made at test time; verification and ALPN failures are UNAVAILABLE.
import Foundation
import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

final class GRPCOverTLSTests: XCTestCase {
    private func call(_ c: H2TestClient, _ method: String = "echo", body: [UInt8]) throws -> H2TestResponse {
        let id = c.request("POST", "/inference.GRPCInferenceService/\(method)", authority: serviceHost, headers: grpcHeaders, body: body)
        try c.run { c.responses[id]?.isClosed == true }
        return c.responses[id]!
    }

    func testCallsReachTheH2TLSPodWithTrailersOnOneConnection() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = H2EchoBackend(name: "secure", tls: try ca.issue("pod", san: "IP:127.0.0.1"))
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port), protocol: .h2) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        for i in 0..<3 {
            let message: [UInt8] = [0, 0, 0, 0, 3, 1, 2, UInt8(i)]
            let r = try call(c, body: message)
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.body, message)
            XCTAssertEqual(r.header("x-backend"), "secure")
            XCTAssertEqual(r.header("grpc-status"), "0", "trailers relayed")
            XCTAssertEqual(r.header("grpc-message"), "echoed 8 bytes")
            XCTAssertEqual(r.errorCode, 0)
        }
        // A large message crosses many TLS records and flow-control windows both ways.
        let big = [UInt8](repeating: 7, count: 300_000)
        let r = try call(c, body: big)
        XCTAssertEqual(r.body.count, big.count)
        XCTAssertTrue(r.body == big)
        XCTAssertEqual(r.header("grpc-status"), "0")
        // A trailers-only error from the pod is relayed too.
        let failed = try call(c, "fail", body: [0, 0, 0, 0, 0])
        XCTAssertEqual(failed.header("grpc-status"), "5")
        XCTAssertEqual(failed.header("grpc-message"), "model not found")
        XCTAssertEqual(pod.requests.count, 5)
        let seen = try XCTUnwrap(pod.requests.first)
        XCTAssertEqual(seen.first { $0.0 == "content-type" }?.1, "application/grpc")
        XCTAssertEqual(seen.first { $0.0 == ":authority" }?.1, serviceHost)
        XCTAssertEqual(seen.first { $0.0 == ":scheme" }?.1, "https", "the scheme of the TLS hop to the pod")
        XCTAssertEqual(seen.first { $0.0 == "x-forwarded-proto" }?.1, "http", "X-Forwarded-Proto is about the client side")
        XCTAssertEqual(pod.handshakes, 1, "every call multiplexed on one upstream TLS connection")
        XCTAssertEqual(pod.failedHandshakes, 0)
    }

    func testAPodSignedByAnotherCAIsUnavailableAndGetsNoCall() throws {
        let certs = try TestCertificates()
        let trusted = try TestCA(certs, name: "trusted")
        let other = try TestCA(certs, name: "other")
        let pod = H2EchoBackend(name: "rogue", tls: try other.issue("rogue", san: "IP:127.0.0.1"))
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port), protocol: .h2) { $0.upstreamTLS = UpstreamTLSSettings(caFile: trusted.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        for _ in 0..<2 {
            let r = try call(c, body: [0, 0, 0, 0, 6] + Array("secret".utf8))
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.header("grpc-status"), "14", "UNAVAILABLE")
            XCTAssertEqual(r.header("grpc-message"), "upstream connect failed")
            XCTAssertEqual(r.body, [])
        }
        XCTAssertEqual(pod.requests.count, 0, "no call reaches a pod that failed verification")
        XCTAssertEqual(pod.handshakes, 0)
        let deadline = Date().addingTimeInterval(3)
        while pod.failedHandshakes < 2 && Date() < deadline { usleep(20_000) }
        XCTAssertGreaterThanOrEqual(pod.failedHandshakes, 2, "the gateway reached the pod and refused its certificate")
    }

    func testAPodThatDoesNotSelectH2IsUnavailable() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = H2EchoBackend(name: "noalpn", tls: try ca.issue("pod", san: "IP:127.0.0.1"), selectH2: false)
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port), protocol: .h2) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let r = try call(c, body: [0, 0, 0, 0, 0])
        XCTAssertEqual(r.header("grpc-status"), "14")
        XCTAssertEqual(r.header("grpc-message"), "upstream connect failed")
        XCTAssertEqual(pod.requests.count, 0)
    }

    func testAPodThatNeverFinishesTheHandshakeIsAConnectTimeout() throws {
        let silent = RawBackend()  // the kernel accepts the TCP connection; nobody ever answers the ClientHello
        defer { silent.stop() }
        let gateway = try grpcGateway(pods: (silent.port, silent.port), protocol: .h2) { $0.timeouts.upstreamConnectMs = 300 }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let start = Date()
        let r = try call(c, body: [0, 0, 0, 0, 0])
        XCTAssertEqual(r.header("grpc-message"), "upstream connect timed out")
        XCTAssertNotEqual(r.header("grpc-status"), "0")
        XCTAssertLessThan(Date().timeIntervalSince(start), 3, "the handshake counts against the upstream connect timeout")
    }

    func testH2EndpointTextFormAndGRPCRouting() throws {
        let e = Endpoint(host: "127.0.0.1", port: 8443, protocol: .h2)
        XCTAssertEqual(e.description, "h2://127.0.0.1:8443")
        XCTAssertTrue(e.isHTTP2)
        XCTAssertFalse(e.isTLS, "isTLS is HTTP/1.1 over TLS")
        XCTAssertNotEqual(e, Endpoint(host: "127.0.0.1", port: 8443, protocol: .h2c))
        let yaml = """
        services:
        - name: secure
          namespace: ns
          revisions:
            secure-predictor-default-00001: ["h2://127.0.0.1:8443", "h2://[::1]:8443", "https://127.0.0.1:9443"]
          traffic:
          - {revisionName: secure-predictor-default-00001, percent: 100}
        """
        let config = try GatewayConfig.parse(yaml: yaml, file: "t.yaml")
        let endpoints = config.services[0].revisions[0].endpoints
        XCTAssertEqual(endpoints.map(\.description), ["h2://127.0.0.1:8443", "h2://[::1]:8443", "https://127.0.0.1:9443"])
        let table = try config.routeTable()
        let revision = table.services[0].revisions[0]
        XCTAssertEqual(revision.grpcEndpointIndices.map { table.endpoints[$0].description }, ["h2://127.0.0.1:8443", "h2://[::1]:8443"])
        XCTAssertEqual(revision.endpointIndices.map { table.endpoints[$0].description }, ["https://127.0.0.1:9443"])
    }
}
