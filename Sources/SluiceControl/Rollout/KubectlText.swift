// Control layer: kubectl's table layout (tabwriter settings) and its AGE wording.
import Foundation

/// The two pieces of kubectl's printer that a table needs to look like kubectl's.
public enum KubectlText {
    /// kubectl's `printers.GetNewTabWriter`: `tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)`: a column is as
    /// wide as its widest cell plus 3 spaces, at least 6; the last column is not padded. `kubectl describe`'s
    /// sections use padding 2, no minimum, and indent their lines.
    public static func table(_ rows: [[String]], padding: Int = 3, minimumWidth: Int = 6, indent: String = "") -> String {
        guard let columns = rows.map(\.count).max(), columns > 0 else { return "" }
        var widths = Array(repeating: 0, count: columns)
        for row in rows {
            for (column, cell) in row.enumerated() where column < columns - 1 {
                widths[column] = max(widths[column], max(cell.count + padding, minimumWidth))
            }
        }
        var text = ""
        for row in rows {
            var line = indent
            for (column, cell) in row.enumerated() {
                line += column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }
            text += line + "\n"
        }
        return text
    }

    /// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, which kubectl uses for AGE.
    public static func age(from start: Date, to now: Date) -> String {
        let interval = now.timeIntervalSince(start)
        let seconds = Int(interval.rounded(.towardZero))
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 60 * 2 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 {
            let rest = seconds % 60
            return rest == 0 ? "\(minutes)m" : "\(minutes)m\(rest)s"
        }
        if minutes < 60 * 3 { return "\(minutes)m" }
        let hours = seconds / 3600
        if hours < 8 {
            let rest = minutes % 60
            return rest == 0 ? "\(hours)h" : "\(hours)h\(rest)m"
        }
        if hours < 48 { return "\(hours)h" }
        if hours < 24 * 8 {
            let rest = hours % 24
            return rest == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(rest)h"
        }
        if hours < 24 * 365 * 2 { return "\(hours / 24)d" }
        if hours < 24 * 365 * 8 {
            let days = (hours / 24) % 365
            return days == 0 ? "\(hours / 24 / 365)y" : "\(hours / 24 / 365)y\(days)d"
        }
        return "\(hours / 24 / 365)y"
    }

    public static func date(fromTimestamp text: String) -> Date? {
        // metav1.Time's own form (`2026-12-01T21:23:04Z`, what every timestamp here is) without a formatter: making
        // one per row was a third of a 1 000-row Table. Anything else (offsets, fractions) goes to the formatter.
        let b = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range { guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }; value = value * 10 + Int(b[i] - 0x30) }
            return value
        }
        if b.count == 20, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A, b[19] == 0x5A,
           let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
           let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
           (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 {
            // Days from the civil date (Howard Hinnant's days_from_civil), then seconds since 1970.
            let y = month <= 2 ? year - 1 : year
            let era = (y >= 0 ? y : y - 399) / 400
            let yoe = y - era * 400
            let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
            let days = era * 146_097 + doe - 719_468
            return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3600 + minute * 60 + second))
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
