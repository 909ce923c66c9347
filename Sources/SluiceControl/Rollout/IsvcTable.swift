// Control layer: `kubectl get isvc` as a table, filled from the objects exactly as KServe's printer columns are —
// one row's values computed in one place, for the CLI's text and the admin API's meta.k8s.io Table alike.
import Foundation

/// Renders `get isvc` output from `-o json`-shaped objects, so the CLI can print what the admin API returns.
/// Columns are the InferenceService CRD's `additionalPrinterColumns` (kserve config/crd/full, all priority 0, so
/// `-o wide` shows the same ones): URL `.status.url`, READY `.status.conditions[?(@.type=='Ready')].status`,
/// PREV / PREVROLLEDOUTREVISION `.status.components.predictor.traffic[?(@.tag=='prev')].percent|revisionName`,
/// LATEST / LATESTREADYREVISION `…traffic[?(@.latestRevision==true)].percent|revisionName`, AGE from
/// `.metadata.creationTimestamp`. A missing value prints as an empty cell, as the server-side table does.
public enum IsvcTable {
    /// The CRD's printer columns after NAME: the name as declared (kubectl prints it upper-cased) and its type.
    public static let columns: [(name: String, type: String)] = [
        ("URL", "string"), ("Ready", "string"), ("Prev", "integer"), ("Latest", "integer"),
        ("PrevRolledoutRevision", "string"), ("LatestReadyRevision", "string"), ("Age", "date"),
    ]
    public static let header = ["NAME"] + columns.map { $0.name.uppercased() }

    /// One object's cells, each nil where its JSONPath finds nothing (the API server then sends null).
    public struct Row: Equatable, Sendable {
        public var namespace: String
        public var name: String
        public var url: String?
        public var ready: String?
        public var prevPercent: Int?
        public var latestPercent: Int?
        public var prevRevision: String?
        public var latestRevision: String?
        public var created: Date?

        public init(_ resource: JSONValue) {
            let traffic = resource["status"]?["components"]?["predictor"]?["traffic"]?.arrayValue ?? []
            // A JSONPath filter's first match, as the CRD's table convertor takes results[0][0].
            let prev = traffic.first { $0["tag"]?.stringValue == "prev" }
            let latest = traffic.first { $0["latestRevision"]?.boolValue == true }
            namespace = resource["metadata"]?["namespace"]?.stringValue ?? ""
            name = resource["metadata"]?["name"]?.stringValue ?? ""
            url = resource["status"]?["url"]?.stringValue
            ready = resource["status"]?["conditions"]?.arrayValue?.first { $0["type"]?.stringValue == "Ready" }?["status"]?.stringValue
            prevPercent = prev?["percent"]?.intValue
            latestPercent = latest?["percent"]?.intValue
            prevRevision = prev?["revisionName"]?.stringValue
            latestRevision = latest?["revisionName"]?.stringValue
            created = resource["metadata"]?["creationTimestamp"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:))
        }

        /// AGE as the table convertor words a `date` column: kubectl's HumanDuration, `<unknown>` without a time.
        public func age(now: Date) -> String {
            created.map { KubectlText.age(from: $0, to: now) } ?? "<unknown>"
        }

        /// The cells after NAME as kubectl prints them: empty where the server sends null.
        public func texts(now: Date) -> [String] {
            [url ?? "", ready ?? "", prevPercent.map(String.init) ?? "", latestPercent.map(String.init) ?? "",
             prevRevision ?? "", latestRevision ?? "", age(now: now)]
        }

        /// The cells after NAME as the API server sends them: strings, integers, null.
        public func cells(now: Date) -> [JSONValue] {
            func string(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
            func int(_ value: Int?) -> JSONValue { value.map(JSONValue.int) ?? .null }
            return [string(url), string(ready), int(prevPercent), int(latestPercent), string(prevRevision),
                    string(latestRevision), .string(age(now: now))]
        }
    }

    /// One line per object, after the header; `allNamespaces` adds NAMESPACE first (`-A`).
    /// Empty input renders nothing: kubectl then says "No resources found" on stderr, the caller's job.
    public static func render(_ resources: [JSONValue], allNamespaces: Bool = false, now: Date) -> String {
        guard !resources.isEmpty else { return "" }
        var rows = [allNamespaces ? ["NAMESPACE"] + header : header]
        for resource in resources {
            let row = Row(resource)
            rows.append((allNamespaces ? [row.namespace] : []) + [row.name] + row.texts(now: now))
        }
        return KubectlText.table(rows)
    }
}
