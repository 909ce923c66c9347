// Integration: large bodies stream through in both directions with bounded memory; clients that leave leave nothing.
import Foundation
import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class StreamingTests: XCTestCase {
    static let size = 64 * 1024 * 1024

    func testSixtyFourMiBUploadAndDownloadStreamWithBoundedMemory() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        // The pod counts the chunked upload without keeping it, then streams 64 MiB back in 1 MiB chunks.
        backend.start { conn in
            do {
                let head = try conn.readRequestHead()
                guard head.contains(where: { $0.lowercased() == "transfer-encoding: chunked" }) else { return }
                var received = 0
                while true {
                    let sizeLine = try conn.line()
                    let size = Int(sizeLine, radix: 16)!
                    if size == 0 { _ = try conn.line(); break }
                    var left = size
                    while left > 0 { let k = min(left, 65536); _ = try conn.take(k); left -= k }
                    _ = try conn.take(2)
                    received += size
                }
                try conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Received: \(received)\r\n\r\n")
                let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
                for _ in 0..<(StreamingTests.size >> 20) {
                    try conn.send(Array("100000\r\n".utf8) + chunk + Array("\r\n".utf8))
                }
                try conn.send("0\r\n\r\n")
            } catch {}
        }
        let gateway = try GatewayFixture.gateway(to: backend.port)
        defer { gateway.shutdown(graceMs: 1000) }
        let rssBefore = residentBytes()
        let c = try TestClient(port: gateway.port, timeoutSeconds: 30)
        try c.send("POST /v1/models/big:predict HTTP/1.1\r\nHost: big.ns.example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        let piece = Array("40000\r\n".utf8) + [UInt8](repeating: 0x62, count: 0x40000) + Array("\r\n".utf8)
        for _ in 0..<(Self.size / 0x40000) { try c.send(piece) }
        try c.send("0\r\n\r\n")
        var downloaded = 0
        let r = try c.readResponse(bodySink: { downloaded += $0.count })
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("X-Received"), String(Self.size))
        XCTAssertEqual(downloaded, Self.size)
        let growth = residentBytes() - rssBefore
        // The test's own client and backend stream too, so the whole process must stay within a few MiB.
        XCTAssertLessThan(growth, 24 << 20, "resident memory grew by \(growth >> 20) MiB while 128 MiB streamed")
    }

    func testClientLeavingMidResponseReleasesEverything() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        let upstreamClosed = expectation(description: "the gateway closed its upstream connection")
        backend.start { conn in
            do {
                _ = try conn.readRequestHead()
                try conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                // Stream until the gateway goes away; a send failing (or EOF) is the signal we are waiting for.
                let chunk = Array("1000\r\n".utf8) + [UInt8](repeating: 0x63, count: 4096) + Array("\r\n".utf8)
                for _ in 0..<100_000 { try conn.send(chunk); usleep(1000) }
            } catch {
                upstreamClosed.fulfill()
            }
        }
        let gateway = try GatewayFixture.gateway(to: backend.port)
        defer { gateway.shutdown(graceMs: 1000) }
        do {
            let c = try TestClient(port: gateway.port)
            try c.send("GET /stream HTTP/1.1\r\nHost: big.ns.example.com\r\n\r\n")
            try c.fill()
        }  // the client closes here
        wait(for: [upstreamClosed], timeout: 10)
        let deadline = Date().addingTimeInterval(5)
        while gateway.activeConnections > 0 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(gateway.activeConnections, 0)
    }

    func testServerSentEventsArriveOneByOne() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        backend.start { conn in
            do {
                _ = try conn.readRequestHead()
                try conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
                for i in 0..<5 {
                    try conn.send("data: \(i)\n\n")
                    usleep(100_000)
                }
            } catch {}
            shutdown(conn.fd, Int32(SHUT_RDWR))
        }
        let gateway = try GatewayFixture.gateway(to: backend.port)
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        try c.send("GET /events HTTP/1.1\r\nHost: big.ns.example.com\r\n\r\n")
        var arrivals: [Date] = []
        let r = try c.readResponse(bodySink: { _ in arrivals.append(Date()) })
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Transfer-Encoding"), "chunked", "a close-delimited body is re-chunked for an HTTP/1.1 client")
        XCTAssertGreaterThanOrEqual(arrivals.count, 4, "events are relayed as they come, not buffered to the end")
        XCTAssertGreaterThan(arrivals.last!.timeIntervalSince(arrivals.first!), 0.25)
    }
}

extension StreamingTests {
    func testServerSentEventsArriveOneByOneOverHTTP2() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        backend.start { conn in
            do {
                _ = try conn.readRequestHead()
                try conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in 0..<5 {
                    let event = "data: \(i)\n\n"
                    try conn.send(String(event.utf8.count, radix: 16) + "\r\n" + event + "\r\n")
                    usleep(100_000)  // the pod's pace: one event every 100 ms
                }
                try conn.send("0\r\n\r\n")
            } catch {}
        }
        let gateway = try GatewayFixture.gateway(to: backend.port)
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let id = c.request("GET", "/openai/v1/completions", authority: "big.ns.example.com")
        var arrivals: [(Date, Int)] = []
        try c.run(seconds: 10) {
            let count = c.responses[id]?.body.count ?? 0
            if count != (arrivals.last?.1 ?? 0) { arrivals.append((Date(), count)) }
            return c.responses[id]?.isClosed == true
        }
        XCTAssertEqual(c.responses[id]?.status, 200)
        XCTAssertEqual(c.responses[id]?.text, (0..<5).map { "data: \($0)\n\n" }.joined())
        XCTAssertGreaterThanOrEqual(arrivals.count, 4, "events arrive as DATA frames as they come, not at the end")
        XCTAssertGreaterThan(arrivals.last!.0.timeIntervalSince(arrivals.first!.0), 0.25)
    }
}

func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let pages = Int(text.split(separator: " ")[1]) ?? 0
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
