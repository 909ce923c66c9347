// Integration: a service with a sticky key keeps each client key on one revision through a real gateway, over
// HTTP/1.1 and HTTP/2 alike; requests without the key, and tagged requests, route as before.
import SluiceProxy
import SluiceRouting
import XCTest

final class StickyRoutingTests: XCTestCase {
    /// The revision the gateway's table puts `key` on: the pick with the key's hash as its draw.
    func expectedRevision(_ key: String, _ f: GatewayFixture) throws -> String {
        let service = f.gateway.routes.services[0]
        let reader = try XCTUnwrap(service.sticky)
        var key = key
        let hash = key.withUTF8 { StickyKey.hash(UnsafeRawBufferPointer($0), seed: reader.seed) }
        return service.revisions[try XCTUnwrap(service.pick(hash))].name
    }

    func testEachKeyAlwaysReachesTheSameRevisionAndKeylessRequestsStillSplit() throws {
        let f = try GatewayFixture(split: 10, workers: 2, stickyKey: .header("x-user-id"))
        // Two client connections, likely on both workers (SO_REUSEPORT): the key, not the worker, decides.
        let clients = [try f.client(), try f.client()]
        var onCanary = 0
        for n in 0..<200 {
            let key = "user-\(n)"
            let expected = try expectedRevision(key, f)
            if expected == rev2 { onCanary += 1 }
            for attempt in 0..<4 {
                let r = try clients[attempt % 2].request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost,
                                                         headers: [("X-User-Id", key)], body: irisBody)
                XCTAssertEqual(r.status, 200)
                XCTAssertEqual(r.header("Sluice-Revision"), expected, "\(key), request \(attempt)")
            }
        }
        // 200 keys at 10 %: both revisions hold some (none on the canary: 0.9^200 ≈ 7e-10).
        XCTAssertGreaterThan(onCanary, 0)
        XCTAssertLessThan(onCanary, 200)

        // Without the key (or with an empty one) the weighted random pick: Binomial(1000, 0.1), 5σ ≈ 47.
        var toRev2 = 0
        for n in 0..<1_000 {
            let headers = n % 2 == 0 ? [] : [("X-User-Id", "")]
            let r = try clients[n % 2].request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, headers: headers, body: irisBody)
            XCTAssertEqual(r.status, 200)
            if r.header("Sluice-Revision") == rev2 { toRev2 += 1 }
        }
        XCTAssertGreaterThan(toRev2, 100 - 47)
        XCTAssertLessThan(toRev2, 100 + 47)
    }

    func testTagsWinOverTheKey() throws {
        let f = try GatewayFixture(split: 10, tagHeaderRouting: true, stickyKey: .header("x-user-id"))
        let c = try f.client()
        for n in 0..<20 {
            let key = "user-\(n)"
            let host = try c.request("GET", "/v2/health/ready", host: "latest-sklearn-iris-predictor-default.kserve-test.example.com",
                                     headers: [("X-User-Id", key)])
            XCTAssertEqual(host.header("Sluice-Revision"), rev2, "a tag host names its revision whatever the key")
            let header = try c.request("GET", "/v2/health/ready", host: serviceHost,
                                       headers: [("X-User-Id", key), ("Knative-Serving-Tag", "prev")])
            XCTAssertEqual(header.header("Sluice-Revision"), rev1, "so does the tag header")
        }
    }

    func testAnHTTP2RequestWithTheKeyLandsWhereTheHTTP1OneDid() throws {
        let f = try GatewayFixture(split: 10, stickyKey: .header("x-user-id"))
        let h1 = try f.client()
        let h2 = try H2TestClient(port: f.port)
        var seen: Set<String> = []
        for n in 0..<100 {
            let key = "user-\(n)"
            let over1 = try h1.request("GET", "/v2/health/ready", host: serviceHost, headers: [("X-User-Id", key)])
            let stream = h2.request("GET", "/v2/health/ready", authority: serviceHost, headers: [("x-user-id", key)])
            try h2.run { h2.responses[stream]?.isClosed == true }
            XCTAssertEqual(h2.responses[stream]?.status, 200)
            XCTAssertEqual(h2.responses[stream]?.header("sluice-revision"), over1.header("Sluice-Revision"), key)
            XCTAssertEqual(over1.header("Sluice-Revision"), try expectedRevision(key, f), key)
            seen.insert(over1.header("Sluice-Revision") ?? "")
        }
        XCTAssertEqual(seen, [rev1, rev2], "100 keys at 10 %: both revisions (none on the canary: 0.9^100 ≈ 3e-5)")
    }

    func testACookieKeyIsReadFromHTTP1AndSplitHTTP2CookieFields() throws {
        let f = try GatewayFixture(split: 10, stickyKey: .cookie("session"))
        let h1 = try f.client()
        let h2 = try H2TestClient(port: f.port)
        for n in 0..<60 {
            let key = "s\(n)"
            let expected = try expectedRevision(key, f)
            let over1 = try h1.request("GET", "/v2/health/ready", host: serviceHost,
                                       headers: [("Cookie", "xsession=other; theme=dark; session=\"\(key)\"")])
            XCTAssertEqual(over1.header("Sluice-Revision"), expected, key)
            // RFC 9113 §8.2.3: an h2 client may send each cookie as its own field.
            let stream = h2.request("GET", "/v2/health/ready", authority: serviceHost,
                                    headers: [("cookie", "theme=dark"), ("cookie", "session=\(key)"), ("cookie", "b=2")])
            try h2.run { h2.responses[stream]?.isClosed == true }
            XCTAssertEqual(h2.responses[stream]?.header("sluice-revision"), expected, key)
        }
    }
}
