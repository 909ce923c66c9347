// Integration: the SIGTERM drain — /readyz answers 503 the moment it starts, the listeners close, in-flight
// requests get `shutdownTimeout` (30 s by default, Kubernetes' grace period) to finish, and what still runs then is cut.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceProxy
import XCTest

/// A pod that holds each request until the test releases it.
final class HeldPod: Sendable {
    let server: BlockingServer
    let arrived = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)

    init() throws {
        let (arrived, release) = (self.arrived, self.release)
        server = try BlockingServer(port: 0) { _ in
            arrived.signal()
            // Bounded, so a failing test cannot leave the thread behind.
            _ = release.wait(timeout: .now() + 30)
            return .json(status: 200, #"{"predictions": [1]}"#)
        }
        server.start()
    }

    func stop() {
        release.signal()
        server.stop()
    }
}

final class DrainTests: XCTestCase {
    static let request = "POST /v1/models/big:predict HTTP/1.1\r\nHost: big.ns.example.com\r\nContent-Length: 2\r\n\r\n{}"
    static let readyz = BlockingRequest(method: "GET", target: "/readyz")

    /// Polls `condition` every 10 ms until it holds or `seconds` pass.
    func eventually(_ seconds: TimeInterval, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)  // polling observable state, bounded by the deadline
        }
        return condition()
    }

    func admin(for gateway: Gateway) throws -> AdminAPI {
        AdminAPI(plane: try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }, token: nil, gateway: gateway)
    }

    /// The old drain was capped at 10 s: a pod answering 10.5 s into the drain got its answer to nobody. With the
    /// default shutdownTimeout (30 s) it reaches the client, and readiness is false all the while.
    func testTheDefaultDrainOutlastsTenSecondsWithReadyzFalseMeanwhile() throws {
        let pod = try HeldPod()
        defer { pod.stop() }
        let gateway = try GatewayFixture.gateway(to: pod.server.port)  // default settings, as the file's default
        let admin = try admin(for: gateway)
        XCTAssertEqual(admin.handle(Self.readyz).status, 200)
        let client = try TestClient(port: gateway.port, timeoutSeconds: 20)
        try client.send(Self.request)
        XCTAssertEqual(pod.arrived.wait(timeout: .now() + 5), .success, "the pod has the request")

        let started = Date()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            gateway.shutdown()
            drained.signal()
        }
        XCTAssertTrue(eventually(2) { admin.handle(Self.readyz).status == 503 }, "readiness turns false when the drain starts")
        let notReady = JSONValue.parse(admin.handle(Self.readyz).body)
        XCTAssertEqual(notReady?["status"]?.stringValue, "draining")
        XCTAssertEqual(notReady?["reason"]?.stringValue, "the gateway is shutting down: in-flight requests are finishing; send new requests elsewhere")
        XCTAssertEqual(admin.handle(BlockingRequest(method: "GET", target: "/healthz")).status, 200, "liveness stays true")
        XCTAssertTrue(eventually(2) { (try? TestClient(port: gateway.port)) == nil }, "the listener stops accepting")

        // The pod answers 10.5 s into the drain: the scenario, not a synchronisation.
        Thread.sleep(until: started.addingTimeInterval(10.5))
        XCTAssertEqual(drained.wait(timeout: .now()), .timedOut, "the drain still waits for the request")
        XCTAssertEqual(admin.handle(Self.readyz).status, 503)
        pod.release.signal()
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200, "the in-flight request finished")
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertEqual(drained.wait(timeout: .now() + 5), .success, "the drain ends once nothing is in flight")
    }

    /// A keep-alive client whose next request comes 250 ms into the drain (its turnaround, a round trip) has it
    /// answered, with Connection: close; the drain used to close every idle connection at its first sweep, so the
    /// request met our FIN — what a takeover under keep-alive load lost.
    func testARequestOnAConnectionIdleForLessThanTheGraceIsAnsweredDuringTheDrain() throws {
        let pod = try HeldPod()
        defer { pod.stop() }
        pod.release.signal()
        let gateway = try GatewayFixture.gateway(to: pod.server.port) { $0.shutdownTimeoutMs = 5_000 }
        let client = try TestClient(port: gateway.port, timeoutSeconds: 5)
        try client.send(Self.request)
        XCTAssertEqual(try client.readResponse().status, 200)

        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            gateway.shutdown()
            drained.signal()
        }
        XCTAssertTrue(eventually(2) { (try? TestClient(port: gateway.port)) == nil }, "the drain has begun: the listener stops accepting")
        usleep(250_000)  // the scenario: the client's next request, 250 ms into the drain
        pod.release.signal()
        try client.send(Self.request)
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200, "the request on the idle connection is served")
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertEqual(drained.wait(timeout: .now() + 5), .success)
    }

    /// A connection idle past the grace is still closed by the drain at once, not held until shutdownTimeout.
    func testAConnectionIdleLongerThanTheGraceClosesWhenTheDrainStarts() throws {
        let pod = try HeldPod()
        defer { pod.stop() }
        pod.release.signal()
        let gateway = try GatewayFixture.gateway(to: pod.server.port) { $0.shutdownTimeoutMs = 10_000 }
        let client = try TestClient(port: gateway.port, timeoutSeconds: 5)
        try client.send(Self.request)
        XCTAssertEqual(try client.readResponse().status, 200)
        usleep(600_000)  // the scenario: idle for longer than the grace (500 ms) when the drain starts
        let started = Date()
        gateway.shutdown()
        XCTAssertLessThan(Date().timeIntervalSince(started), 1, "the drain does not wait for the idle connection")
        XCTAssertTrue(try client.isClosedByPeer())
    }

    /// A request still running at shutdownTimeout is cut there: shutdown returns and the client gets no answer.
    func testARequestLongerThanTheShutdownTimeoutIsCutAtIt() throws {
        let pod = try HeldPod()
        defer { pod.stop() }
        let gateway = try GatewayFixture.gateway(to: pod.server.port) { $0.shutdownTimeoutMs = 1_000 }
        let client = try TestClient(port: gateway.port, timeoutSeconds: 3)
        try client.send(Self.request)
        XCTAssertEqual(pod.arrived.wait(timeout: .now() + 5), .success, "the pod has the request")

        let started = Date()
        gateway.shutdown()
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.9, "the request had its shutdownTimeout")
        XCTAssertLessThan(elapsed, 2.5, "and not more")
        // Cut means closed: the client sees the end of its connection at once, not its own read timeout (the
        // gateway used to stop its loop with the descriptor still open).
        let cut = Date()
        XCTAssertThrowsError(try client.readResponse(), "the cut request gets no response") { error in
            if case TestClientError.timeout = error { XCTFail("the connection was left open after the drain deadline") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(cut), 1, "the connection was closed at the drain deadline")
    }
}
