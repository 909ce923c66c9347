// Control layer: `kubectl get isvc` as a table, filled from the objects exactly as KServe's printer columns are.
import Foundation

/// Renders `get isvc` output from `-o json`-shaped objects, so the CLI can print what the admin API returns.
/// Columns are the InferenceService CRD's `additionalPrinterColumns`:
/// URL `.status.url`, READY `.status.conditions[?(@.type=='Ready')].status`,
/// PREV / PREVROLLEDOUTREVISION `.status.components.predictor.traffic[?(@.tag=='prev')].percent|revisionName`,
/// LATEST / LATESTREADYREVISION `…traffic[?(@.latestRevision==true)].percent|revisionName`, AGE from
/// `.metadata.creationTimestamp`. A missing value prints as an empty cell, as the server-side table does.
public enum IsvcTable {
    public static let header = ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"]

    /// One line per object, after the header; `allNamespaces` adds NAMESPACE first (`-A`).
    /// Empty input renders nothing: kubectl then says "No resources found" on stderr, the caller's job.
    public static func render(_ resources: [JSONValue], allNamespaces: Bool = false, now: Date) -> String {
        guard !resources.isEmpty else { return "" }
        var rows = [allNamespaces ? ["NAMESPACE"] + header : header]
        for resource in resources {
            let traffic = resource["status"]?["components"]?["predictor"]?["traffic"]?.arrayValue ?? []
            let prev = traffic.first { $0["tag"]?.stringValue == "prev" }
            let latest = traffic.first { $0["latestRevision"]?.boolValue == true }
            let ready = resource["status"]?["conditions"]?.arrayValue?
                .first { $0["type"]?.stringValue == "Ready" }?["status"]?.stringValue ?? ""
            let created = resource["metadata"]?["creationTimestamp"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:))
            var row = [
                resource["metadata"]?["name"]?.stringValue ?? "",
                resource["status"]?["url"]?.stringValue ?? "",
                ready,
                prev?["percent"]?.intValue.map(String.init) ?? "",
                latest?["percent"]?.intValue.map(String.init) ?? "",
                prev?["revisionName"]?.stringValue ?? "",
                latest?["revisionName"]?.stringValue ?? "",
                created.map { KubectlText.age(from: $0, to: now) } ?? "<unknown>",
            ]
            if allNamespaces { row.insert(resource["metadata"]?["namespace"]?.stringValue ?? "", at: 0) }
            rows.append(row)
        }
        return KubectlText.table(rows)
    }
}
