// Unit: the `traceparent` parser — the valid and invalid values of W3C Trace Context Level 1 (§3.2), including
// its rules for versions after 00.
import SluiceProxy
import XCTest

final class TraceContextTests: XCTestCase {
    static let traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let spanId = "00f067aa0ba902b7"

    func testAVersion00ValueIsContinuedWithItsIdsAndSampledFlag() throws {
        let sampled = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(Self.traceId)-\(Self.spanId)-01"))
        XCTAssertEqual(sampled.traceIdHex, Self.traceId)
        XCTAssertEqual(sampled.parentSpanIdHex, Self.spanId, "the caller's span becomes our parent")
        XCTAssertTrue(sampled.isSampled)
        XCTAssertTrue(sampled.isContinued)
        XCTAssertTrue(sampled.hasTrace)
        let unsampled = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(Self.traceId)-\(Self.spanId)-00"))
        XCTAssertFalse(unsampled.isSampled)
        // Flags other than sampled are not defined by Level 1 and are sent on as zero.
        let otherFlags = try XCTUnwrap(TraceContext.parse(traceparent: "00-\(Self.traceId)-\(Self.spanId)-09"))
        XCTAssertEqual(otherFlags.flags, 1)
        XCTAssertEqual(try XCTUnwrap(TraceContext.parse(traceparent: "00-\(Self.traceId)-\(Self.spanId)-fe")).flags, 0)
    }

    func testInvalidValuesAreRefused() {
        let invalid = [
            "",
            "00-\(Self.traceId)-\(Self.spanId)-0",  // one flags digit short
            "00-\(Self.traceId)-\(Self.spanId)-01-extra",  // version 00 is exactly 55 characters
            "00-\(Self.traceId.uppercased())-\(Self.spanId)-01",  // uppercase hex
            "00-\(Self.traceId)-\(Self.spanId.uppercased())-01",
            "00-\(Self.traceId)-\(Self.spanId)-0A",
            "0A-\(Self.traceId)-\(Self.spanId)-01",
            "00-00000000000000000000000000000000-\(Self.spanId)-01",  // all-zero trace id
            "00-\(Self.traceId)-0000000000000000-01",  // all-zero parent id
            "ff-\(Self.traceId)-\(Self.spanId)-01",  // version ff is invalid
            "00_\(Self.traceId)-\(Self.spanId)-01",  // separators
            "00-\(Self.traceId)_\(Self.spanId)-01",
            "00-\(Self.traceId)-\(Self.spanId)_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-\(Self.spanId)-01",  // not hex
            "00-\(Self.traceId)-00f067aa0ba902bz-01",
            "00-abc-def-01",
            " 00-\(Self.traceId)-\(Self.spanId)-01",
            "cc-\(Self.traceId)-\(Self.spanId)-01.what-the-future-will-be-like",  // a future version: "-" after flags
            "cc-\(Self.traceId)-\(Self.spanId)-0",  // a future version shorter than 55
        ]
        for value in invalid {
            XCTAssertNil(TraceContext.parse(traceparent: value), value)
        }
    }

    func testAFutureVersionIsParsedAsFarAsVersion00Goes() throws {
        let longer = try XCTUnwrap(TraceContext.parse(traceparent: "cc-\(Self.traceId)-\(Self.spanId)-01-what-the-future-will-be-like"))
        XCTAssertEqual(longer.traceIdHex, Self.traceId)
        XCTAssertEqual(longer.parentSpanIdHex, Self.spanId)
        XCTAssertTrue(longer.isSampled)
        let same = try XCTUnwrap(TraceContext.parse(traceparent: "01-\(Self.traceId)-\(Self.spanId)-00"))
        XCTAssertFalse(same.isSampled)
        XCTAssertEqual(same.traceIdHex, Self.traceId)
    }

    func testNoContextHasNoTrace() {
        let none = TraceContext()
        XCTAssertFalse(none.hasTrace)
        XCTAssertEqual(none.traceIdHex, String(repeating: "0", count: 32))
    }
}
