// IO layer: the wall clock as RFC 3339 text (UTC, microseconds) for event and log lines, from clock_gettime and
// gmtime_r, without Foundation. `MonotonicClock` measures durations; this one only says when something happened.
import Glibc

public enum WallClock {
    /// Now, as seconds and nanoseconds since the Unix epoch (CLOCK_REALTIME).
    public static func now() -> (seconds: Int, nanoseconds: Int) {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return (spec.tv_sec, spec.tv_nsec)
    }

    /// Appends `2026-12-01T11:31:05.123456Z` (RFC 3339 §5.6, UTC, six fraction digits) for now.
    public static func appendRFC3339(to bytes: inout [UInt8]) {
        let (seconds, nanoseconds) = now()
        appendRFC3339(seconds: seconds, nanoseconds: nanoseconds, to: &bytes)
    }

    /// Appends the RFC 3339 text of an instant; the fraction is truncated to microseconds, as a clock reading is.
    public static func appendRFC3339(seconds: Int, nanoseconds: Int, to bytes: inout [UInt8]) {
        var time = time_t(seconds)
        var parts = tm()
        // gmtime_r fails only for years outside int's range; such a clock is broken, and the epoch says so plainly.
        if gmtime_r(&time, &parts) == nil { parts = tm(); parts.tm_year = 70; parts.tm_mday = 1 }
        appendDigits(Int(parts.tm_year) + 1900, count: 4, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(Int(parts.tm_mon) + 1, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(Int(parts.tm_mday), count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(Int(parts.tm_hour), count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(Int(parts.tm_min), count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        // tm_sec can be 60 only for a leap second, which CLOCK_REALTIME never reports (it repeats 59).
        appendDigits(Int(parts.tm_sec), count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "."))
        appendDigits(nanoseconds / 1_000, count: 6, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// The RFC 3339 text of now, for callers that want a String (not the data plane's hot path).
    public static func rfc3339() -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        appendRFC3339(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `value` in exactly `count` decimal digits, zero-padded on the left (the value is never wider).
    private static func appendDigits(_ value: Int, count: Int, to bytes: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<count { divisor *= 10 }
        var rest = max(0, value)
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8((rest / divisor) % 10))
            rest %= divisor
            divisor /= 10
        }
    }
}
