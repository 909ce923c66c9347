// Control layer: one line of `sluice get revisions NAME`: a revision, where it runs, whether it is ready, its share.
import Foundation
import SluiceRouting

/// A revision as `get revisions` shows it. `percent` is what the data plane routes now (readiness applied),
/// `tags` the tags whose hosts reach it.
public struct RevisionRow: Equatable, Sendable {
    public var name: String
    public var endpoints: [Endpoint]
    public var isReady: Bool
    public var reason: String?
    public var percent: Int
    public var tags: [String]
    public var creationTimestamp: Date

    /// Columns `NAME ENDPOINTS READY REASON PERCENT TAGS AGE`, laid out as kubectl lays out tables.
    public static func render(_ rows: [RevisionRow], now: Date) -> String {
        guard !rows.isEmpty else { return "" }
        var lines = [["NAME", "ENDPOINTS", "READY", "REASON", "PERCENT", "TAGS", "AGE"]]
        for row in rows {
            lines.append([
                row.name,
                row.endpoints.isEmpty ? "<none>" : row.endpoints.map(\.description).joined(separator: ","),
                row.isReady ? "True" : "False",
                row.reason ?? "",
                "\(row.percent)%",
                row.tags.isEmpty ? "" : row.tags.joined(separator: ","),
                KubectlText.age(from: row.creationTimestamp, to: now),
            ])
        }
        return KubectlText.table(lines)
    }
}
