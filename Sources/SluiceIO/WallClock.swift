// IO layer: the wall clock as RFC 3339 text (UTC, microseconds) for event and log lines, from clock_gettime and
// calendar arithmetic, without Foundation. `MonotonicClock` measures durations; this one only says when something happened.
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

    /// The UTC calendar fields of a Unix time — H. Hinnant's `civil_from_days`, arithmetic only: no libc time
    /// functions (gmtime_r takes glibc's time zone lock), so the data plane's access log can use it too.
    public static func civil(seconds: Int64) -> (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = Int(yoe + era * 400 + (month <= 2 ? 1 : 0))
        return (year, month, day, secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60)
    }

    /// Appends the RFC 3339 text of an instant; the fraction is truncated to microseconds, as a clock reading is.
    public static func appendRFC3339(seconds: Int, nanoseconds: Int, to bytes: inout [UInt8]) {
        let t = civil(seconds: Int64(seconds))
        appendDigits(t.year, count: 4, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(t.month, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "-"))
        appendDigits(t.day, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        appendDigits(t.hour, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(t.minute, count: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        // CLOCK_REALTIME never reports a leap second (it repeats 59), so the second is always 0...59.
        appendDigits(t.second, count: 2, to: &bytes)
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
