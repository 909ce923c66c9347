// Integration: many HTTP/2 streams on one connection, routed independently to both revisions and their pods.
import Foundation
import SluiceProxy
import XCTest

final class H2MultiplexingTests: XCTestCase {
    func testManyConcurrentStreamsReachBothRevisions() throws {
        let f = try GatewayFixture(split: 50, workers: 1)
        let c = try H2TestClient(port: f.port)
        let body = Array(irisBody.utf8)
        var expected: [Int32: String?] = [:]
        // 300 streams at once (the server allows 100 concurrently; nghttp2 queues the rest): a third by each tag
        // host, a third on the default host (split 50/50).
        for i in 0..<300 {
            switch i % 3 {
            case 0:
                expected[c.request("POST", "/v1/models/sklearn-iris:predict", authority: "latest-sklearn-iris-predictor-default.kserve-test.example.com", body: body)] = rev2
            case 1:
                expected[c.request("GET", "/v1/models/sklearn-iris", authority: "prev-sklearn-iris-predictor-default.kserve-test.example.com")] = rev1
            default:
                expected[c.request("POST", "/v1/models/sklearn-iris:predict", authority: serviceHost, body: body)] = .some(nil)
            }
        }
        try c.run(seconds: 20) { expected.keys.allSatisfy { c.responses[$0]?.isClosed == true } }
        var split: [String: Int] = [:]
        for (id, want) in expected {
            let r = c.responses[id]!
            XCTAssertEqual(r.status, 200, "stream \(id): \(r.text)")
            let revision = r.header("sluice-revision")
            XCTAssertEqual(revision, r.header("x-demo-revision"), "the pod that answered is the revision named")
            if let want { XCTAssertEqual(revision, want) } else { split[revision ?? "none", default: 0] += 1 }
            XCTAssertNotNil(r.header("x-request-id"))
        }
        // Binomial(100, 0.5): both revisions get default traffic.
        XCTAssertGreaterThan(split[rev1] ?? 0, 20)
        XCTAssertGreaterThan(split[rev2] ?? 0, 20)
        XCTAssertNil(c.goAway)
    }

    func testAuthorityAndHostMustAgreeAndUnknownHostIsJSON404() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        let mismatch = c.request("GET", "/v2/health/ready", authority: serviceHost, headers: [("host", "other.example.com")])
        let unknown = c.request("GET", "/", authority: "nope.example.com")
        let fine = c.request("GET", "/v2/health/ready", authority: serviceHost, headers: [("host", serviceHost)])
        try c.run { [mismatch, unknown, fine].allSatisfy { c.responses[$0]?.isClosed == true } }
        XCTAssertEqual(c.responses[mismatch]?.status, 400)
        XCTAssertEqual(c.responses[unknown]?.status, 404)
        XCTAssertEqual(c.responses[unknown]?.text, #"{"error": "no InferenceService serves this host"}"#)
        XCTAssertEqual(c.responses[unknown]?.header("content-type"), "application/json")
        XCTAssertEqual(c.responses[fine]?.status, 200)
    }

    func testConnectionIsRenewedAfterAThousandStreams() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        var ids: [Int32] = []
        for _ in 0..<1001 { ids.append(c.request("GET", "/v2/health/ready", authority: serviceHost)) }
        try c.run(seconds: 30) { c.isEOF || ids.allSatisfy { c.responses[$0]?.isClosed == true } }
        try c.run(seconds: 5) { c.goAway != nil }
        XCTAssertEqual(c.goAway?.errorCode, 0, "graceful")
        XCTAssertEqual(c.goAway?.lastStreamId, ids[999], "the 1000th stream is the last one served")
        XCTAssertEqual(ids[0..<1000].filter { c.responses[$0]?.status == 200 }.count, 1000)
        XCTAssertNotEqual(c.responses[ids[1000]]?.status, 200, "stream 1001 is refused for a retry elsewhere")
    }

    func testShutdownSendsGracefulGoAway() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        let id = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true }
        let done = expectation(description: "shutdown returned")
        Thread.detachNewThread {
            f.gateway.shutdown(graceMs: 5_000)
            done.fulfill()
        }
        try c.run(seconds: 5) { c.isEOF }
        // RFC 9113 §6.8: first GOAWAY with 2^31-1, then (a round trip later) the last stream really processed.
        let frames = c.goAwayFrames
        XCTAssertEqual(frames.map(\.lastStreamId), [Int32.max, id])
        XCTAssertEqual(frames.map(\.errorCode), [0, 0])
        c.closeWrite()  // the gateway's lingering close ends at our FIN
        wait(for: [done], timeout: 10)
    }
}
