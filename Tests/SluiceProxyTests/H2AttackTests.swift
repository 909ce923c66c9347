// Integration: the HTTP/2 attacks of hardening.md §2.8 — each ends the offending stream or connection within bounded
// counts while the gateway keeps serving other clients.
import Foundation
import SluiceProxy
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/2 frame (RFC 9113 §4.1).
func h2Frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
            UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
}

let h2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// HPACK for `GET /` on `authority` (static-table indices, literal authority without indexing).
func hpackGet(authority: String) -> [UInt8] {
    [0x82, 0x86, 0x84, 0x01, UInt8(authority.utf8.count)] + Array(authority.utf8)
}

extension TestClient {
    /// Reads until the server closes the connection (or `seconds` pass); returns everything read.
    func readUntilClosed(seconds: Int = 10) -> (bytes: [UInt8], closed: Bool) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { all += chunk[0..<n]; continue }
            return (all, n == 0 || errno == ECONNRESET)
        }
    }
}

/// GOAWAY error codes found in raw server bytes.
func goAwayCodes(_ raw: [UInt8]) -> [UInt32] {
    var codes: [UInt32] = []
    var i = 0
    while i + 9 <= raw.count {
        let length = Int(raw[i]) << 16 | Int(raw[i + 1]) << 8 | Int(raw[i + 2])
        guard i + 9 + length <= raw.count else { break }
        if raw[i + 3] == 7 && length >= 8 {
            codes.append(raw[i + 13..<i + 17].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
        i += 9 + length
    }
    return codes
}

final class H2AttackTests: XCTestCase {
    /// Another client on the same gateway is served (HTTP/2 and HTTP/1.1).
    private func assertOthersServed(_ f: GatewayFixture, file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try H2TestClient(port: f.port)
        let id = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true }
        XCTAssertEqual(c.responses[id]?.status, 200, file: file, line: line)
        XCTAssertEqual(try f.client().request("GET", "/v2/health/ready", host: serviceHost).status, 200, file: file, line: line)
    }

    func testRapidResetClosesTheConnectionAndOthersAreServed() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let attacker = try H2TestClient(port: f.port)
        // CVE-2023-44487: open a stream and cancel it at once, over and over (bounded: 2000 streams).
        var sent = 0
        for _ in 0..<2000 {
            let id = attacker.request("GET", "/v2/health/ready", authority: serviceHost)
            try attacker.exchangeOnce(waitMs: 0)  // HEADERS on the wire first
            attacker.reset(id)
            try attacker.exchangeOnce(waitMs: 0)
            sent += 1
            if attacker.isEOF { break }
        }
        try attacker.run(seconds: 10) { attacker.isEOF }
        let goAway = attacker.goAwayFrames.last
        XCTAssertEqual(goAway?.errorCode, 11, "GOAWAY ENHANCE_YOUR_CALM")
        // Our limit is 200 resets per second: the connection ends after about 200 of the 2000 streams.
        XCTAssertLessThan(goAway?.lastStreamId ?? .max, 2 * 400, "the gateway cut the attacker off early")
        try assertOthersServed(f)
    }

    func testHPACKBombAndTooManyFieldsRefuseTheStreamOnly() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        // 20 × a 4000-byte field: after the first, each costs one byte on the wire (HPACK dynamic table) but 4 KiB decoded.
        let big = String(repeating: "b", count: 4000)
        let bomb = c.request("GET", "/v2/health/ready", authority: serviceHost, headers: Array(repeating: ("x-bomb", big), count: 20))
        let many = c.request("GET", "/v2/health/ready", authority: serviceHost, headers: (0..<150).map { ("x-f\($0)", "v") })
        try c.run { c.responses[bomb]?.isClosed == true && c.responses[many]?.isClosed == true }
        XCTAssertEqual(c.responses[bomb]?.status, 0, "no response: the stream is reset")
        XCTAssertNotEqual(c.responses[bomb]?.errorCode, 0)
        XCTAssertEqual(c.responses[many]?.status, 0)
        XCTAssertNotEqual(c.responses[many]?.errorCode, 0)
        // The connection itself stays usable.
        let fine = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[fine]?.isClosed == true }
        XCTAssertEqual(c.responses[fine]?.status, 200)
        XCTAssertTrue(c.goAwayFrames.isEmpty)
    }

    func testContinuationFloodEndsTheConnection() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let raw = try TestClient(port: f.port)
        var bytes = h2Preface + h2Frame(type: 4, flags: 0, stream: 0, [])
        bytes += h2Frame(type: 1, flags: 0x1, stream: 1, hpackGet(authority: serviceHost))  // END_STREAM, no END_HEADERS
        for _ in 0..<100 { bytes += h2Frame(type: 9, flags: 0, stream: 1, [0x00, 0x01, 0x61, 0x01, 0x62]) }
        try? raw.send(bytes)
        let got = raw.readUntilClosed()
        XCTAssertTrue(got.closed, "connection closed")
        XCTAssertFalse(goAwayCodes(got.bytes).isEmpty, "with a GOAWAY")
        try assertOthersServed(f)
    }

    func testSettingsAndPingFloodsAreBounded() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        // SETTINGS with more entries than max_settings (32): a connection error.
        let settings = try TestClient(port: f.port)
        var entries: [UInt8] = []
        for _ in 0..<64 { entries += [0x00, 0x03, 0x00, 0x00, 0x00, 0x64] }  // MAX_CONCURRENT_STREAMS = 100, 64 times
        try? settings.send(h2Preface + h2Frame(type: 4, flags: 0, stream: 0, entries))
        let s = settings.readUntilClosed()
        XCTAssertTrue(s.closed)
        XCTAssertFalse(goAwayCodes(s.bytes).isEmpty)

        // PINGs from a client that never reads its acks: the gateway ends the session; it never queues without bound.
        let ping = try TestClient(port: f.port)
        var tv = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(ping.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // An HTTP/2 connection first (the preface and SETTINGS): without them the bytes are a malformed HTTP/1.1
        // request, answered 400 with a lingering close that reads and drops the rest.
        try ping.send(h2Preface + h2Frame(type: 4, flags: 0, stream: 0, []))
        let frame = h2Frame(type: 6, flags: 0, stream: 0, [UInt8](repeating: 7, count: 8))
        let batch = Array([[UInt8]](repeating: frame, count: 4096).joined())
        var sentBytes = 0
        for _ in 0..<200 {  // at most 200 × 4096 PINGs (~14 MB); a full socket ends the loop long before
            let n = batch.withUnsafeBytes { Glibc.send(ping.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sentBytes += n
            if n < batch.count { break }  // throttled: the gateway stopped reading
        }
        // The flood ends the session: nghttp2's bound on queued PING ACKs makes a GOAWAY, then the connection closes
        // (what the client sent meanwhile is read and dropped by the lingering close, never queued).
        XCTAssertGreaterThan(sentBytes, 0)
        let flooded = ping.readUntilClosed()
        XCTAssertTrue(flooded.closed, "the gateway closed the PING flood")
        XCTAssertFalse(goAwayCodes(flooded.bytes).isEmpty, "with a GOAWAY")
        XCTAssertLessThan(flooded.bytes.count, 4 * 1024 * 1024, "ACKs held for the client stay bounded")
        try assertOthersServed(f)
    }

    func testStreamsResetInTheSameReadNeverReachAPod() throws {
        let backend = RawBackend()
        defer { backend.stop() }
        let accepted = NSLock(), counter = Counter()
        backend.start { conn in
            accepted.lock(); counter.value += 1; accepted.unlock()
            do {
                while true {
                    _ = try conn.readRequestHead()
                    try conn.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                }
            } catch {}
        }
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (backend.port, backend.port)))
        defer { gateway.shutdown(graceMs: 1000) }
        // 50 × (HEADERS, RST_STREAM) in one write: one read at the gateway.
        var bytes = h2Preface + h2Frame(type: 4, flags: 0, stream: 0, [])
        for i in 0..<50 {
            let stream = UInt32(1 + 2 * i)
            bytes += h2Frame(type: 1, flags: 0x5, stream: stream, hpackGet(authority: serviceHost))
            bytes += h2Frame(type: 3, flags: 0, stream: stream, [0, 0, 0, 8])  // CANCEL
        }
        bytes += h2Frame(type: 6, flags: 0, stream: 0, [1, 2, 3, 4, 5, 6, 7, 8])  // PING: its ACK proves the batch was read
        let raw = try TestClient(port: gateway.port)
        try raw.send(bytes)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        func hasPingAck(_ b: [UInt8]) -> Bool {
            var i = 0
            while i + 9 <= b.count {
                let length = Int(b[i]) << 16 | Int(b[i + 1]) << 8 | Int(b[i + 2])
                if b[i + 3] == 6 && b[i + 4] & 1 == 1 { return true }
                i += 9 + length
            }
            return false
        }
        while !hasPingAck(received) {
            let n = chunk.withUnsafeMutableBytes { recv(raw.fd, $0.baseAddress, $0.count, 0) }  // SO_RCVTIMEO bounds it
            guard n > 0 else { XCTFail("no PING ACK"); return }
            received += chunk[0..<n]
        }
        // Then a real request on another connection, which must reach the pod.
        let c = try H2TestClient(port: gateway.port)
        let id = c.request("GET", "/", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true }
        XCTAssertEqual(c.responses[id]?.status, 200)
        accepted.lock(); let n = counter.value; accepted.unlock()
        XCTAssertEqual(n, 1, "only the real request opened a connection to the pod")
    }
}

final class Counter: @unchecked Sendable {  // guarded by the lock next to it
    var value = 0
}
