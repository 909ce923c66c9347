// Proxy layer: a request's W3C Trace Context (trace id, the gateway's span id, the caller's parent span id, flags),
// held inline in the request record — parsing `traceparent` (W3C Trace Context Level 1, with its rules for future
// versions), starting a trace, and rendering ids as lowercase hex without allocating.
import SluiceRouting

/// The ids of one request's span. `traceId` all zero means no trace context was made for the request.
public struct TraceContext: Sendable {
    public internal(set) var traceId = InlineArray<16, UInt8>(repeating: 0)
    /// The gateway's own span id: the parent sent to the pod.
    public internal(set) var spanId = InlineArray<8, UInt8>(repeating: 0)
    /// The caller's span id from its `traceparent`; all zero when the gateway started the trace.
    public internal(set) var parentSpanId = InlineArray<8, UInt8>(repeating: 0)
    /// The trace-flags byte (bit 0: sampled).
    public internal(set) var flags: UInt8 = 0
    /// The caller sent a valid `traceparent` (the trace was continued, not started).
    public internal(set) var isContinued = false

    public init() {}

    public var isSampled: Bool { flags & 1 != 0 }

    public var hasTrace: Bool {
        var any: UInt8 = 0
        for i in 0..<16 { any |= traceId[i] }
        return any != 0
    }

    // MARK: traceparent

    /// The length of a version 00 `traceparent` value (and of what we send): `00-` 32 hex `-` 16 hex `-` 2 hex.
    public static let traceparentLength = 55

    /// The context a caller's `traceparent` value continues: its trace id, its span id as our parent, its sampled
    /// flag; nil when the value is not valid (the trace is then restarted, as the specification says).
    ///
    /// W3C Trace Context Level 1 §3.2: lowercase hex only; version `ff` and all-zero ids are invalid; version 00
    /// is exactly 55 characters. A higher version is parsed as far as version 00 goes, when it is at least that
    /// long and what follows the flags is the end or a `-` (§3.2.4 "Versioning of traceparent"). Only the sampled
    /// bit is kept: the other flags are not defined by Level 1, which says they are sent as zero.
    public static func parse(traceparent value: UnsafeRawBufferPointer) -> TraceContext? {
        let n = value.count
        guard n >= traceparentLength else { return nil }
        guard let v0 = hexValue(value[0]), let v1 = hexValue(value[1]) else { return nil }
        let version = v0 << 4 | v1
        if version == 0xFF { return nil }
        if version == 0 && n != traceparentLength { return nil }
        if n > traceparentLength && value[traceparentLength] != 0x2D { return nil }
        guard value[2] == 0x2D, value[35] == 0x2D, value[52] == 0x2D else { return nil }
        var context = TraceContext()
        var anyTrace: UInt8 = 0, anyParent: UInt8 = 0
        for i in 0..<16 {
            guard let hi = hexValue(value[3 + 2 * i]), let lo = hexValue(value[4 + 2 * i]) else { return nil }
            context.traceId[i] = hi << 4 | lo
            anyTrace |= context.traceId[i]
        }
        for i in 0..<8 {
            guard let hi = hexValue(value[36 + 2 * i]), let lo = hexValue(value[37 + 2 * i]) else { return nil }
            context.parentSpanId[i] = hi << 4 | lo
            anyParent |= context.parentSpanId[i]
        }
        guard anyTrace != 0, anyParent != 0 else { return nil }
        guard let f0 = hexValue(value[53]), let f1 = hexValue(value[54]) else { return nil }
        context.flags = (f0 << 4 | f1) & 1
        context.isContinued = true
        return context
    }

    /// Allocating convenience for tests and tools.
    public static func parse(traceparent value: String) -> TraceContext? {
        var text = value
        return text.withUTF8 { parse(traceparent: UnsafeRawBufferPointer($0)) }
    }

    /// A lowercase hex digit's value (uppercase is invalid in `traceparent`).
    @inline(__always)
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c &- 0x30
        case 0x61...0x66: return c &- 0x61 &+ 10
        default: return nil
        }
    }

    /// Starts a new trace: a random trace id, no parent, sampled with probability `sampleRate`.
    mutating func start(random: inout FastRandom, sampleRate: Double) {
        var a = random.next(), b = random.next()
        while a | b == 0 { a = random.next(); b = random.next() }  // all zero is invalid (never in practice)
        for i in 0..<8 {
            traceId[i] = UInt8(truncatingIfNeeded: a >> (8 * i))
            traceId[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * i))
        }
        for i in 0..<8 { parentSpanId[i] = 0 }
        flags = random.chance(sampleRate) ? 1 : 0
        isContinued = false
        makeSpanId(random: &random)
    }

    /// The gateway's own span id (never all zero).
    mutating func makeSpanId(random: inout FastRandom) {
        var s = random.next()
        while s == 0 { s = random.next() }
        for i in 0..<8 { spanId[i] = UInt8(truncatingIfNeeded: s >> (8 * i)) }
    }

    /// The `traceparent` sent to the pod (our span id as its parent) and the `traceresponse` sent to the client:
    /// `00-<trace id>-<span id>-<flags>`, rendered into `out` (55 bytes).
    func render(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.traceparentLength)
        out[0] = 0x30; out[1] = 0x30; out[2] = 0x2D
        for i in 0..<16 { Self.putHex(traceId[i], out, 3 + 2 * i) }
        out[35] = 0x2D
        for i in 0..<8 { Self.putHex(spanId[i], out, 36 + 2 * i) }
        out[52] = 0x2D
        Self.putHex(flags, out, 53)
    }

    /// The rendered `traceparent` value, on the stack, valid inside `body` only.
    func withTraceparent<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)  // 56 bytes
        return withUnsafeMutableBytes(of: &scratch) { raw in
            render(into: raw)
            return body(UnsafeRawBufferPointer(rebasing: raw[0..<Self.traceparentLength]))
        }
    }

    @inline(__always)
    private static func putHex(_ byte: UInt8, _ out: UnsafeMutableRawBufferPointer, _ at: Int) {
        let digits: StaticString = "0123456789abcdef"
        out[at] = digits.utf8Start[Int(byte >> 4)]
        out[at + 1] = digits.utf8Start[Int(byte & 0xF)]
    }

    // MARK: Text (allocates: logs, exporters, tests)

    /// The trace id as 32 lowercase hex digits.
    public var traceIdHex: String { withUnsafeBytes(of: traceId) { Self.hex($0) } }
    /// The gateway's span id as 16 lowercase hex digits.
    public var spanIdHex: String { withUnsafeBytes(of: spanId) { Self.hex($0) } }
    /// The caller's span id as 16 lowercase hex digits ("0000000000000000" when the trace was started here).
    public var parentSpanIdHex: String { withUnsafeBytes(of: parentSpanId) { Self.hex($0) } }
    /// `00-<trace id>-<span id>-<flags>`: what the pod receives as `traceparent`.
    public var traceparent: String { withTraceparent { String(decoding: $0, as: UTF8.self) } }

    private static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
