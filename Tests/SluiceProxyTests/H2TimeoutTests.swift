// Integration: HTTP/2 connection timeouts (idle, request headers) and early responses to unfinished requests.
import Foundation
import SluiceProxy
import SluiceRouting
import XCTest

final class H2TimeoutTests: XCTestCase {
    func testIdleConnectionGetsGoAwayAndCloses() throws {
        let f = try GatewayFixture(split: 0, workers: 1, settings: { $0.timeouts.keepAliveIdleMs = 300 })
        let c = try H2TestClient(port: f.port)
        let id = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true }
        try c.run(seconds: 5) { c.isEOF }
        XCTAssertEqual(c.goAwayFrames.last?.errorCode, 0)
        XCTAssertEqual(c.goAwayFrames.last?.lastStreamId, id)
    }

    func testHeaderBlockThatNeverEndsTimesOut() throws {
        let f = try GatewayFixture(split: 0, workers: 1, settings: { $0.timeouts.requestHeaderMs = 300 })
        let raw = try TestClient(port: f.port)
        // HEADERS without END_HEADERS, then silence: slowloris over HTTP/2.
        try raw.send(h2Preface + h2Frame(type: 4, flags: 0, stream: 0, []) + h2Frame(type: 1, flags: 0x1, stream: 1, hpackGet(authority: serviceHost)))
        let got = raw.readUntilClosed(seconds: 5)
        XCTAssertTrue(got.closed)
        XCTAssertEqual(goAwayCodes(got.bytes).last, 1, "GOAWAY PROTOCOL_ERROR")
    }

    func testEarlyErrorResponseArrivesWholeBeforeTheStreamIsReset() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        // 1 MiB upload to a host nobody serves: the 404 comes at once, the rest of the body is not wanted.
        let id = c.request("POST", "/v1/models/x:predict", authority: "nope.example.com", body: [UInt8](repeating: 1, count: 1 << 20))
        try c.run { c.responses[id]?.isClosed == true }
        XCTAssertEqual(c.responses[id]?.status, 404)
        XCTAssertEqual(c.responses[id]?.text, #"{"error": "no InferenceService serves this host"}"#)
        XCTAssertEqual(c.responses[id]?.errorCode, 0, "RST_STREAM(NO_ERROR) after the response (RFC 9113 §8.1)")
        XCTAssertLessThan(c.uploaded(id), 1 << 20)
        // The connection goes on.
        let next = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[next]?.isClosed == true }
        XCTAssertEqual(c.responses[next]?.status, 200)
    }

    func testUploadsToADeadPodGet502AndTheConnectionGoesOn() throws {
        // A pod that refuses connections: each upload gets the HTTP/1.1 gateway error, as an h2 response.
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (deadPort, deadPort)))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        // 40 × 64 KiB is more than the 1 MiB connection window: refused bodies must not keep any of it.
        for _ in 0..<40 {
            let id = c.request("POST", "/", authority: serviceHost, body: [UInt8](repeating: 2, count: 65_535))
            try c.run { c.responses[id]?.isClosed == true }
            XCTAssertEqual(c.responses[id]?.status, 502)
            XCTAssertEqual(c.responses[id]?.text, #"{"error": "upstream connect failed"}"#)
        }
    }
}
