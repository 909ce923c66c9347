// Integration: h2c by prior knowledge through the gateway with curl (`--http2-prior-knowledge`), and HTTP/1.1 on the same port.
import Foundation
import SluiceProxy
import SluiceRouting
import XCTest

/// Runs curl with `arguments`; returns its exit status, stdout and stderr (bounded by curl's own --max-time).
func runCurl(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["--silent", "--show-error", "--max-time", "20"] + arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

final class H2CurlTests: XCTestCase {
    private func base(_ f: GatewayFixture) -> String { "http://127.0.0.1:\(f.port)" }

    func testGetAndPostOverH2CReachTheRightRevision() throws {
        let f = try GatewayFixture(split: 0)
        // -i prints the response head: HTTP/2 status line and lower-case fields.
        let get = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: \(serviceHost)", base(f) + "/v1/models/sklearn-iris"])
        XCTAssertEqual(get.status, 0, get.err)
        XCTAssertTrue(get.out.hasPrefix("HTTP/2 200"), get.out)
        XCTAssertTrue(get.out.contains("sluice-revision: \(rev1)"), get.out)
        XCTAssertTrue(get.out.contains("\"ready\""), get.out)

        let post = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: latest-sklearn-iris-predictor-default.kserve-test.example.com",
                                "-H", "Content-Type: application/json", "--data", irisBody, base(f) + "/v1/models/sklearn-iris:predict"])
        XCTAssertEqual(post.status, 0, post.err)
        XCTAssertTrue(post.out.hasPrefix("HTTP/2 200"), post.out)
        XCTAssertTrue(post.out.contains("sluice-revision: \(rev2)"), post.out)
        XCTAssertTrue(post.out.contains("predictions"), post.out)

        let prev = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: prev-sklearn-iris-predictor-default.kserve-test.example.com",
                                "--data", irisBody, base(f) + "/v1/models/sklearn-iris:predict"])
        XCTAssertTrue(prev.out.contains("sluice-revision: \(rev1)"), prev.out)

        // HTTP/1.1 keeps working on the same port.
        let h1 = try f.client().request("GET", "/v1/models/sklearn-iris", host: serviceHost)
        XCTAssertEqual(h1.status, 200)
        XCTAssertEqual(h1.header("Sluice-Revision"), rev1)
    }

    func testUploadWithoutLengthIsChunkedTowardThePodAndErrorsAreJSON() throws {
        // The pod echoes the framing it saw and the body size it counted.
        let backend = RawBackend()
        defer { backend.stop() }
        backend.start { conn in
            do {
                while true {
                    let head = try conn.readRequestHead()
                    let lower = head.map { $0.lowercased() }
                    var received = 0
                    if lower.contains("transfer-encoding: chunked") {
                        while true {
                            let size = Int(try conn.line(), radix: 16)!
                            if size == 0 { _ = try conn.line(); break }
                            received += try conn.take(size).count
                            _ = try conn.take(2)
                        }
                    } else if let cl = lower.first(where: { $0.hasPrefix("content-length: ") }) {
                        received = try conn.take(Int(cl.dropFirst(16))!).count
                    }
                    let framing = lower.contains("transfer-encoding: chunked") ? "chunked" : (lower.first { $0.hasPrefix("content-length") } ?? "none")
                    let body = "\(received)"
                    try conn.send("HTTP/1.1 200 OK\r\nX-Framing: \(framing)\r\nX-Proto: \(lower.first { $0.hasPrefix("x-forwarded-proto") } ?? "")\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                }
            } catch {}
        }
        let gateway = try Gateway(settings: GatewayFixture.settings(), routes: try GatewayFixture.table(split: 0, ports: (backend.port, backend.port)))
        defer { gateway.shutdown(graceMs: 1000) }
        let base = "http://127.0.0.1:\(gateway.port)"
        let big = String(repeating: "x", count: 200 * 1024)
        let path = NSTemporaryDirectory() + "h2-upload-\(getpid()).txt"
        try big.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        // `-T -`-style unknown length: curl sends DATA without content-length.
        let chunked = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: \(serviceHost)", "-H", "Content-Length:",
                                   "-X", "POST", "-T", path, base + "/v1/models/x:predict"])
        XCTAssertEqual(chunked.status, 0, chunked.err)
        XCTAssertTrue(chunked.out.hasPrefix("HTTP/2 200"), chunked.out)
        XCTAssertTrue(chunked.out.contains("x-framing: chunked"), chunked.out)
        XCTAssertTrue(chunked.out.hasSuffix("\r\n\r\n\(200 * 1024)"), chunked.out)
        let sized = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: \(serviceHost)", "--data-binary", "@" + path,
                                 base + "/v1/models/x:predict"])
        XCTAssertTrue(sized.out.contains("x-framing: content-length: \(200 * 1024)"), sized.out)
        XCTAssertTrue(sized.out.contains("x-proto: x-forwarded-proto: http"), sized.out)
        XCTAssertTrue(sized.out.hasSuffix("\r\n\r\n\(200 * 1024)"), sized.out)

        let unknown = try runCurl(["--http2-prior-knowledge", "-i", "-H", "Host: nope.example.com", base + "/"])
        XCTAssertTrue(unknown.out.hasPrefix("HTTP/2 404"), unknown.out)
        XCTAssertTrue(unknown.out.contains("content-type: application/json"), unknown.out)
        XCTAssertTrue(unknown.out.hasSuffix("{\"error\": \"no InferenceService serves this host\"}"), unknown.out)
    }
}
