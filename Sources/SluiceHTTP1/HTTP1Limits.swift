// HTTP1Limits: size bounds applied while parsing a head. Protocol layer (SluiceHTTP1).
// Defaults follow Envoy's edge settings (60 KiB head, 100 fields); see hardening.md §3.4.

public struct HTTP1Limits: Sendable, Equatable {
    /// Start line + fields + final CRLF; above it a request gets 431 (a response 502).
    public var maxHeadBytes = 60 * 1024
    /// Field lines per head; above it 431.
    public var maxHeaderCount = 100
    /// Request-target bytes; above it 414 (RFC 9112 §3).
    public var maxTargetBytes = 8 * 1024

    public init() {}
}
