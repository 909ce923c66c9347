// Checks the hot-path promise: once warm, parsing a request reuses the same storage (no reallocation).
import XCTest
@testable import SluiceHTTP1

final class StorageReuseTests: XCTestCase {
    func address<T>(_ array: [T]) -> UnsafeRawPointer? {
        array.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
    }

    func testRequestParserReusesStorageAcrossRequests() {
        var parser = RequestParser(limits: HTTP1Limits())
        let raw = bytes(
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: m.example\r\nConnection: keep-alive, x-a, x-b\r\nX-A: 1\r\nX-B: 2\r\n"
                + String(repeating: "X-Pad: p\r\n", count: 40) + "Content-Length: 10\r\n\r\n")
        raw.withUnsafeBytes { XCTAssertEqual(parser.parse($0), .complete) }
        parser.reset()
        let headers = address(parser.storage.headers)
        let tokens = address(parser.connectionTokens)
        for _ in 0..<100 {
            raw.withUnsafeBytes { XCTAssertEqual(parser.parse($0), .complete) }
            XCTAssertEqual(parser.storage.headers.count, 45)
            parser.reset()
            XCTAssertEqual(address(parser.storage.headers), headers)
            XCTAssertEqual(address(parser.connectionTokens), tokens)
        }
    }

    func testResponseParserReusesStorageAcrossResponses() {
        var parser = ResponseParser(limits: HTTP1Limits())
        let raw = bytes("HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\n" + String(repeating: "X-Pad: p\r\n", count: 40) + "Content-Length: 2\r\n\r\n")
        raw.withUnsafeBytes { XCTAssertEqual(parser.parse($0, requestWasHEAD: false), .complete) }
        parser.reset()
        let headers = address(parser.storage.headers)
        for _ in 0..<100 {
            raw.withUnsafeBytes { XCTAssertEqual(parser.parse($0, requestWasHEAD: false), .complete) }
            parser.reset()
            XCTAssertEqual(address(parser.storage.headers), headers)
        }
    }
}
