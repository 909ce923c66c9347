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
    static func age(from start: Date, to now: Date) -> String {
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

    static func date(fromTimestamp text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
