// Proxy layer: one structured event line — `{"time":…,"level":…,"event":…, fields…}` and a newline — the format
// of every operator-facing line Sluice writes to stderr, data plane and control plane alike. No Foundation, so the
// workers can use it; it allocates, so it is for events (a paused listener, a pod's bad certificate), never per request.
import SluiceIO

/// How much an event matters; the words are the usual log levels.
public enum EventLevel: Sendable {
    case info
    case warning
    case error

    public var word: String {
        switch self {
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }
}

/// Builds one JSON object per line. `time` (RFC 3339, UTC, microseconds), `level` and `event` (a stable dotted
/// name such as `accept.paused`) come first, in that order, so that `grep '"event":"…"'` and `jq` both work.
public struct EventLine {
    public private(set) var bytes: [UInt8] = []

    /// Starts a line stamped now.
    public init(level: EventLevel, event: String) {
        bytes.reserveCapacity(256)
        bytes.append(contentsOf: #"{"time":""#.utf8)
        WallClock.appendRFC3339(to: &bytes)
        bytes.append(contentsOf: #"","level":""#.utf8)
        bytes.append(contentsOf: level.word.utf8)
        bytes.append(contentsOf: #"","event":"#.utf8)
        Self.appendString(event, to: &bytes)
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        Self.appendString(value, to: &bytes)
    }

    public mutating func field(_ name: String, _ value: Int) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// A value that is already JSON text (an array or object the caller rendered); not checked.
    public mutating func field(_ name: String, json: [UInt8]) {
        key(name)
        bytes.append(contentsOf: json)
    }

    /// The finished line, newline included.
    public func finished() -> [UInt8] {
        var line = bytes
        line.append(contentsOf: "}\n".utf8)
        return line
    }

    /// Writes the line to standard error in one write(2) (lines of concurrent threads do not mix).
    public func write() {
        let line = finished()
        line.withUnsafeBytes { Posix.writeStderr($0) }
    }

    private mutating func key(_ name: String) {
        bytes.append(UInt8(ascii: ","))
        Self.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// A JSON string (RFC 8259 §7): quote, backslash and the control characters escaped; other UTF-8 as is.
    public static func appendString(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): bytes.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): bytes.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): bytes.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): bytes.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: #"\u00"#.utf8)
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
