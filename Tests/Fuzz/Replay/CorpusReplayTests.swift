// Replays every input kept under Tests/Fuzz/corpus/<target>/ (the seeds, and the reproducers of crashes the fuzzers
// found) through the fuzz targets' own per-input checks, so `swift test` keeps what fuzzing established.
import Foundation
import SluiceFuzzChecks
import XCTest

final class CorpusReplayTests: XCTestCase {
    func testEveryRequestParserInputKeepsItsInvariants() throws {
        try replay("h1-request", minimum: 200, RequestParserCheck.check)
    }

    func testEveryResponseParserInputKeepsItsInvariants() throws {
        try replay("h1-response", minimum: 50, ResponseParserCheck.check)
    }

    func testEveryChunkedBodyInputKeepsItsInvariants() throws {
        try replay("chunked", minimum: 20, ChunkedDecoderCheck.check)
    }

    func testEveryH2SessionInputKeepsItsInvariants() throws {
        try replay("h2-session", minimum: 10, H2SessionCheck.check)
    }

    /// Runs each file of `corpus/<directory>` through `check`; `minimum` guards against a replay of nothing (a
    /// moved directory would otherwise pass).
    private func replay(_ directory: String, minimum: Int, _ check: (UnsafeRawBufferPointer) throws(FuzzViolation) -> Void) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("corpus").appendingPathComponent(directory)
        let names = try FileManager.default.contentsOfDirectory(atPath: root.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, minimum, "corpus/\(directory) has \(names.count) inputs")
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: root.appendingPathComponent(name)))
            do {
                try bytes.withUnsafeBytes { try check($0) }
            } catch {
                XCTFail("corpus/\(directory)/\(name): \(error)")
            }
        }
    }
}
