// Tests of WallClock: the RFC 3339 text of known instants (epoch, a leap day, far dates) and of now.
import Foundation
import XCTest
@testable import SluiceIO

final class WallClockTests: XCTestCase {
    func text(_ seconds: Int, _ nanoseconds: Int) -> String {
        var bytes: [UInt8] = []
        WallClock.appendRFC3339(seconds: seconds, nanoseconds: nanoseconds, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    func testKnownInstantsInUTCWithMicroseconds() {
        XCTAssertEqual(text(0, 0), "1970-01-01T00:00:00.000000Z")
        XCTAssertEqual(text(1_790_000_000, 123_456_789), "2026-09-21T14:13:20.123456Z", "the fraction is truncated, not rounded")
        XCTAssertEqual(text(1_709_251_199, 999_999_999), "2024-02-29T23:59:59.999999Z")
        XCTAssertEqual(text(4_102_444_799, 1_000), "2099-12-31T23:59:59.000001Z")
    }

    func testNowIsTheSystemClockAndParsesAsRFC3339() throws {
        let before = Date()
        let now = WallClock.rfc3339()
        let after = Date()
        XCTAssertEqual(now.utf8.count, 27)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try XCTUnwrap(formatter.date(from: now), now)
        // ISO8601DateFormatter keeps milliseconds; allow that truncation on either side.
        XCTAssertGreaterThanOrEqual(parsed.timeIntervalSince(before), -0.002)
        XCTAssertLessThanOrEqual(parsed.timeIntervalSince(after), 0.002)
    }
}
