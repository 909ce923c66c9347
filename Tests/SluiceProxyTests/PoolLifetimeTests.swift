// Integration: an upstream pool dropped from the route table (promote, delete, endpoint change) lives until its last
// connection has closed, so calls and requests still on its connections finish or cancel safely, and then it goes.
// Written to break under AddressSanitizer when a connection outlives its pool.
import Foundation
import SluiceBlockingHTTP
import SluiceDemo
@testable import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class PoolLifetimeTests: XCTestCase {
    /// Waits (bounded) until `condition` holds; false when it did not within `seconds`.
    fileprivate func eventually(seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(5_000)
        }
        return try condition()
    }

    fileprivate func echo(_ c: H2TestClient, authority: String = serviceHost) throws -> H2TestResponse {
        let id = c.request("POST", "/inference.GRPCInferenceService/echo", authority: authority, headers: grpcHeaders, body: [0, 0, 0, 0, 1, 7])
        try c.run { c.responses[id]?.isClosed == true }
        return c.responses[id]!
    }

    /// Calls until one is answered by the pod named `name`: the worker has installed the table that routes there.
    fileprivate func waitForPod(_ c: H2TestClient, _ name: String, authority: String = serviceHost) throws {
        let deadline = Date().addingTimeInterval(10)
        while try echo(c, authority: authority).header("x-backend") != name {
            if Date() > deadline { throw H2TestClientError.timeout("the new route table was not installed") }
        }
    }

    func testACallInFlightToARetiredPodIsCancelledAndTheGatewayGoesOn() throws {
        let old = H2EchoBackend(name: "old"), new = H2EchoBackend(name: "new")
        defer { old.stop(); new.stop() }
        let gateway = try grpcGateway(pods: (old.port, old.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let hanging = c.request("POST", "/inference.GRPCInferenceService/hang", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
        try c.run { old.requests.count == 1 }
        // The endpoint leaves the route table while its connection carries the call.
        gateway.publish(routes: try grpcRoutes(pods: (new.port, new.port)))
        try waitForPod(c, "new")
        XCTAssertEqual(gateway.retiredPoolCount, 1, "the retired pool is kept while a connection of it is open")
        c.reset(hanging)
        try c.run { old.resets == 1 }
        let r = try echo(c)
        XCTAssertEqual(r.header("x-backend"), "new")
        XCTAssertEqual(r.header("grpc-status"), "0")
        XCTAssertEqual(r.body, [0, 0, 0, 0, 1, 7])
        XCTAssertTrue(eventually { gateway.retiredPoolCount == 0 }, "released once its last connection closed")
    }

    /// A gRPC call to a pod whose accept queue is full (so the gateway's connect stays pending), the pod's pool
    /// retired by a new route table, and the call cancelled by the client once the gateway routes to the new pod.
    private final class CancelledWhileConnecting {
        let before = H2EchoBackend(name: "before"), new = H2EchoBackend(name: "new")
        let pod = FullAcceptQueue()
        let gateway: Gateway
        let client: H2TestClient

        init(test: PoolLifetimeTests, connectTimeoutMs: Int) throws {
            // Revision 1 (the call) on the full pod; revision 2 (the tag host the checks use) on a pod that answers,
            // so that no check waits on the pending connect.
            gateway = try grpcGateway(pods: (pod.port, before.port)) { $0.timeouts.upstreamConnectMs = connectTimeoutMs }
            client = try H2TestClient(port: gateway.port)
            let c = client, podPort = pod.port
            let call = c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
            XCTAssertTrue(try test.eventually { try c.exchangeOnce(waitMs: 5); return synSent(toPort: podPort) }, "the gateway is connecting")
            gateway.publish(routes: try grpcRoutes(pods: (new.port, new.port)))
            try test.waitForPod(c, "new", authority: latestHost)
            XCTAssertEqual(gateway.retiredPoolCount, 1)
            c.reset(call)
            XCTAssertEqual(try test.echo(c, authority: latestHost).header("x-backend"), "new")  // the gateway has read the reset
        }

        deinit {
            gateway.shutdown(graceMs: 1000)
            before.stop()
            new.stop()
        }
    }

    /// The call is cancelled while its connection to the retired pod is still connecting; the connect completes
    /// after that, when nothing but the connection itself refers to the pool.
    func testACallCancelledWhileItsRetiredPodIsStillConnectingLeavesNothingBehind() throws {
        let f = try CancelledWhileConnecting(test: self, connectTimeoutMs: 60_000)
        defer { withExtendedLifetime(f) {} }  // its pods and gateway stay up until the end
        let (gateway, c, pod) = (f.gateway, f.client, f.pod)
        // Room in the accept queue: the gateway's connect completes (at its SYN retransmit) with no call left on it.
        XCTAssertTrue(pod.makeRoom())
        let upstream = accept(pod.fd, nil, nil)
        XCTAssertGreaterThanOrEqual(upstream, 0)
        defer { close(upstream) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(upstream, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var n = 0
        repeat { n = buffer.withUnsafeMutableBytes { recv(upstream, $0.baseAddress, $0.count, 0) } } while n > 0
        XCTAssertEqual(n, 0, "the gateway closed the retired pod's connection once it had no call")
        XCTAssertTrue(eventually { gateway.retiredPoolCount == 0 })
        XCTAssertEqual(try echo(c).header("grpc-status"), "0", "the gateway goes on")
    }

    func testAConnectThatNeverCompletesDoesNotKeepARetiredPool() throws {
        let f = try CancelledWhileConnecting(test: self, connectTimeoutMs: 1_000)
        defer { withExtendedLifetime(f) {} }  // the listener stays, so the connect is never refused
        let (gateway, podPort) = (f.gateway, f.pod.port)
        // The pod never takes the connection (the kernel would retry the SYN for minutes): past the connect
        // timeout the gateway gives the abandoned connection up, and the retired pool with it.
        XCTAssertTrue(eventually(seconds: 5) { gateway.retiredPoolCount == 0 })
        XCTAssertFalse(synSent(toPort: podPort), "the connect was abandoned")
    }

    func testAnHTTP11ResponseFromARemovedEndpointArrivesWhole() throws {
        let atPod = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let big = String(repeating: "x", count: 300_000)
        let normal = predictorHandler(modelName: "sklearn-iris", version: .v1, revision: rev1)
        let f = try GatewayFixture(split: 0, workers: 1, handler1: { request in
            guard request.target == "/slow" else { return normal(request) }
            atPod.signal()
            _ = release.wait(timeout: .now() + 20)
            return .json(status: 200, #"{"big": "\#(big)"}"#)
        })
        let busy = try f.client()
        try busy.send("GET /slow HTTP/1.1\r\nHost: \(serviceHost)\r\n\r\n")
        XCTAssertEqual(atPod.wait(timeout: .now() + 5), .success, "the pod has the request")
        // Revision 1 moves to the other pod: the first pod's endpoint (and pool) leave the table.
        f.gateway.publish(routes: try GatewayFixture.table(split: 0, ports: (f.backend2.port, f.backend2.port)))
        let probe = try f.client()
        XCTAssertTrue(try eventually {
            try probe.request("GET", "/v2/health/ready", host: serviceHost).header("X-Demo-Revision") == rev2
        }, "the new table is installed")
        XCTAssertEqual(f.gateway.retiredPoolCount, 1, "kept while its connection carries the request")
        release.signal()
        let r = try busy.readResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.text, #"{"big": "\#(big)"}"#, "the whole response")
        XCTAssertTrue(eventually { f.gateway.retiredPoolCount == 0 }, "released once its last connection closed")
        XCTAssertEqual(try busy.request("GET", "/v2/health/ready", host: serviceHost).header("X-Demo-Revision"), rev2)
    }

    func testARetiredPoolWithOnlyIdleConnectionsIsReleasedAtOnce() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try f.client()
        // Three requests leave an idle keep-alive connection in revision 1's pool.
        for _ in 0..<3 { XCTAssertEqual(try c.request("GET", "/v2/health/ready", host: serviceHost).header("X-Demo-Revision"), rev1) }
        f.gateway.publish(routes: try GatewayFixture.table(split: 0, ports: (f.backend2.port, f.backend2.port)))
        XCTAssertTrue(try eventually { try c.request("GET", "/v2/health/ready", host: serviceHost).header("X-Demo-Revision") == rev2 })
        XCTAssertTrue(eventually { f.gateway.retiredPoolCount == 0 }, "its idle connections were closed, so nothing keeps it")
    }
}

/// A listening socket whose accept queue is full (backlog 0, one connection waiting): a connect to it stays
/// pending (its SYN is dropped) until the listener accepts.
private final class FullAcceptQueue {
    let fd: Int32
    let port: UInt16
    /// The client side of the waiting connection.
    private let filler: Int32

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        precondition(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0)
        precondition(listen(fd, 0) == 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, len) } } == 0)
        self.fd = fd
        self.filler = filler
        port = UInt16(bigEndian: addr.sin_port)
    }

    /// Makes room: accepts (and closes) the waiting connection, so the next SYN is taken.
    func makeRoom() -> Bool {
        let queued = accept(fd, nil, nil)
        guard queued >= 0 else { return false }
        close(queued)
        return true
    }

    deinit {
        close(filler)
        close(fd)
    }
}

private let latestHost = "latest-sklearn-iris-predictor-default.kserve-test.example.com"

/// A socket of this host in SYN_SENT toward 127.0.0.1:`port` (from /proc/net/tcp).
private func synSent(toPort port: UInt16) -> Bool {
    // Read to the end: procfs reports size 0, and a one-read file load stops after the first page.
    guard let data = FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() else { return false }
    let table = String(decoding: data, as: UTF8.self)
    let remote = String(format: "0100007F:%04X", port)
    return table.split(separator: "\n").contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 3 && fields[2] == remote && fields[3] == "02"
    }
}
