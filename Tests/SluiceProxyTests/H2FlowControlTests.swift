// Integration: HTTP/2 flow control with real backpressure — a pod that does not read keeps the client's upload
// stalled on window (Sluice grants window only for bytes the pod's socket took), and the upload completes once it reads.
import Foundation
import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Bytes queued in the kernel on loopback TCP connections to `port`: in the connecting side's send queue and in the
/// listening side's receive queue (/proc/net/tcp `tx_queue:rx_queue`).
func kernelQueues(port: UInt16) -> (towardPod: Int, atPod: Int) {
    // /proc files have no size: read to the end rather than trusting a one-shot read.
    guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp") else { return (0, 0) }
    let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    try? handle.close()
    let hexPort = String(format: "%04X", port)
    var toward = 0, at = 0
    for line in text.split(separator: "\n").dropFirst() {
        let f = line.split(separator: " ")
        guard f.count > 4 else { continue }
        let queues = f[4].split(separator: ":").map { Int($0, radix: 16) ?? 0 }
        if f[2].hasSuffix(":" + hexPort) { toward += queues[0] }
        if f[1].hasSuffix(":" + hexPort) && f[3] == "01" { at += queues[1] }
    }
    return (toward, at)
}

final class H2FlowControlTests: XCTestCase {
    func testSlowPodStallsTheUploadOnWindowNotInSluice() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        // A small receive buffer on the pod side keeps the kernel from absorbing megabytes on its behalf.
        var small: Int32 = 16 * 1024
        setsockopt(backend.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let release = DispatchSemaphore(value: 0)
        backend.start { conn in
            do {
                let head = try conn.readRequestHead()
                let cl = head.first { $0.lowercased().hasPrefix("content-length: ") }.map { Int($0.dropFirst(16))! } ?? 0
                release.wait()  // the pod is busy: it reads nothing until told
                var received = 0
                while received < cl { received += try conn.take(min(65536, cl - received)).count }
                try conn.send("HTTP/1.1 200 OK\r\nContent-Length: \(String(received).utf8.count)\r\n\r\n\(received)")
            } catch {}
        }
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (backend.port, backend.port)))
        defer { gateway.shutdown(graceMs: 1000) }

        let size = 16 << 20
        let c = try H2TestClient(port: gateway.port)
        let stream = c.request("POST", "/v1/models/m:predict", authority: serviceHost, body: [UInt8](repeating: 0x61, count: size))
        // Send until nothing moves any more: the client is then blocked by the window Sluice granted.
        try c.runUntilQuiet(quietMs: 300, seconds: 10)
        let sentWhileStalled = c.uploaded(stream)
        XCTAssertEqual(c.remoteWindow(stream), 0, "the client waits on stream window, not on TCP")
        XCTAssertLessThan(sentWhileStalled, size / 2)
        // Where the sent bytes are: in the kernel between Sluice and the pod (Sluice's send queue, the pod's receive
        // queue, from /proc/net/tcp), in the pod's own read buffer (its head read takes up to 64 KiB), and in Sluice.
        // Sluice itself may hold at most one stream window (64 KiB): it grants window only for what the pod's socket took.
        let queues = kernelQueues(port: backend.port)
        let heldBySluice = sentWhileStalled - queues.towardPod - queues.atPod - 65_536
        print("h2 upload stalled: client sent \(sentWhileStalled), kernel \(queues.towardPod) + \(queues.atPod), Sluice <= \(heldBySluice)")
        XCTAssertLessThanOrEqual(heldBySluice, 65_535 + 16_384, "Sluice buffered beyond the stream window")
        release.signal()
        try c.run(seconds: 30) { c.responses[stream]?.isClosed == true }
        XCTAssertEqual(c.responses[stream]?.status, 200)
        XCTAssertEqual(c.responses[stream]?.text, String(size))
    }

    func testLargeDownloadOverH2IsComplete() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        let size = 8 << 20
        backend.start { conn in
            do {
                _ = try conn.readRequestHead()
                try conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                let chunk = Array("10000\r\n".utf8) + [UInt8](repeating: 0x62, count: 65536) + Array("\r\n".utf8)
                for _ in 0..<(size >> 16) { try conn.send(chunk) }
                try conn.send("0\r\n\r\n")
            } catch {}
        }
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (backend.port, backend.port)))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let stream = c.request("GET", "/big", authority: serviceHost)
        try c.run(seconds: 30) { c.responses[stream]?.isClosed == true }
        XCTAssertEqual(c.responses[stream]?.status, 200)
        XCTAssertEqual(c.responses[stream]?.errorCode, 0)
        XCTAssertEqual(c.responses[stream]?.body.count, size)
        XCTAssertNil(c.responses[stream]?.header("transfer-encoding"), "no connection-specific fields in h2")
    }

    func testConcurrentDownloadsToASlowReaderAllComplete() throws {
        // 24 streams × 2 MiB, to a client with a 32 KiB window: the gateway must keep every stream moving while
        // nghttp2 defers and resumes them, with the pods throttled by the client's pace.
        let backend = RawBackend()
        defer { backend.stop() }
        let size = 2 << 20
        backend.start { conn in
            do {
                while true {
                    _ = try conn.readRequestHead()
                    try conn.send("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\n\r\n")
                    let piece = [UInt8](repeating: 0x63, count: 256 * 1024)
                    for _ in 0..<(size / piece.count) { try conn.send(piece) }
                }
            } catch {}
        }
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (backend.port, backend.port)))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port, window: 32 * 1024)
        let ids = (0..<24).map { _ in c.request("GET", "/big", authority: serviceHost) }
        try c.run(seconds: 60) { ids.allSatisfy { c.responses[$0]?.isClosed == true } }
        for id in ids {
            XCTAssertEqual(c.responses[id]?.status, 200)
            XCTAssertEqual(c.responses[id]?.body.count, size, "stream \(id)")
            XCTAssertEqual(c.responses[id]?.errorCode, 0)
        }
    }
}
