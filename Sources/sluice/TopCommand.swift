// `sluice top isvc [NAME]`: per revision, its share, requests per second, success rate and p50/p99 over the last
// minute, from the gateway's own metrics — what an operator reads before applying the promote.
import ArgumentParser
import Foundation
import SluiceControl

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "top", abstract: "Show each revision's traffic, success rate and latency over the last minute.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc") var kind: String
    @Argument(help: "The InferenceService's name (all of the namespace's when left out).") var name: String?
    @Option(name: .shortAndLong, help: "Output: json.") var output: String?

    func run() throws {
        try runAdmin {
            try requireInferenceServiceKind(kind)
            let path = name.map { "/namespaces/\(admin.namespace)/inferenceservices/\($0)/top" } ?? "/namespaces/\(admin.namespace)/top"
            let (_, json) = try admin.call("GET", path)
            if output == "json" { print(json?.jsonText ?? "{}"); return }
            if let output { throw CLIFailure("unable to match a printer suitable for the output format \"\(output)\", allowed formats are: json") }
            let items = json?["items"]?.arrayValue ?? []
            guard !items.isEmpty else {
                FileHandle.standardError.write(Data("No revisions with metrics found in \(admin.namespace) namespace.\n".utf8))
                return
            }
            print(Self.render(items, window: json?["windowSeconds"].flatMap(Self.number) ?? 0))
        }
    }

    static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .double(let d): d
        case .int(let i): Double(i)
        default: nil
        }
    }

    /// kubectl-style columns; `-` where there is nothing to say (no requests in the window).
    static func render(_ items: [JSONValue], window: Double) -> String {
        var lines = [["NAME", "REVISION", "TAG", "TRAFFIC", "SHARE", "RPS", "SUCCESS", "P50", "P99"]]
        for item in items {
            guard let row = RevisionTopRow(json: item) else { continue }
            let percent = item["percent"].flatMap(number).map { "\(Int($0))%" } ?? "-"
            lines.append([row.service, row.revision, item["tag"]?.stringValue ?? "-", percent,
                          row.share.map { String(format: "%.1f%%", $0 * 100) } ?? "-",
                          String(format: "%.1f", row.requestsPerSecond),
                          row.successRate.map { String(format: "%.2f%%", $0 * 100) } ?? "-",
                          row.p50.map(duration) ?? "-", row.p99.map(duration) ?? "-"])
        }
        return KubectlText.table(lines) + "(over the last \(Int(window.rounded())) s)"
    }

    /// 850µs, 12.3ms, 1.25s.
    static func duration(_ seconds: Double) -> String {
        if seconds < 0.001 { return String(format: "%.0fµs", seconds * 1e6) }
        if seconds < 1 { return String(format: "%.1fms", seconds * 1e3) }
        return String(format: "%.2fs", seconds)
    }
}
