// Proxy layer: a request's W3C Trace Context (trace id, the gateway's span id, the caller's parent span id, flags),
// held inline in the request record.

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
}
