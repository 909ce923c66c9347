// Test support: a scrape's samples by series (`name{labels}` exactly as written), for asserting on /metrics text.
import Foundation

struct MetricsText {
    let text: String
    /// `sluice_config_reloads_total{result="ok"}` → 1.
    let samples: [String: Double]

    init(_ body: [UInt8]) {
        text = String(decoding: body, as: UTF8.self)
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            samples[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        self.samples = samples
    }

    subscript(series: String) -> Double? { samples[series] }

    /// The TYPE line's word for `family`, as written in this format.
    func type(of family: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("# TYPE \(family) ") }.map { String($0.split(separator: " ")[3]) }
    }
}
