// Routing layer: one upstream address (an IP literal and a port) that a revision's traffic can go to, and the
// protocol the pod speaks there.

/// What a pod speaks on an endpoint: HTTP/1.1 (REST), HTTP/2 cleartext by prior knowledge (gRPC), HTTP/1.1
/// over TLS (REST to a pod that requires TLS; verified against the `upstreamTLS` CA), or HTTP/2 over TLS with ALPN
/// `h2` (gRPC to a pod that requires TLS; verified the same way).
public enum UpstreamProtocol: UInt8, Hashable, Sendable {
    case http1
    case h2c
    case https
    case h2
}

/// An upstream endpoint. The host is an IP literal, never a name: the data plane does no DNS at run time.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// IPv4 dotted quad or IPv6 literal without brackets.
    public var host: String
    public var port: UInt16
    /// Written `h2c://IP:port`, `https://IP:port` or `h2://IP:port`; plain `IP:port` is HTTP/1.1. gRPC requests go
    /// to a revision's HTTP/2 (h2c and h2) endpoints only; REST requests to its plain and https ones.
    public var upstreamProtocol: UpstreamProtocol

    public init(host: String, port: UInt16, protocol upstreamProtocol: UpstreamProtocol = .http1) {
        self.host = host
        self.port = port
        self.upstreamProtocol = upstreamProtocol
    }

    public var isH2C: Bool { upstreamProtocol == .h2c }
    /// HTTP/2 to the pod, cleartext (h2c) or over TLS (h2): where gRPC goes.
    public var isHTTP2: Bool { upstreamProtocol == .h2c || upstreamProtocol == .h2 }
    /// HTTP/1.1 over TLS to the pod.
    public var isTLS: Bool { upstreamProtocol == .https }
    /// HTTP/2 over TLS (ALPN h2) to the pod.
    public var isH2TLS: Bool { upstreamProtocol == .h2 }

    /// The scheme prefixes of the endpoint's text form; none for HTTP/1.1.
    public static let h2cPrefix = "h2c://"
    public static let httpsPrefix = "https://"
    public static let h2Prefix = "h2://"

    /// `host:port`, with brackets around IPv6 literals as in a URL authority (RFC 3986 §3.2.2); `h2c://` first for h2c,
    /// `https://` for TLS, `h2://` for HTTP/2 over TLS.
    public var description: String {
        let authority = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
        switch upstreamProtocol {
        case .http1: return authority
        case .h2c: return Self.h2cPrefix + authority
        case .https: return Self.httpsPrefix + authority
        case .h2: return Self.h2Prefix + authority
        }
    }

    /// Splits an `h2c://`, `https://` or `h2://` prefix off an endpoint's text form: the protocol and the `IP:port` rest.
    public static func splitScheme(_ text: String) -> (UpstreamProtocol, Substring)? {
        if text.hasPrefix(h2cPrefix) { return (.h2c, text.dropFirst(h2cPrefix.utf8.count)) }
        if text.hasPrefix(httpsPrefix) { return (.https, text.dropFirst(httpsPrefix.utf8.count)) }
        if text.hasPrefix(h2Prefix) { return (.h2, text.dropFirst(h2Prefix.utf8.count)) }
        if text.contains("://") { return nil }
        return (.http1, Substring(text))
    }
}
