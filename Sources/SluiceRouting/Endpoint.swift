// Routing layer: one upstream address (an IP literal and a port) that a revision's traffic can go to.

/// An upstream endpoint. The host is an IP literal, never a name: the data plane does no DNS at run time.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// IPv4 dotted quad or IPv6 literal without brackets.
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with brackets around IPv6 literals as in a URL authority (RFC 3986 §3.2.2).
    public var description: String {
        host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
