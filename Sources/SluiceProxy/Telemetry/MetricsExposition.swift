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
/// TYPE and HELP lines (its samples keep it), escapes `"` in HELP too, and ends with `# EOF`; Prometheus 0.0.4 names
/// the family as its samples. A 1 000-revision scrape is tens of megabytes: bytes go into one growing buffer with
/// memcpy, never through per-fragment array appends.
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

        /// OpenMetrics when the client's Accept prefers it (Prometheus lists it first by default) over the
        /// text format, else 0.0.4. Weights (`q`) count, `q=0` refuses; a tie goes to OpenMetrics.
        public static func negotiate(accept: String?) -> Format {
            guard let accept else { return .prometheus }
            var openMetrics = -1.0, text = -1.0
            for part in accept.split(separator: ",") {
                let fields = part.split(separator: ";")
                let mediaType = (fields.first.map { $0.trimmingSpaces() } ?? "").lowercased()
                var q = 1.0
                for field in fields.dropFirst() {
                    let parameter = field.trimmingSpaces().lowercased().replacing(" ", with: "")
                    if parameter.hasPrefix("q=") { q = Double(parameter.dropFirst(2)) ?? 0 }
                }
                switch mediaType {
                case "application/openmetrics-text": openMetrics = max(openMetrics, q)
                case "text/plain", "*/*", "text/*": text = max(text, q)
                default: break
                }
            }
            return openMetrics > 0 && openMetrics >= text ? .openMetrics : .prometheus
        }
    }

    public let format: Format
    private var storage: Storage
    /// The current family's sample names: `sluice_requests_total` for a counter `sluice_requests`, and the
    /// `_bucket`, `_sum`, `_count` names of a histogram.
    private var sampleName: [UInt8] = []
    private var bucketName: [UInt8] = []
    private var sumName: [UInt8] = []
    private var countName: [UInt8] = []

    public init(format: Format, reservingCapacity: Int = 16 * 1024) {
        self.format = format
        storage = Storage(capacity: reservingCapacity)
    }

    /// A streaming writer: whenever `chunkBytes` are buffered they go to `sink` (a socket write), so a scrape of
    /// any size holds one small, cache-warm buffer instead of growing (and page-faulting) one of tens of
    /// megabytes. `finish` hands the rest to `sink` and returns nothing.
    public init(format: Format, chunkBytes: Int, sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.format = format
        storage = Storage(capacity: max(chunkBytes, 4096))
        storage.sink = sink
    }

    /// The text so far (a copy).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The text so far, without a copy (valid inside `body` only).
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }

    /// Bytes written so far (those already handed to a sink included).
    public var count: Int { storage.flushed + storage.count }

    /// Starts a family. `name` is the family name without `_total` (for a counter the writer adds it where the
    /// format wants it); base units in the name (`_seconds`, `_bytes`), as Prometheus' naming rules say.
    public mutating func family(_ name: String, _ type: MetricType, help: String) {
        precondition(type != .counter || !name.hasSuffix("_total"), "counter family names go without _total")
        makeUnique()
        let typeName = (type == .counter && format == .prometheus) ? name + "_total" : name
        append("# HELP ")
        append(typeName)
        append(" ")
        for byte in help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\n"): append("\\n")
            case UInt8(ascii: "\"") where format == .openMetrics: append("\\\"")
            default: storage.append(byte)
            }
        }
        append("\n# TYPE ")
        append(typeName)
        append(" ")
        append(type.word)
        append("\n")
        let stem = Array(name.utf8)
        sampleName = type == .counter ? stem + Array("_total".utf8) : stem
        bucketName = stem + Array("_bucket".utf8)
        sumName = stem + Array("_sum".utf8)
        countName = stem + Array("_count".utf8)
    }

    /// A sample of the current counter family.
    public mutating func counter(_ labels: MetricLabels, _ value: UInt64) {
        makeUnique()
        sampleStart(sampleName, labels.bytes)
        appendInteger(value)
        storage.append(UInt8(ascii: "\n"))
    }

    /// A sample of the current counter family that is not a count (CPU seconds).
    public mutating func counter(_ labels: MetricLabels, real value: Double) {
        makeUnique()
        sampleStart(sampleName, labels.bytes)
        appendNumber(value)
        storage.append(UInt8(ascii: "\n"))
    }

    /// A sample of the current gauge family.
    public mutating func gauge(_ labels: MetricLabels, _ value: Double) {
        makeUnique()
        sampleStart(sampleName, labels.bytes)
        appendNumber(value)
        storage.append(UInt8(ascii: "\n"))
    }

    public mutating func gauge(_ labels: MetricLabels, _ value: Int) {
        makeUnique()
        sampleStart(sampleName, labels.bytes)
        if value < 0 { storage.append(UInt8(ascii: "-")) }
        appendInteger(UInt64(value.magnitude))
        storage.append(UInt8(ascii: "\n"))
    }

    /// A sample of the current histogram family: `upperBounds[i]` is the `le` text of `cumulativeCounts[i]`
    /// (without `+Inf`, which is `count`). Pre-rendered bounds keep a large scrape free of float formatting.
    public mutating func histogram(_ labels: MetricLabels, upperBounds: [[UInt8]], cumulativeCounts: [UInt64],
                                   count: UInt64, sum: Double) {
        precondition(upperBounds.count == cumulativeCounts.count, "one cumulative count per bound")
        for (bound, cumulative) in zip(upperBounds, cumulativeCounts) {
            histogramBucket(labels, le: bound, cumulative)
        }
        histogramEnd(labels, count: count, sum: sum)
    }

    /// One `_bucket` line of the current histogram family; for writers that walk their own bucket arrays.
    public mutating func histogramBucket(_ labels: MetricLabels, le: [UInt8], _ cumulative: UInt64) {
        makeUnique()
        storage.append(bucketName)
        storage.append(UInt8(ascii: "{"))
        if !labels.isEmpty {
            storage.append(labels.bytes)
            storage.append(UInt8(ascii: ","))
        }
        append("le=\"")
        storage.append(le)
        append("\"} ")
        appendInteger(cumulative)
        storage.append(UInt8(ascii: "\n"))
    }

    /// The `+Inf` bucket, `_sum` and `_count` lines that close a histogram sample.
    public mutating func histogramEnd(_ labels: MetricLabels, count: UInt64, sum: Double) {
        histogramBucket(labels, le: Self.infText, count)
        sampleStart(sumName, labels.bytes)
        appendNumber(sum)
        storage.append(UInt8(ascii: "\n"))
        sampleStart(countName, labels.bytes)
        appendInteger(count)
        storage.append(UInt8(ascii: "\n"))
    }

    /// The scrape's bytes (OpenMetrics: with its `# EOF`).
    public mutating func finish() -> [UInt8] {
        finishWithoutCopy()
        return bytes
    }

    /// Ends the text (OpenMetrics: `# EOF`) for `withUnsafeBytes` readers.
    public mutating func finishWithoutCopy() {
        makeUnique()
        if format == .openMetrics { append("# EOF\n") }
        storage.flush()
    }

    /// The text of an `le` bound as both formats read it: the shortest decimal that round-trips (`0.005`, `1.0`).
    public static func boundText(_ value: Double) -> [UInt8] { Array(numberText(value).utf8) }

    private static let infText = Array("+Inf".utf8)

    private mutating func sampleStart(_ name: [UInt8], _ labels: [UInt8]) {
        storage.append(name)
        if !labels.isEmpty {
            storage.append(UInt8(ascii: "{"))
            storage.append(labels)
            storage.append(UInt8(ascii: "}"))
        }
        storage.append(UInt8(ascii: " "))
    }

    private mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { storage.append(UnsafeRawBufferPointer($0)) }
    }

    /// Decimal digits without a String.
    public mutating func appendInteger(_ value: UInt64) {
        makeUnique()
        storage.appendInteger(value)
    }

    private mutating func appendNumber(_ value: Double) {
        if value == value.rounded(), value.magnitude < 1e15 {
            if value < 0 { storage.append(UInt8(ascii: "-")) }
            storage.appendInteger(UInt64(value.magnitude))
        } else {
            append(Self.numberText(value))
        }
    }

    private static func numberText(_ value: Double) -> String {
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value.isNaN { return "NaN" }
        return "\(value)"
    }

    /// A copy of the exposition shares nothing with the original once written to.
    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    /// The growing byte buffer.
    final class Storage {
        private(set) var base: UnsafeMutablePointer<UInt8>
        private(set) var count = 0
        private var capacity: Int
        /// Streaming: where full chunks go, and how many bytes went there.
        var sink: ((UnsafeRawBufferPointer) -> Void)?
        private(set) var flushed = 0

        init(capacity: Int) {
            self.capacity = max(capacity, 64)
            base = .allocate(capacity: self.capacity)
        }

        deinit { base.deallocate() }

        func copy() -> Storage {
            let other = Storage(capacity: capacity)
            other.base.update(from: base, count: count)
            other.count = count
            other.sink = sink
            other.flushed = flushed
            return other
        }

        @inline(__always) private func reserve(_ extra: Int) {
            if count + extra > capacity {
                if sink != nil { flush() }
                if count + extra > capacity { grow(count + extra) }
            }
        }

        /// Streaming: the buffered bytes go to the sink.
        func flush() {
            guard let sink, count > 0 else { return }
            sink(UnsafeRawBufferPointer(start: base, count: count))
            flushed += count
            count = 0
        }

        private func grow(_ needed: Int) {
            var next = capacity * 2
            while next < needed { next *= 2 }
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: next)
            bigger.update(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity = next
        }

        @inline(__always) func append(_ byte: UInt8) {
            reserve(1)
            base[count] = byte
            count += 1
        }

        @inline(__always) func append(_ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress, bytes.count > 0 else { return }
            reserve(bytes.count)
            UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: bytes.count)
            count += bytes.count
        }

        @inline(__always) func append(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { append($0) }
        }

        func appendInteger(_ value: UInt64) {
            reserve(20)
            if value < 10 {
                base[count] = UInt8(ascii: "0") + UInt8(value)
                count += 1
                return
            }
            var digits = 0
            var v = value
            while v > 0 { digits += 1; v /= 10 }
            v = value
            var at = count + digits - 1
            while v > 0 {
                base[at] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                at -= 1
            }
            count += digits
        }
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

