// Unit: the state directory's lock during a takeover — the new process waits (bounded) for the old one to release
// it, and the old one writes nothing once it did.
import Foundation
import SluiceControl
import XCTest

final class StateStoreHandOverTests: XCTestCase {
    func directory() -> String { NSTemporaryDirectory() + "sluice-handover-\(UUID().uuidString)" }

    func testTheNewProcessWaitsForTheLockAndGetsItOnceReleased() throws {
        let dir = directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = try StateStore(directory: dir)
        XCTAssertThrowsError(try StateStore(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("in use by another sluice process"), "\(error)")
        }
        let started = Date()
        XCTAssertThrowsError(try StateStore(directory: dir, waitMs: 200), "still held after the wait") { error in
            XCTAssertTrue("\(error)".contains("still locked after 200 ms"), "\(error)")
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.19, "it did wait (to the millisecond)")

        let waiting = DispatchSemaphore(value: 0)
        let result = Result<StateStore, Error>.Box()
        DispatchQueue.global().async {
            result.value = Result { try StateStore(directory: dir, waitMs: 10_000) }
            waiting.signal()
        }
        XCTAssertEqual(waiting.wait(timeout: .now() + 0.3), .timedOut, "the new store waits while the old one holds the lock")
        old.unlock()
        XCTAssertEqual(waiting.wait(timeout: .now() + 5), .success, "and gets it once released")
        let new = try XCTUnwrap(result.value).get()
        try new.save(Data("{}".utf8))
    }

    func testAReleasedStoreWritesNothing() throws {
        let dir = directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = try StateStore(directory: dir)
        try old.save(Data(#"{"generation": 1}"#.utf8))
        old.unlock()
        let new = try StateStore(directory: dir)
        try new.save(Data(#"{"generation": 2}"#.utf8))
        XCTAssertThrowsError(try old.save(Data(#"{"generation": 0}"#.utf8))) { error in
            XCTAssertTrue("\(error)".contains("released"), "\(error)")
        }
        XCTAssertEqual(try new.load().map { String(decoding: $0, as: UTF8.self) }, #"{"generation": 2}"#)
    }
}

extension Result {
    /// A slot another thread fills before signalling (the semaphore orders the accesses).
    final class Box: @unchecked Sendable {
        var value: Result?
    }
}
