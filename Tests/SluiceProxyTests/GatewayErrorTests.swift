// Integration: what the gateway answers itself — unknown host, no endpoint, dead pod, slow pod, bad requests.
import Foundation
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest

final class GatewayErrorTests: XCTestCase {
    func testUnknownHostIs404JSONAndTheConnectionStaysUsable() throws {
        let f = try GatewayFixture(split: 0)
        let c = try f.client()
        let r = try c.request("GET", "/v1/models/x", host: "nobody.example.com")
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.header("Content-Type"), "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: String]
        XCTAssertNotNil(json?["error"])
        XCTAssertEqual(try c.request("GET", "/v2/health/live", host: serviceHost).status, 200)
    }

    func testRevisionWithoutEndpointsIs503AndDeadPodIs502() throws {
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        var s = ProxySettings()
        s.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        s.workers = 1
        let services = [
            ServiceSpec(name: "empty", namespace: "ns", revisions: [RevisionSpec(name: "empty-predictor-default-00001", endpoints: [])],
                        traffic: [TrafficTargetSpec(revisionName: "empty-predictor-default-00001", percent: 100, latestRevision: true)]),
            ServiceSpec(name: "dead", namespace: "ns", revisions: [RevisionSpec(name: "dead-predictor-default-00001", endpoints: [Endpoint(host: "127.0.0.1", port: deadPort)])],
                        traffic: [TrafficTargetSpec(revisionName: "dead-predictor-default-00001", percent: 100, latestRevision: true)]),
        ]
        let gateway = try Gateway(settings: s, routes: RouteTable(services: services, rules: HostRules()))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        XCTAssertEqual(try c.request("GET", "/", host: "empty.ns.example.com").status, 503)
        XCTAssertEqual(try c.request("GET", "/", host: "dead.ns.example.com").status, 502)
        XCTAssertEqual(try c.request("GET", "/", host: "empty.ns.example.com").status, 503, "the connection survives gateway errors")
    }

    func testSlowPodIs504AfterTheResponseTimeout() throws {
        let f = try GatewayFixture(split: 0, settings: { $0.timeouts.upstreamResponseMs = 300 }, handler1: { _ in
            usleep(1_500_000)
            return .json(status: 200, "{}")
        })
        let c = try f.client()
        let started = Date()
        let r = try c.request("GET", "/v1/models/sklearn-iris", host: serviceHost)
        XCTAssertEqual(r.status, 504)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.4, "answered at the timeout, not when the pod finally answered")
    }

    func testMalformedRequestsGet4xxAndOtherConnectionsAreUnaffected() throws {
        let f = try GatewayFixture(split: 0)
        let healthy = try f.client()
        let cases: [(String, Int)] = [
            ("GET / HTTP/1.1\r\nHost: \(serviceHost)\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : \(serviceHost)\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: \(serviceHost)\r\nX: a\r\n  folded\r\n\r\n", 400),
            ("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: \(serviceHost)\r\n\r\n", 414),
            ("GET / HTTP/1.1\r\nHost: \(serviceHost)\r\nX-Big: \(String(repeating: "b", count: 70_000))\r\n\r\n", 431),
            ("POST / HTTP/1.1\r\nHost: \(serviceHost)\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ]
        for (raw, status) in cases {
            let c = try f.client()
            try c.send(raw)
            let r = try c.readResponse()
            XCTAssertEqual(r.status, status, raw.prefix(60).description)
            XCTAssertEqual(r.header("Connection"), "close")
            XCTAssertTrue(try c.isClosedByPeer(), "the connection closes after a framing error")
            XCTAssertEqual(try healthy.request("GET", "/v2/health/live", host: serviceHost).status, 200)
        }
    }

    func testBodyOverTheLimitIs413() throws {
        let f = try GatewayFixture(split: 0, settings: { $0.limits.maxRequestBodyBytes = 1000 })
        let c = try f.client()
        let r = try c.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, body: String(repeating: "x", count: 2000))
        XCTAssertEqual(r.status, 413)
    }
}
