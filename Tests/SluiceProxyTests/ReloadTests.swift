// Integration: handing new route tables to running workers loses no request and drops no connection.
import Foundation
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

final class ReloadTests: XCTestCase {
    func testPublishingUnderLoadLosesNoRequest() throws {
        let f = try GatewayFixture(split: 10)
        let ports = (f.backend1.port, f.backend2.port)
        let failures = Atomic<Int>(0)
        let served = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            DispatchQueue.global().async {
                defer { group.leave() }
                guard let c = try? TestClient(port: f.port) else { failures.add(1, ordering: .relaxed); return }
                var count = 0
                while !stop.load(ordering: .relaxed) && count < 3000 {
                    let r = try? c.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, body: irisBody)
                    if r?.status == 200 { served.add(1, ordering: .relaxed) } else { failures.add(1, ordering: .relaxed) }
                    count += 1
                }
            }
        }
        // Swap between 10 % and 100 % canary many times while the clients keep their keep-alive connections busy.
        for i in 0..<40 {
            f.gateway.publish(routes: try GatewayFixture.table(split: i % 2 == 0 ? 100 : 10, ports: ports))
            usleep(20_000)  // pacing only: the checks below do not depend on it
        }
        stop.store(true, ordering: .relaxed)
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
        XCTAssertGreaterThan(served.load(ordering: .relaxed), 100)

        // The last hand-over wins over all the earlier ones: a table that sends 100 % to revision 2 and adds a
        // marker service. Hand-over is asynchronous, so each connection first waits (bounded) for the marker host
        // to route; from then on its worker holds the last table, and every request on the service host must reach
        // revision 2 (under the 10 % table 20 of 20 would happen with probability 10^-20).
        f.gateway.publish(routes: try GatewayFixture.table(split: 100, ports: ports, extra: [Self.marker(port: ports.1)]))
        for _ in 0..<4 {  // four connections, so both workers are likely asked
            let c = try f.client()
            XCTAssertTrue(try Self.waitForMarker(c), "the last table reached the worker")
            for _ in 0..<20 {
                let r = try c.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, body: irisBody)
                XCTAssertEqual(r.status, 200)
                XCTAssertEqual(r.header("Sluice-Revision"), rev2, "the 100 % canary table is in force")
            }
        }
    }

    static let markerHost = "marker.kserve-test.example.com"

    /// A one-revision service that only the last table has.
    static func marker(port: UInt16) -> ServiceSpec {
        let revision = "marker-predictor-default-00001"
        return ServiceSpec(name: "marker", namespace: "kserve-test",
                           revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: port)])],
                           traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
    }

    /// True once the marker host routes on this connection's worker (404 before); false after 10 s.
    static func waitForMarker(_ c: TestClient) throws -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try c.request("GET", "/v2/health/ready", host: markerHost).status == 200 { return true }
            usleep(1_000)
        }
        return false
    }
}

final class ShutdownTests: XCTestCase {
    func testShutdownFinishesInFlightRequestsAndClosesIdleConnections() throws {
        let atPod = DispatchSemaphore(value: 0)
        let f = try GatewayFixture(split: 0, handler1: { _ in
            atPod.signal()
            usleep(300_000)  // a request that is still at the pod when the drain starts
            return .json(status: 200, #"{"slow": true}"#)
        })
        let idle = try f.client()
        XCTAssertEqual(try idle.request("GET", "/v2/health/ready", host: "latest-sklearn-iris-predictor-default.kserve-test.example.com").status, 200)
        let busy = try f.client()
        try busy.send("GET /v1/models/sklearn-iris HTTP/1.1\r\nHost: \(serviceHost)\r\n\r\n")
        XCTAssertEqual(atPod.wait(timeout: .now() + 5), .success, "the pod has the request")
        let started = Date()
        f.gateway.shutdown(graceMs: 5_000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "shutdown does not wait for the grace period when nothing is left")
        let r = try busy.readResponse()
        XCTAssertEqual(r.status, 200, "the in-flight request finished")
        XCTAssertEqual(r.header("Connection"), "close")
        XCTAssertTrue(try idle.isClosedByPeer(), "idle keep-alive connections are closed")
        XCTAssertThrowsError(try TestClient(port: f.port), "no longer accepting")
    }
}
