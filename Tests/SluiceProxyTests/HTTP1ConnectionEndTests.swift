// Integration: how an HTTP/1.1 connection ends — error answers by lingering close (the client still uploading reads
// the JSON error instead of ECONNRESET), an abandoned upload noticed at once, a client that resets right after its
// request head never corrupts a pooled buffer.
import Foundation
import SluiceBlockingHTTP
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class HTTP1ConnectionEndTests: XCTestCase {
    private func predictor() throws -> BlockingServer {
        let pod = try BlockingServer(port: 0, handler: predictorHandler(modelName: "iris", version: .v1, revision: "iris-predictor-default-00001"))
        pod.start()
        return pod
    }

    /// Waits (bounded) until the gateway holds `count` client connections.
    private func waitForConnections(_ gateway: Gateway, _ count: Int, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if gateway.activeConnections == count { return true }
            usleep(10_000)  // polling a counter with a deadline; nothing to wait on from outside the worker
        }
        return gateway.activeConnections == count
    }

    // Bug 3: a 413 for a large tensor used to reach the client as ECONNRESET while it was still uploading.
    func testTooLargeUploadReadsTheJSONErrorWhileStillSending() throws {
        let pod = try predictor()
        defer { pod.stop() }
        let g = try GatewayFixture.gateway(to: pod.port, name: "iris") { $0.limits.maxRequestBodyBytes = 64 * 1024 }
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        let body = 4 * 1024 * 1024
        try c.send("POST /v1/models/iris:predict HTTP/1.1\r\nHost: iris.ns.example.com\r\nContent-Length: \(body)\r\n\r\n")
        // The whole upload goes out (the gateway reads and drops it) and the answer is there to read afterwards.
        try c.send([UInt8](repeating: 0x20, count: body))
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 413)
        XCTAssertTrue(r.text.contains("\"error\""))
        XCTAssertEqual(r.header("Connection"), "close")
    }

    // Bug 3: a 400 in the middle of a chunked body, the client still sending.
    func testBrokenChunkedBodyReadsThe400WhileStillSending() throws {
        let pod = try predictor()
        defer { pod.stop() }
        let g = try GatewayFixture.gateway(to: pod.port, name: "iris")
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        try c.send("POST /v1/models/iris:predict HTTP/1.1\r\nHost: iris.ns.example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        try c.send([UInt8](repeating: 0x41, count: 2 * 1024 * 1024))
        let r = try c.readResponse()
        XCTAssertEqual(r.status, 400)
        XCTAssertTrue(r.text.contains("\"error\""))
    }

    // Bug 4: an upload abandoned after 100 of 1000 bytes kept its client socket and a pod connection for 60 s.
    func testAbandonedUploadIsReleasedAtOnce() throws {
        let pod = try predictor()
        defer { pod.stop() }
        let collector = RecordCollector()
        let revision = "iris-predictor-default-00001"
        let service = ServiceSpec(name: "iris", namespace: "ns", revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: pod.port)])],
                                  traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
        let g = try Gateway(settings: GatewayFixture.settings(workers: 1), routes: RouteTable(services: [service], rules: HostRules()),
                            requestObserver: collector.observer)
        defer { g.shutdown(graceMs: 1000) }
        for halfClose in [false, true, false, true] {
            let c = try TestClient(port: g.port)
            try c.send("POST /v1/models/iris:predict HTTP/1.1\r\nHost: iris.ns.example.com\r\nContent-Length: 1000\r\n\r\n"
                       + String(repeating: "x", count: 100))
            if halfClose {
                shutdown(c.fd, Int32(SHUT_WR))
                // The gateway closes its side: the client reads EOF long before the 60 s body timeout.
                XCTAssertTrue(try c.isClosedByPeer(), "half-closed abandoned upload: the gateway closes")
            } else {
                let raw = dup(c.fd)
                shutdown(c.fd, Int32(SHUT_RDWR))
                Glibc.close(raw)
            }
            XCTAssertTrue(waitForConnections(g, 0, seconds: 3), "the gateway released the abandoned upload (half-close: \(halfClose))")
        }
        let records = collector.wait(for: 4)
        for r in records {
            XCTAssertEqual(r.outcome, .aborted)
            XCTAssertTrue(r.flags.contains(.downstreamConnectionTermination))
            XCTAssertEqual(r.requestBodyBytes, 100)
        }
        XCTAssertEqual(try TestClient(port: g.port).request("GET", "/v1/models/iris", host: "iris.ns.example.com").status, 200)
    }

    // Bug 1: a client that resets right after an `Expect: 100-continue` head made the 100 Continue flush close the
    // connection, after which the head was consumed from a buffer already back in the worker's pool; the next
    // connection to take that buffer read garbage (or trapped in a debug build).
    func testResetAfterExpectContinueHeadLeavesBuffersIntact() throws {
        let pod = try predictor()
        defer { pod.stop() }
        let g = try GatewayFixture.gateway(to: pod.port, name: "iris")
        defer { g.shutdown(graceMs: 1000) }
        let head = "POST /v1/models/iris:predict HTTP/1.1\r\nHost: iris.ns.example.com\r\nExpect: 100-continue\r\n"
            + "Content-Length: 64\r\nX-Padding: \(String(repeating: "p", count: 400))\r\n\r\n"
        for _ in 0..<40 {
            let fd = try connectLoopback(port: g.port)
            _ = head.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            resetAndClose(fd)
        }
        // Short requests on fresh connections take the pooled buffers: every one is answered correctly.
        for _ in 0..<20 {
            let c = try TestClient(port: g.port)
            XCTAssertEqual(try c.request("GET", "/v1/models/iris", host: "iris.ns.example.com").status, 200)
        }
    }
}
