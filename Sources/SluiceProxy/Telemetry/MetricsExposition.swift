// Proxy layer: the Prometheus text format (0.0.4) and OpenMetrics 1.0 writer every /metrics family is written with.

/// What a family is, in both formats' words.
public enum MetricType: Sendable {
    case counter
    case gauge
    case histogram

    var word: String {
        switch self {
        case .counter: "counter"
        case .gauge: "gauge"
        case .histogram: "histogram"
        }
    }
}

/// A label set rendered once as `name="value",name="value"` (no braces), so a scrape copies bytes instead of
/// escaping and joining strings per sample. Build these when the set of series changes, not per scrape.
public struct MetricLabels: Sendable, Hashable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public init(_ pairs: KeyValuePairs<String, String>) {
        for (name, value) in pairs { append(name, value) }
    }

    public init(_ pairs: [(String, String)]) {
        for (name, value) in pairs { append(name, value) }
    }

    /// Adds one label; the value is escaped as both formats require (`\\`, `\"`, `\n`).
    public mutating func append(_ name: String, _ value: String) {
        if !bytes.isEmpty { bytes.append(UInt8(ascii: ",")) }
        bytes.append(contentsOf: name.utf8)
        bytes.append(contentsOf: "=\"".utf8)
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\""): bytes.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\n"): bytes.append(contentsOf: "\\n".utf8)
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public func appending(_ name: String, _ value: String) -> MetricLabels {
        var copy = self
        copy.append(name, value)
        return copy
    }

    public var isEmpty: Bool { bytes.isEmpty }
}

/// Writes one scrape's text. Families are started with `family`, then given samples; `finish` returns the bytes.
///
/// The two formats differ where this writer hides it: OpenMetrics names a counter family without `_total` in its
/// TYPE and HELP lines (its samples keep it) and ends with `# EOF`; Prometheus 0.0.4 names the family as its samples.
public struct MetricsExposition {
    public enum Format: Sendable {
        /// `text/plain; version=0.0.4` (what Prometheus asks for when OpenMetrics is not preferred).
        case prometheus
        /// `application/openmetrics-text; version=1.0.0`.
        case openMetrics

        public var contentType: String {
            switch self {
            case .prometheus: "text/plain; version=0.0.4; charset=utf-8"
            case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }

        /// OpenMetrics when the client's Accept lists it (Prometheus sends it first by default), else 0.0.4.
        public static func negotiate(accept: String?) -> Format {
            guard let accept else { return .prometheus }
            for part in accept.split(separator: ",") {
                let mediaType = part.split(separator: ";").first.map { $0.trimmingSpaces() } ?? ""
                if mediaType.lowercased() == "application/openmetrics-text" {
                    // `q=0` means "not this one" (RFC 9110 §12.4.2).
                    let refused = part.split(separator: ";").dropFirst().contains { $0.trimmingSpaces().replacing(" ", with: "") == "q=0" }
                    return refused ? .prometheus : .openMetrics
                }
            }
            return .prometheus
        }
    }

    public let format: Format
    public private(set) var bytes: [UInt8] = []
    /// The current family's sample name stem: `sluice_requests_total` for a counter `sluice_requests`.
    private var counterSampleName: [UInt8] = []
    private var sampleStem: [UInt8] = []

    public init(format: Format, reservingCapacity: Int = 16 * 1024) {
        self.format = format
        bytes.reserveCapacity(reservingCapacity)
    }

    /// Starts a family. `name` is the family name without `_total` (for a counter the writer adds it where the
    /// format wants it); base units in the name (`_seconds`, `_bytes`), as Prometheus' naming rules say.
    public mutating func family(_ name: String, _ type: MetricType, help: String) {
        let typeName = (type == .counter && format == .prometheus) ? name + "_total" : name
        bytes.append(contentsOf: "# HELP ".utf8)
        bytes.append(contentsOf: typeName.utf8)
        bytes.append(UInt8(ascii: " "))
        for byte in help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\n"): bytes.append(contentsOf: "\\n".utf8)
            default: bytes.append(byte)
            }
        }
        bytes.append(contentsOf: "\n# TYPE ".utf8)
        bytes.append(contentsOf: typeName.utf8)
        bytes.append(UInt8(ascii: " "))
        bytes.append(contentsOf: type.word.utf8)
        bytes.append(UInt8(ascii: "\n"))
        sampleStem = Array(name.utf8)
        counterSampleName = sampleStem + Array("_total".utf8)
    }

    /// A sample of the current counter family.
    public mutating func counter(_ labels: MetricLabels, _ value: UInt64) {
        sampleStart(counterSampleName, labels)
        appendInteger(value)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// A sample of the current gauge family.
    public mutating func gauge(_ labels: MetricLabels, _ value: Double) {
        sampleStart(sampleStem, labels)
        appendNumber(value)
        bytes.append(UInt8(ascii: "\n"))
    }

    public mutating func gauge(_ labels: MetricLabels, _ value: Int) {
        sampleStart(sampleStem, labels)
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        appendInteger(value.magnitude.toUInt64)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// A sample of the current histogram family: `upperBounds[i]` is the `le` text of `cumulativeCounts[i]`
    /// (without `+Inf`, which is `count`). Pre-rendered bounds keep a large scrape free of float formatting.
    public mutating func histogram(_ labels: MetricLabels, upperBounds: [[UInt8]], cumulativeCounts: [UInt64],
                                   count: UInt64, sum: Double) {
        precondition(upperBounds.count == cumulativeCounts.count, "one cumulative count per bound")
        let bucket = sampleStem + Array("_bucket".utf8)
        for (bound, cumulative) in zip(upperBounds, cumulativeCounts) {
            histogramBucket(bucket, labels, le: bound, cumulative)
        }
        histogramBucket(bucket, labels, le: Array("+Inf".utf8), count)
        sampleStart(sampleStem + Array("_sum".utf8), labels)
        appendNumber(sum)
        bytes.append(UInt8(ascii: "\n"))
        sampleStart(sampleStem + Array("_count".utf8), labels)
        appendInteger(count)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// One `_bucket` line; for writers that walk their own bucket arrays (the per-revision histograms).
    public mutating func histogramBucket(_ bucketName: [UInt8], _ labels: MetricLabels, le: [UInt8], _ cumulative: UInt64) {
        bytes.append(contentsOf: bucketName)
        bytes.append(UInt8(ascii: "{"))
        if !labels.isEmpty {
            bytes.append(contentsOf: labels.bytes)
            bytes.append(UInt8(ascii: ","))
        }
        bytes.append(contentsOf: "le=\"".utf8)
        bytes.append(contentsOf: le)
        bytes.append(contentsOf: "\"} ".utf8)
        appendInteger(cumulative)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// The scrape's bytes (OpenMetrics: with its `# EOF`).
    public mutating func finish() -> [UInt8] {
        if format == .openMetrics { bytes.append(contentsOf: "# EOF\n".utf8) }
        return bytes
    }

    /// The text of an `le` bound as both formats read it: the shortest decimal that round-trips (`0.005`, `1.0`).
    public static func boundText(_ value: Double) -> [UInt8] { Array(numberText(value).utf8) }

    private mutating func sampleStart(_ name: [UInt8], _ labels: MetricLabels) {
        bytes.append(contentsOf: name)
        if !labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            bytes.append(contentsOf: labels.bytes)
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
    }

    /// Decimal digits without a String.
    public mutating func appendInteger(_ value: UInt64) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var v = value
        var n = 0
        repeat {
            digits[19 - n] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
            n += 1
        } while v > 0
        for i in (20 - n)..<20 { bytes.append(digits[i]) }
    }

    private mutating func appendNumber(_ value: Double) {
        if value == value.rounded(), value.magnitude < 1e15 {
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            appendInteger(UInt64(value.magnitude))
        } else {
            bytes.append(contentsOf: Self.numberText(value).utf8)
        }
    }

    private static func numberText(_ value: Double) -> String {
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value.isNaN { return "NaN" }
        return "\(value)"
    }
}

private extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}

private extension UInt {
    var toUInt64: UInt64 { UInt64(self) }
}
