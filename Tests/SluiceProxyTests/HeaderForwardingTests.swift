// Integration: what the pod sees — hop-by-hop headers gone, forwarded and Knative/KServe headers added.
import SluiceBlockingHTTP
import Foundation
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest

final class HeaderForwardingTests: XCTestCase {
    /// A pod that answers with the request head it received, one header per line.
    static let echo: @Sendable (BlockingRequest) -> BlockingResponse = { request in
        let lines = ["\(request.method) \(request.target)"] + request.headers.map { "\($0.name.lowercased()): \($0.value)" }
        return BlockingResponse(status: 200, headers: [("Content-Type", "text/plain"), ("Connection", "keep-alive"), ("X-Hop", "secret")], body: Array(lines.joined(separator: "\n").utf8))
    }

    func testHopByHopHeadersAreDroppedAndProxyHeadersAdded() throws {
        let f = try GatewayFixture(split: 0, handler1: Self.echo, handler2: Self.echo)
        let c = try f.client()
        let r = try c.request("POST", "/v1/models/sklearn-iris:predict?x=1", host: "prev-sklearn-iris-predictor-default.kserve-test.example.com", headers: [
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "x"),
            ("TE", "trailers"), ("Upgrade", "h2c"), ("X-Forwarded-For", "10.0.0.1"), ("X_Underscore", "1"),
            ("Knative-Serving-Revision", "spoofed"), ("traceparent", "00-abc-def-01"),
        ], body: irisBody)
        XCTAssertEqual(r.status, 200)
        let seen = r.text.split(separator: "\n").map(String.init)
        XCTAssertEqual(seen.first, "POST /v1/models/sklearn-iris:predict?x=1", "method and target byte for byte")
        let names = Set(seen.dropFirst().map { String($0.split(separator: ":")[0]) })
        for dropped in ["connection", "x-hop", "keep-alive", "proxy-connection", "te", "upgrade", "x_underscore"] {
            XCTAssertFalse(names.contains(dropped), dropped)
        }
        XCTAssertTrue(seen.contains("host: prev-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertTrue(seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1"), seen.joined(separator: "|"))
        XCTAssertTrue(seen.contains("x-forwarded-proto: http"))
        XCTAssertTrue(seen.contains("knative-serving-revision: \(rev1)"))
        XCTAssertFalse(seen.contains("knative-serving-revision: spoofed"))
        XCTAssertTrue(seen.contains("knative-serving-namespace: kserve-test"))
        XCTAssertTrue(seen.contains("kserve-isvc-name: sklearn-iris"))
        XCTAssertTrue(seen.contains("kserve-isvc-namespace: kserve-test"))
        XCTAssertTrue(seen.contains("knative-serving-tag: prev"))
        XCTAssertFalse(seen.contains("traceparent: 00-abc-def-01"), "an invalid traceparent is replaced (TracePropagationTests)")
        XCTAssertEqual(seen.filter { $0.hasPrefix("traceparent: ") }.count, 1)
        XCTAssertTrue(seen.contains("content-length: \(irisBody.utf8.count)"))
        let id = try XCTUnwrap(seen.first { $0.hasPrefix("x-request-id: ") }?.dropFirst(14))
        XCTAssertEqual(id.count, 36, "a UUID is generated when the client sent none")
        XCTAssertEqual(r.header("X-Request-Id"), String(id), "and returned to the client")
        XCTAssertEqual(r.header("Sluice-Revision"), rev1)
    }

    func testResponseHopByHopHeadersAreDropped() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        backend.start { conn in
            while (try? conn.readRequestHead()) != nil {
                try? conn.send("HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
            }
        }
        let gateway = try GatewayFixture.gateway(to: backend.port, name: "raw")
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        for _ in 0..<3 {
            let r = try c.request("GET", "/", host: "raw.ns.example.com")
            XCTAssertEqual(r.text, "ok")
            XCTAssertNil(r.header("X-Hop"), "a header the pod's Connection names is hop-by-hop")
            XCTAssertNil(r.header("Keep-Alive"))
            XCTAssertNil(r.header("Connection"))
            XCTAssertEqual(r.header("X-Kept"), "yes")
        }
    }

    func testClientRequestIdIsKeptAndHTTP10KeepAliveWorks() throws {
        let f = try GatewayFixture(split: 0, handler1: Self.echo, handler2: Self.echo)
        let c = try f.client()
        try c.send("GET /a HTTP/1.0\r\nHost: \(serviceHost)\r\nConnection: keep-alive\r\nX-Request-Id: my-id-1\r\n\r\n")
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.text.contains("x-request-id: my-id-1"))
        XCTAssertEqual(r.header("Connection"), "keep-alive")
        try c.send("GET /b HTTP/1.0\r\nHost: \(serviceHost)\r\n\r\n")
        let second = try c.readResponse()
        XCTAssertEqual(second.status, 200)
        XCTAssertTrue(try c.isClosedByPeer(), "HTTP/1.0 without keep-alive closes after the response")
    }

    func testExpectContinueIsAnsweredBeforeTheBody() throws {
        let f = try GatewayFixture(split: 0)
        let c = try f.client()
        try c.send("POST /v1/models/sklearn-iris:predict HTTP/1.1\r\nHost: \(serviceHost)\r\nExpect: 100-continue\r\nContent-Length: \(irisBody.utf8.count)\r\n\r\n")
        XCTAssertEqual(try c.line(), "HTTP/1.1 100 Continue")
        XCTAssertEqual(try c.line(), "")
        try c.send(irisBody)
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text.replacingOccurrences(of: " ", with: ""), #"{"predictions":[1,1]}"#)
    }
}
