// Tests for ResponseParser: status line, framing per RFC 9112 §6.3, persistence, 502 on every error.
import XCTest
@testable import SluiceHTTP1

final class ResponseParserTests: XCTestCase {
    func testContentLengthResponse() {
        let raw = bytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n")
        var parser = ResponseParser(limits: HTTP1Limits())
        let status = raw.withUnsafeBytes { parser.parse($0, requestWasHEAD: false) }
        XCTAssertEqual(status, .complete)
        let head = parser.head
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.version, .http11)
        XCTAssertEqual(head.framing, .contentLength(17))
        XCTAssertTrue(head.keepAlive)
        XCTAssertEqual(head.headLength, raw.count)
        XCTAssertEqual(head.headers.count, 2)
        XCTAssertEqual(head.headers[1].kind, .contentLength)
        XCTAssertTrue(head.headers[1].dropOnForward, "the proxy re-frames")
        XCTAssertFalse(head.headers[0].dropOnForward)
    }

    func testFramingPerRFC9112Section6_3() {
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing, .chunked)
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").1.framing, .chunked)
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").1.framing, .untilClose)
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").1.framing, .untilClose)
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\n\r\n").1.framing, .untilClose)
        XCTAssertFalse(parseResponse("HTTP/1.1 200 OK\r\n\r\n").1.keepAlive, "close-delimited bodies end the connection")
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head: true).1.framing, .none)
        XCTAssertEqual(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", head: true).1.framing, .none)
        XCTAssertEqual(parseResponse("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").1.framing, .none)
        XCTAssertEqual(parseResponse("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing, .none)
        XCTAssertTrue(parseResponse("HTTP/1.1 304 Not Modified\r\n\r\n").1.keepAlive)
        let cont = parseResponse("HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(cont.0, .complete)
        XCTAssertEqual(cont.1.status, 100)
        XCTAssertEqual(cont.1.framing, .none)
    }

    func testPersistence() {
        XCTAssertFalse(parseResponse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").1.keepAlive)
        XCTAssertFalse(parseResponse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").1.keepAlive)
        XCTAssertTrue(parseResponse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").1.keepAlive)
        XCTAssertFalse(parseResponse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").1.keepAlive, "until close")
    }

    func testStatusLineVariants() {
        XCTAssertEqual(parseResponse("HTTP/1.1 301\r\n\r\n").0, .complete, "missing reason phrase is accepted")
        XCTAssertEqual(parseResponse("HTTP/1.1 200 \r\n\r\n").0, .complete)
        XCTAssertEqual(parseResponse("HTTP/1.1 200  OK\r\n\r\n").0, .complete)
        XCTAssertEqual(parseResponse("HTTP/1.1 500 Ori\u{eb}ntatie\tprobleem\r\n\r\n").0, .complete)
        XCTAssertEqual(parseResponse("\r\nHTTP/1.1 200 OK\r\n\r\n").0, .complete)
        XCTAssertEqual(parseResponse("HTTP/1.1 599 X\r\n\r\n").1.status, 599)
    }

    func testConnectionNamedFieldsDroppedUnderscoreKept() {
        let raw = bytes("HTTP/1.1 200 OK\r\nX-Hop: 1\r\nConnection: x-hop\r\nDCLK_imp: v7\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n")
        var parser = ResponseParser(limits: HTTP1Limits())
        XCTAssertEqual(raw.withUnsafeBytes { parser.parse($0, requestWasHEAD: false) }, .complete)
        let drops = parser.head.headers.map { ($0.dropOnForward) }
        XCTAssertEqual(drops, [true, true, false, true, true])
    }

    static let rejections: [(String, String)] = [
        ("bad protocol", "HTP/1.1 200 OK\r\n\r\n"),
        ("HTTP/2", "HTTP/2.0 200 OK\r\n\r\n"),
        ("HTTP/0.9", "HTTP/0.9 200 OK\r\n\r\n"),
        ("RTSP", "RTSP/1.0 200 OK\r\n\r\n"),
        ("extra digit", "HTTP/1.01 200 OK\r\n\r\n"),
        ("tab after version", "HTTP/1.1\t200 OK\r\n\r\n"),
        ("double SP before code", "HTTP/1.1  200 OK\r\n\r\n"),
        ("two-digit code", "HTTP/1.1 20 OK\r\n\r\n"),
        ("four-digit code", "HTTP/1.1 2000 OK\r\n\r\n"),
        ("code below 100", "HTTP/1.1 099 OK\r\n\r\n"),
        ("code above 599", "HTTP/1.1 600 OK\r\n\r\n"),
        ("NUL in reason", "HTTP/1.1 200 O\u{0}K\r\n\r\n"),
        ("bare LF status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
        ("bare CR status line", "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n"),
        ("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
        ("whitespace before colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
        ("space in name", "HTTP/1.1 200 OK\r\nen-US Content-Type: x\r\n\r\n"),
        ("CTL in value", "HTTP/1.1 200 OK\r\nX: a\u{1}\r\n\r\n"),
        ("bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"),
        ("differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        ("TE on 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("bad Connection", "HTTP/1.1 200 OK\r\nConnection: a b\r\n\r\n"),
    ]

    func testRejectionsAre502() {
        for (name, response) in Self.rejections {
            let (status, _) = parseResponse(response)
            XCTAssertEqual(status.status, 502, "\(name): \(status)")
        }
    }

    func testLimits() {
        var limits = HTTP1Limits()
        limits.maxHeadBytes = 40
        var parser = ResponseParser(limits: limits)
        let raw = bytes("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 60))
        XCTAssertEqual(raw.withUnsafeBytes { parser.parse($0, requestWasHEAD: false) }.status, 502)
    }

    func testByteByByteAndPipelined() {
        let first = "HTTP/1.1 100 Continue\r\n\r\n"
        let second = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nX_Y: 1\r\n\r\n"
        let raw = bytes(first + second)
        var whole = ResponseParser(limits: HTTP1Limits())
        var split = ResponseParser(limits: HTTP1Limits())
        raw.withUnsafeBytes { all in
            XCTAssertEqual(whole.parse(all, requestWasHEAD: false), .complete)
            var status = ParseStatus.incomplete
            for end in 0...raw.count where status == .incomplete {
                status = split.parse(UnsafeRawBufferPointer(rebasing: all[0..<end]), requestWasHEAD: false)
            }
            XCTAssertEqual(status, .complete)
            XCTAssertEqual(describe(split.head, raw), describe(whole.head, raw))
            XCTAssertEqual(whole.head.status, 100)
            XCTAssertEqual(whole.head.headLength, bytes(first).count)
            let start = whole.head.headLength
            whole.reset()
            XCTAssertEqual(whole.parse(UnsafeRawBufferPointer(rebasing: all[start...]), requestWasHEAD: false), .complete)
            XCTAssertEqual(whole.head.status, 200)
            XCTAssertEqual(whole.head.framing, .chunked)
            XCTAssertTrue(whole.head.keepAlive)
            XCTAssertEqual(whole.head.headLength, bytes(second).count)
        }
    }
}
