// Integration: requests through a real gateway on loopback reach the revision their Host (or tag) names.
import Foundation
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest

final class RoutingThroughGatewayTests: XCTestCase {
    func testEveryHostFormReachesTheRightRevision() throws {
        let f = try GatewayFixture(split: 0)  // all default traffic to revision 1, revision 2 only by tag
        let c = try f.client()
        let defaults = ["sklearn-iris.kserve-test.example.com", "SKLEARN-IRIS.kserve-test.example.com:8080",
                        "sklearn-iris-predictor-default.kserve-test.example.com",
                        "sklearn-iris-predictor-default.kserve-test", "sklearn-iris-predictor-default.kserve-test.svc",
                        "sklearn-iris-predictor-default.kserve-test.svc.cluster.local"]
        for host in defaults {
            let r = try c.request("POST", "/v1/models/sklearn-iris:predict", host: host, body: irisBody)
            XCTAssertEqual(r.status, 200, host)
            XCTAssertEqual(r.header("Sluice-Revision"), rev1, host)
            XCTAssertEqual(r.header("X-Demo-Revision"), rev1, host)
        }
        let latest = try c.request("POST", "/v1/models/sklearn-iris:predict", host: "latest-sklearn-iris-predictor-default.kserve-test.example.com", body: irisBody)
        XCTAssertEqual(latest.header("X-Demo-Revision"), rev2, "a 0% revision stays reachable by its tag host")
        let prev = try c.request("GET", "/v1/models/sklearn-iris", host: "prev-sklearn-iris-predictor-default.kserve-test.example.com")
        XCTAssertEqual(prev.header("X-Demo-Revision"), rev1)
        XCTAssertTrue(prev.text.contains("\"ready\""), prev.text)
    }

    func testNinetyTenSplitHoldsAndTagsAreExact() throws {
        let f = try GatewayFixture(split: 10)
        let c = try f.client()
        let n = 2000
        var toRev2 = 0
        for _ in 0..<n {
            let r = try c.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, body: irisBody)
            XCTAssertEqual(r.status, 200)
            if r.header("Sluice-Revision") == rev2 { toRev2 += 1 }
        }
        // Binomial(2000, 0.1): mean 200, sigma ~13.4; 5 sigma either side.
        XCTAssertGreaterThan(toRev2, 133)
        XCTAssertLessThan(toRev2, 267)
        for _ in 0..<100 {
            let l = try c.request("GET", "/v2/health/ready", host: "latest-sklearn-iris-predictor-default.kserve-test.example.com")
            XCTAssertEqual(l.header("Sluice-Revision"), rev2)
            let p = try c.request("GET", "/v2/health/ready", host: "prev-sklearn-iris-predictor-default.kserve-test.example.com")
            XCTAssertEqual(p.header("Sluice-Revision"), rev1)
        }
    }

    func testTagHeaderRoutingOnTheDefaultHost() throws {
        let f = try GatewayFixture(split: 0, tagHeaderRouting: true)
        let c = try f.client()
        for _ in 0..<20 {
            let r = try c.request("GET", "/v2/health/ready", host: serviceHost, headers: [("Knative-Serving-Tag", "latest")])
            XCTAssertEqual(r.header("Sluice-Revision"), rev2)
            let u = try c.request("GET", "/v2/health/ready", host: serviceHost, headers: [("Knative-Serving-Tag", "nope")])
            XCTAssertEqual(u.header("Sluice-Revision"), rev1, "an unknown tag gets the default split")
        }
    }

    func testUpstreamConnectionsAreReused() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try f.client()
        for _ in 0..<200 {
            XCTAssertEqual(try c.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, body: irisBody).status, 200)
        }
        XCTAssertEqual(f.backend1.requestsServed, 200)
        XCTAssertEqual(f.backend1.connectionsAccepted, 1, "one keep-alive upstream connection serves every request")
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let f = try GatewayFixture(split: 0)
        let c = try f.client()
        let hosts = ["prev-sklearn-iris-predictor-default.kserve-test.example.com",
                     "latest-sklearn-iris-predictor-default.kserve-test.example.com",
                     "prev-sklearn-iris-predictor-default.kserve-test.example.com"]
        var burst = ""
        for (i, h) in hosts.enumerated() { burst += "GET /v2/health/live?i=\(i) HTTP/1.1\r\nHost: \(h)\r\n\r\n" }
        try c.send(burst)
        let revisions = try (0..<3).map { _ in try c.readResponse().header("Sluice-Revision") }
        XCTAssertEqual(revisions, [rev1, rev2, rev1])
    }
}
