// Unit: metav1.Time text read back without a formatter gives the formatter's instant, across years, leap days and
// month ends; other forms (offsets, fractions) still parse, and nonsense does not.
@testable import SluiceControl
import Foundation
import XCTest

final class KubectlTextTests: XCTestCase {
    func testTimestampsReadAsTheISO8601FormatterReadsThem() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var instant = Date(timeIntervalSince1970: -86_400 * 400)  // 1968: before the epoch too
        while instant.timeIntervalSince1970 < 5_000_000_000 {
            let text = formatter.string(from: instant)
            XCTAssertEqual(KubectlText.date(fromTimestamp: text), formatter.date(from: text), text)
            instant += 86_400 * 29 + 3_777  // every month end and leap day gets visited over the years
        }
        XCTAssertEqual(KubectlText.date(fromTimestamp: "2024-02-29T23:59:59Z"), formatter.date(from: "2024-02-29T23:59:59Z"))
        XCTAssertEqual(KubectlText.date(fromTimestamp: "2026-12-01T22:00:00+01:00"), formatter.date(from: "2026-12-01T21:00:00Z"))
        XCTAssertNil(KubectlText.date(fromTimestamp: "2026-13-01T22:00:00Z"))
        XCTAssertNil(KubectlText.date(fromTimestamp: "yesterday"))
    }
}
