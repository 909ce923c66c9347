// Routing layer: one upstream address (an IP literal and a port) that a revision's traffic can go to, and the
// protocol the pod speaks there.

/// What a pod speaks on an endpoint: HTTP/1.1 (REST), or HTTP/2 cleartext by prior knowledge (gRPC).
public enum UpstreamProtocol: UInt8, Hashable, Sendable {
    case http1
    case h2c
}

/// An upstream endpoint. The host is an IP literal, never a name: the data plane does no DNS at run time.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// IPv4 dotted quad or IPv6 literal without brackets.
    public var host: String
    public var port: UInt16
    /// Written `h2c://IP:port`; plain `IP:port` is HTTP/1.1. gRPC requests go to a revision's h2c endpoints only.
    public var upstreamProtocol: UpstreamProtocol

    public init(host: String, port: UInt16, protocol upstreamProtocol: UpstreamProtocol = .http1) {
        self.host = host
        self.port = port
        self.upstreamProtocol = upstreamProtocol
    }

    public var isH2C: Bool { upstreamProtocol == .h2c }

    /// The scheme prefix of the endpoint's text form (`h2c://`), empty for HTTP/1.1.
    public static let h2cPrefix = "h2c://"

    /// `host:port`, with brackets around IPv6 literals as in a URL authority (RFC 3986 §3.2.2); `h2c://` first for h2c.
    public var description: String {
        let authority = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
        return isH2C ? Self.h2cPrefix + authority : authority
    }

    /// Splits an `h2c://` prefix off an endpoint's text form: the protocol and the `IP:port` rest.
    public static func splitScheme(_ text: String) -> (UpstreamProtocol, Substring)? {
        if text.hasPrefix(h2cPrefix) { return (.h2c, text.dropFirst(h2cPrefix.utf8.count)) }
        if text.contains("://") { return nil }
        return (.http1, Substring(text))
    }
}
