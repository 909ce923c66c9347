// Test support: a strict reader of /metrics text (Prometheus 0.0.4 or OpenMetrics 1.0) that rejects what either
// format forbids, sample look-ups by labels, `histogram_quantile` as Prometheus computes it, and promtool.
import Foundation
import SluiceProxy
import XCTest

struct MetricsFormatError: Error, CustomStringConvertible {
    let line: Int
    let reason: String
    var description: String { "line \(line): \(reason)" }
}

struct MetricSample {
    let name: String
    let labels: [String: String]
    let value: Double
}

/// A parsed exposition. Checks, as both specifications say: HELP/TYPE before a family's samples, each family once
/// and contiguous, sample names of the family's type (`_total` counters, `_bucket`/`_sum`/`_count` histograms),
/// label names `[a-zA-Z_][a-zA-Z0-9_]*` once each, escapes `\\ \" \n` only, numeric values, no label set twice,
/// histogram buckets ascending by `le` with non-decreasing counts and a `+Inf` equal to `_count`, and for
/// OpenMetrics counter families named without `_total` and a final `# EOF`.
struct MetricsText {
    private(set) var samples: [MetricSample] = []
    private(set) var types: [String: String] = [:]

    init(_ bytes: [UInt8], format: MetricsExposition.Format) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasSuffix("\n") else { throw MetricsFormatError(line: 0, reason: "does not end with a newline") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()
        if format == .openMetrics {
            guard lines.last == "# EOF" else { throw MetricsFormatError(line: lines.count, reason: "no # EOF at the end") }
            lines.removeLast()
        }
        var family: String? = nil
        var familyType = ""
        var seenFamilies: Set<String> = []
        var seenSeries: Set<String> = []
        var helpFor: String? = nil
        for (number, line) in lines.enumerated() {
            let n = number + 1
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                guard let space = rest.firstIndex(of: " ") else { throw MetricsFormatError(line: n, reason: "HELP without text") }
                let name = String(rest[..<space])
                try Self.checkName(name, n)
                try Self.checkEscapes(String(rest[rest.index(after: space)...]), allowQuote: format == .prometheus, n)
                guard !seenFamilies.contains(name) else { throw MetricsFormatError(line: n, reason: "family \(name) appears twice") }
                helpFor = name
                continue
            }
            if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ").map(String.init)
                guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "unknown", "untyped"].contains(parts[1]) else {
                    throw MetricsFormatError(line: n, reason: "bad TYPE line")
                }
                guard helpFor == nil || helpFor == parts[0] else { throw MetricsFormatError(line: n, reason: "TYPE of another family than its HELP") }
                guard !seenFamilies.contains(parts[0]) else { throw MetricsFormatError(line: n, reason: "family \(parts[0]) appears twice") }
                if parts[1] == "counter" {
                    if format == .openMetrics && parts[0].hasSuffix("_total") { throw MetricsFormatError(line: n, reason: "OpenMetrics counter family named with _total") }
                    if format == .prometheus && !parts[0].hasSuffix("_total") { throw MetricsFormatError(line: n, reason: "counter without _total") }
                }
                seenFamilies.insert(parts[0])
                family = parts[0]
                familyType = parts[1]
                types[parts[0]] = parts[1]
                helpFor = nil
                continue
            }
            if line.hasPrefix("#") { throw MetricsFormatError(line: n, reason: "unknown comment line") }
            guard let family else { throw MetricsFormatError(line: n, reason: "sample before any TYPE") }
            let sample = try Self.parseSample(line, n)
            let allowed: [String]
            switch familyType {
            case "counter": allowed = format == .openMetrics ? [family + "_total", family + "_created"] : [family]
            case "histogram": allowed = [family + "_bucket", family + "_sum", family + "_count"]
            default: allowed = [family]
            }
            guard allowed.contains(sample.name) else { throw MetricsFormatError(line: n, reason: "\(sample.name) in family \(family)") }
            if familyType == "counter" && (sample.value < 0 || sample.value.isNaN) { throw MetricsFormatError(line: n, reason: "counter value \(sample.value)") }
            let seriesID = sample.name + "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
            guard seenSeries.insert(seriesID).inserted else { throw MetricsFormatError(line: n, reason: "series \(seriesID) twice") }
            samples.append(sample)
        }
        try checkHistograms()
    }

    private static func checkName(_ name: String, _ n: Int) throws {
        guard let first = name.unicodeScalars.first, first == "_" || first == ":" || (first.isASCII && first.properties.isAlphabetic),
              name.unicodeScalars.allSatisfy({ $0 == "_" || $0 == ":" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }) else {
            throw MetricsFormatError(line: n, reason: "bad metric name \(name)")
        }
    }

    private static func checkEscapes(_ text: String, allowQuote: Bool, _ n: Int) throws {
        var chars = text.makeIterator()
        while let c = chars.next() {
            if c == "\\" {
                guard let e = chars.next(), e == "\\" || e == "n" || e == "\"" else { throw MetricsFormatError(line: n, reason: "bad escape in HELP") }
            } else if c == "\"" && !allowQuote {
                throw MetricsFormatError(line: n, reason: "unescaped quote in OpenMetrics HELP")
            }
        }
    }

    private static func parseSample(_ line: String, _ n: Int) throws -> MetricSample {
        let chars = Array(line.unicodeScalars)
        var i = 0
        var name = ""
        while i < chars.count, chars[i] != "{", chars[i] != " " { name.unicodeScalars.append(chars[i]); i += 1 }
        try checkName(name, n)
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while i < chars.count, chars[i] != "}" {
                var label = ""
                while i < chars.count, chars[i] != "=" { label.unicodeScalars.append(chars[i]); i += 1 }
                guard !label.isEmpty, label.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }),
                      !("0"..."9").contains(label.unicodeScalars.first!) else {
                    throw MetricsFormatError(line: n, reason: "bad label name \(label)")
                }
                guard i + 1 < chars.count, chars[i + 1] == "\"" else { throw MetricsFormatError(line: n, reason: "label value not quoted") }
                i += 2
                var value = ""
                while true {
                    guard i < chars.count else { throw MetricsFormatError(line: n, reason: "unterminated label value") }
                    let c = chars[i]
                    if c == "\"" { i += 1; break }
                    if c == "\\" {
                        guard i + 1 < chars.count else { throw MetricsFormatError(line: n, reason: "bad escape") }
                        switch chars[i + 1] {
                        case "\\": value += "\\"
                        case "\"": value += "\""
                        case "n": value += "\n"
                        default: throw MetricsFormatError(line: n, reason: "bad escape in label value")
                        }
                        i += 2
                        continue
                    }
                    value.unicodeScalars.append(c)
                    i += 1
                }
                guard labels[label] == nil else { throw MetricsFormatError(line: n, reason: "label \(label) twice") }
                labels[label] = value
                if i < chars.count, chars[i] == "," { i += 1 }
            }
            guard i < chars.count else { throw MetricsFormatError(line: n, reason: "unterminated labels") }
            i += 1
        }
        guard i < chars.count, chars[i] == " " else { throw MetricsFormatError(line: n, reason: "no space before the value") }
        let valueText = String(String.UnicodeScalarView(chars[(i + 1)...]))
        guard let value = Self.number(valueText) else { throw MetricsFormatError(line: n, reason: "bad value \(valueText)") }
        return MetricSample(name: name, labels: labels, value: value)
    }

    static func number(_ text: String) -> Double? {
        switch text {
        case "+Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return text.contains(" ") ? nil : Double(text)
        }
    }

    private func checkHistograms() throws {
        for (family, type) in types where type == "histogram" {
            var byLabels: [[String: String]: [(Double, Double)]] = [:]
            for s in samples where s.name == family + "_bucket" {
                guard let le = s.labels["le"], let bound = Self.number(le) else { throw MetricsFormatError(line: 0, reason: "bucket without le in \(family)") }
                var rest = s.labels
                rest["le"] = nil
                byLabels[rest, default: []].append((bound, s.value))
            }
            for (labels, buckets) in byLabels {
                guard buckets.map(\.0) == buckets.map(\.0).sorted(), Set(buckets.map(\.0)).count == buckets.count else {
                    throw MetricsFormatError(line: 0, reason: "\(family)\(labels): buckets not ascending")
                }
                guard zip(buckets, buckets.dropFirst()).allSatisfy({ $0.1 <= $1.1 }) else {
                    throw MetricsFormatError(line: 0, reason: "\(family)\(labels): cumulative counts go down")
                }
                guard let inf = buckets.last, inf.0 == .infinity else { throw MetricsFormatError(line: 0, reason: "\(family)\(labels): no +Inf bucket") }
                let count = samples.first { $0.name == family + "_count" && $0.labels == labels }
                let sum = samples.first { $0.name == family + "_sum" && $0.labels == labels }
                guard let count, count.value == inf.1, sum != nil else {
                    throw MetricsFormatError(line: 0, reason: "\(family)\(labels): _count missing or not the +Inf bucket")
                }
            }
        }
    }

    /// Samples of `name` whose labels include `labels`.
    func matching(_ name: String, _ labels: [String: String] = [:]) -> [MetricSample] {
        samples.filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }
    }

    /// The sum of the matching samples (PromQL's `sum(name{labels})`).
    func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        matching(name, labels).reduce(0) { $0 + $1.value }
    }

    /// `histogram_quantile(q, sum by (le) (family_bucket{labels}))`, computed as Prometheus does: linear inside
    /// the bucket the rank falls in, the lower bound of the first bucket 0, the highest finite bound if it
    /// falls in +Inf.
    func quantile(_ q: Double, _ family: String, _ labels: [String: String] = [:]) -> Double? {
        var byBound: [Double: Double] = [:]
        for s in matching(family + "_bucket", labels) { byBound[Self.number(s.labels["le"]!)!, default: 0] += s.value }
        let buckets = byBound.sorted { $0.key < $1.key }
        guard let total = buckets.last?.value, total > 0 else { return nil }
        let rank = q * total
        var previousBound = 0.0, previousCount = 0.0
        for (bound, count) in buckets {
            if count >= rank {
                if bound == .infinity { return previousBound }
                return previousBound + (bound - previousBound) * (rank - previousCount) / (count - previousCount)
            }
            previousBound = bound
            previousCount = count
        }
        return nil
    }
}

/// `promtool check metrics` on the text when Debian's prometheus package is installed (nil: not installed):
/// its lint output, empty when it has nothing to say.
func promtoolProblems(_ bytes: [UInt8]) throws -> String? {
    let path = "/usr/bin/promtool"
    guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["check", "metrics"]
    let input = Pipe(), output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let writer = Thread { input.fileHandleForWriting.write(Data(bytes)); try? input.fileHandleForWriting.close() }
    writer.start()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    // Istio's duration family is named in milliseconds on purpose (its dashboards query that name): promtool's
    // base-unit lint of it is the one finding that is expected, and only it is dropped.
    let findings = String(decoding: data, as: UTF8.self).split(separator: "\n")
        .filter { !$0.hasPrefix("istio_request_duration_milliseconds use base unit \"seconds\"") }
    if process.terminationStatus != 0 && findings.isEmpty && data.isEmpty { return "promtool exited \(process.terminationStatus)" }
    return findings.joined(separator: "\n")
}

extension Gateway {
    func scrape(_ format: MetricsExposition.Format = .prometheus) -> [UInt8] {
        var out = MetricsExposition(format: format)
        writeMetrics(into: &out)
        return out.finish()
    }

    /// Scrapes until `condition` holds (finish runs on the worker a moment after the client has its response),
    /// failing after `seconds`; returns the last scrape, parsed strictly.
    func waitForMetrics(seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line,
                        until condition: (MetricsText) -> Bool) throws -> MetricsText {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let text = try MetricsText(scrape(), format: .prometheus)
            if condition(text) { return text }
            if Date() > deadline {
                XCTFail("metrics did not reach the expected values in \(seconds) s", file: file, line: line)
                return text
            }
            usleep(5_000)
        }
    }
}
