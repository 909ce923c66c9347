// Tests for ChunkedDecoder: RFC 9112 §7.1 grammar, every split position, extensions, trailers, errors.
import XCTest
@testable import SluiceHTTP1

final class ChunkedDecoderTests: XCTestCase {
    let body = "5\r\nhello\r\n6;name=value;flag\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"

    func testDecodesAndStopsAfterFinalCRLF() {
        let raw = bytes(body + "GET / HTTP/1.1\r\n")
        let (data, step, consumed) = decodeChunked(raw)
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "hello world")
        XCTAssertEqual(step, .end)
        XCTAssertEqual(consumed, bytes(body).count, "pipelined bytes stay unconsumed")
    }

    func testEverySplitPosition() {
        let raw = bytes(body)
        for cut in 0...raw.count {
            let (data, step, consumed) = decodeChunked(raw, splits: [cut])
            XCTAssertEqual(String(decoding: data, as: UTF8.self), "hello world", "cut \(cut)")
            XCTAssertEqual(step, .end, "cut \(cut)")
            XCTAssertEqual(consumed, raw.count)
        }
        for first in 0...raw.count {
            for second in first...raw.count where second % 3 == 0 {
                let (data, step, _) = decodeChunked(raw, splits: [first, second])
                XCTAssertEqual(String(decoding: data, as: UTF8.self), "hello world")
                XCTAssertEqual(step, .end)
            }
        }
    }

    func testByteByByte() {
        let raw = bytes(body)
        let (data, step, consumed) = decodeChunked(raw, splits: Array(0...raw.count))
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "hello world")
        XCTAssertEqual(step, .end)
        XCTAssertEqual(consumed, raw.count)
    }

    func testNeedMoreConsumesEverything() {
        var decoder = ChunkedDecoder()
        let raw = bytes("1a;x=\"y")
        let (consumed, step) = raw.withUnsafeBytes { decoder.next($0) }
        XCTAssertEqual(consumed, raw.count)
        XCTAssertEqual(step, .needMore)
    }

    func testDataSpansAreInsideTheInput() {
        var decoder = ChunkedDecoder()
        let raw = bytes("3\r\nabc\r\n0\r\n\r\n")
        raw.withUnsafeBytes { all in
            let (c1, s1) = decoder.next(all)
            XCTAssertEqual(s1, .data(ByteSpan(start: 3, count: 3)))
            XCTAssertEqual(c1, 6)
            let (c2, s2) = decoder.next(UnsafeRawBufferPointer(rebasing: all[c1...]))
            XCTAssertEqual(s2, .end)
            XCTAssertEqual(c1 + c2, raw.count)
            XCTAssertEqual(decoder.next(UnsafeRawBufferPointer(rebasing: all[(c1 + c2)...])).step, .end, "stays ended")
        }
        decoder.reset()
        XCTAssertEqual(decodeChunkedWith(&decoder, "0\r\n\r\n"), .end, "reset makes it reusable")
    }

    func decodeChunkedWith(_ decoder: inout ChunkedDecoder, _ s: String) -> ChunkedDecoder.Step {
        bytes(s).withUnsafeBytes { decoder.next($0).step }
    }

    static let accepted = [
        "0\r\n\r\n",
        "000\r\n\r\n",
        "A\r\n0123456789\r\n0\r\n\r\n",
        "a\r\n0123456789\r\n0\r\n\r\n",
        "000000000000000A\r\n0123456789\r\n0\r\n\r\n",
        "1;a\r\nx\r\n0\r\n\r\n",
        "1 ;a\r\nx\r\n0\r\n\r\n",
        "1\t; a = b ; c\r\nx\r\n0\r\n\r\n",
        "1;a=\"q \\\" ; x\"\r\nx\r\n0\r\n\r\n",
        "1;a=\"\";b=c\r\nx\r\n0;last=1\r\n\r\n",
        "1\r\nx\r\n0\r\nA: b\r\nC:\r\n\r\n",
        "1\r\nx\r\n0\r\nA: b\u{80}\t\r\n\r\n",
    ]

    func testAcceptedForms() {
        for body in Self.accepted {
            let raw = bytes(body)
            let (_, step, consumed) = decodeChunked(raw)
            XCTAssertEqual(step, .end, body)
            XCTAssertEqual(consumed, raw.count, body)
            XCTAssertEqual(decodeChunked(raw, splits: Array(0...raw.count)).step, .end, body)
        }
    }

    static let rejected: [(String, String)] = [
        ("empty size", "\r\n"),
        ("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("plus sign", "+5\r\nhello\r\n0\r\n\r\n"),
        ("minus sign", "-5\r\nhello\r\n0\r\n\r\n"),
        ("underscore", "5_0\r\n"),
        ("trailing SP without extension", "5 \r\nhello\r\n0\r\n\r\n"),
        ("junk after size", "2 erfrferferf\r\naa\r\n0\r\n\r\n"),
        ("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
        ("bare CR after size", "5\r;a\r\nhello\r\n0\r\n\r\n"),
        ("17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
        ("overflow", "FFFFFFFFFFFFFFFF\r\n"),
        ("data longer than size", "5\r\nhelloX\r\n0\r\n\r\n"),
        ("bare LF after data", "5\r\nhello\n0\r\n\r\n"),
        ("missing last-chunk", "3\r\nfoo\r\n\r\n"),
        ("empty extension", "2;\r\naa\r\n0\r\n\r\n"),
        ("empty extension value", "2;a=\r\naa\r\n0\r\n\r\n"),
        ("unbalanced quote", "5;a=\"abc\r\nhello\r\n0\r\n\r\n"),
        ("token after quoted value", "5;a=\"abc\"d\r\nhello\r\n0\r\n\r\n"),
        ("whitespace before CRLF in extension", "5;a=b \r\nhello\r\n0\r\n\r\n"),
        ("CTL in quoted value", "5;a=\"\u{1}\"\r\nhello\r\n0\r\n\r\n"),
        ("extension name not a token", "5;a@=b\r\nhello\r\n0\r\n\r\n"),
        ("trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n"),
        ("trailer without colon", "0\r\nA\r\n\r\n"),
        ("trailer whitespace before colon", "0\r\nA : b\r\n\r\n"),
        ("trailer bare LF", "0\r\nA: b\n\r\n"),
        ("trailer NUL", "0\r\nA: \u{0}\r\n\r\n"),
        ("end without LF", "0\r\n\rX"),
    ]

    func testRejectedForms() {
        for (name, body) in Self.rejected {
            let raw = bytes(body)
            let (_, step, _) = decodeChunked(raw)
            guard case .failed(let error) = step else { return XCTFail("\(name): \(step)") }
            XCTAssertEqual(error.status, 400, name)
            let (_, splitStep, _) = decodeChunked(raw, splits: Array(0...raw.count))
            XCTAssertEqual(splitStep, step, "byte by byte: \(name)")
        }
    }

    func testLineAndTrailerLimits() {
        var decoder = ChunkedDecoder(maxChunkLineBytes: 16, maxTrailerBytes: 16)
        let longLine = bytes("1;" + String(repeating: "a", count: 20) + "\r\n")
        XCTAssertEqual(longLine.withUnsafeBytes { decoder.next($0).step }, .failed(HTTPParseError(status: 400, reason: "http1.chunk_line_too_long")))
        decoder = ChunkedDecoder(maxChunkLineBytes: 16, maxTrailerBytes: 16)
        let bigTrailer = bytes("0\r\nX: " + String(repeating: "a", count: 20) + "\r\n\r\n")
        XCTAssertEqual(bigTrailer.withUnsafeBytes { decoder.next($0).step }, .failed(HTTPParseError(status: 400, reason: "http1.trailers_too_large")))
        decoder = ChunkedDecoder(maxChunkLineBytes: 16, maxTrailerBytes: 16)
        // The limit is on bytes seen, not bytes buffered: split feeding hits it too.
        var step = ChunkedDecoder.Step.needMore
        for b in longLine where step == .needMore {
            step = [b].withUnsafeBytes { decoder.next($0).step }
        }
        XCTAssertEqual(step, .failed(HTTPParseError(status: 400, reason: "http1.chunk_line_too_long")))
    }

    func testLargestSize() {
        var decoder = ChunkedDecoder()
        let raw = bytes("7FFFFFFFFFFFFFFF\r\nab")
        let (_, step) = raw.withUnsafeBytes { decoder.next($0) }
        XCTAssertEqual(step, .data(ByteSpan(start: 18, count: 2)))
    }
}
