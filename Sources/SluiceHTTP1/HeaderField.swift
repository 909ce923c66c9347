// HeaderField and HeaderKind: one parsed field line and its classification. Protocol layer (SluiceHTTP1).
// Classification happens once while parsing so the proxy never compares names again on the hot path.

/// The fields the proxy treats specially. Everything else is `.other`.
public enum HeaderKind: UInt8, Sendable {
    case other, host, contentLength, transferEncoding, connection, keepAlive, proxyConnection, te, trailer,
        upgrade, expect, xForwardedFor, xForwardedProto, xRequestId, knativeServingTag

    /// Connection-specific fields and fields the proxy regenerates itself (RFC 9110 §7.6.1, RFC 9112 §6.3).
    public var isDroppedOnForward: Bool {
        switch self {
        case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade,
            .transferEncoding, .contentLength, .expect, .host:
            return true
        case .other, .xForwardedFor, .xForwardedProto, .xRequestId, .knativeServingTag:
            return false
        }
    }

    /// Classifies a field name (case-insensitive, RFC 9110 §5.1).
    public static func classify(_ buffer: UnsafeRawBufferPointer, _ name: ByteSpan) -> HeaderKind {
        switch name.count {
        case 2: return buffer.span(name, equalsLowercase: "te") ? .te : .other
        case 4: return buffer.span(name, equalsLowercase: "host") ? .host : .other
        case 6: return buffer.span(name, equalsLowercase: "expect") ? .expect : .other
        case 7:
            if buffer.span(name, equalsLowercase: "trailer") { return .trailer }
            if buffer.span(name, equalsLowercase: "upgrade") { return .upgrade }
            return .other
        case 10:
            if buffer.span(name, equalsLowercase: "connection") { return .connection }
            if buffer.span(name, equalsLowercase: "keep-alive") { return .keepAlive }
            return .other
        case 12: return buffer.span(name, equalsLowercase: "x-request-id") ? .xRequestId : .other
        case 14: return buffer.span(name, equalsLowercase: "content-length") ? .contentLength : .other
        case 15: return buffer.span(name, equalsLowercase: "x-forwarded-for") ? .xForwardedFor : .other
        case 16: return buffer.span(name, equalsLowercase: "proxy-connection") ? .proxyConnection : .other
        case 17:
            if buffer.span(name, equalsLowercase: "transfer-encoding") { return .transferEncoding }
            if buffer.span(name, equalsLowercase: "x-forwarded-proto") { return .xForwardedProto }
            return .other
        case 19: return buffer.span(name, equalsLowercase: "knative-serving-tag") ? .knativeServingTag : .other
        default: return .other
        }
    }
}

/// One field line. Spans point into the buffer given to `parse`.
public struct HeaderField: Sendable {
    public var name: ByteSpan
    /// The field value with leading and trailing OWS removed (RFC 9112 §5.1).
    public var value: ByteSpan
    public var kind: HeaderKind
    /// True when the proxy must not copy this field upstream/downstream: hop-by-hop fields, fields it
    /// regenerates, fields named by `Connection`, and (requests) names containing `_`.
    public var dropOnForward: Bool

    public init(name: ByteSpan, value: ByteSpan, kind: HeaderKind, dropOnForward: Bool) {
        self.name = name
        self.value = value
        self.kind = kind
        self.dropOnForward = dropOnForward
    }
}

/// How a request body is delimited (RFC 9112 §6.3).
public enum RequestBodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
}

/// How a response body is delimited (RFC 9112 §6.3).
public enum ResponseBodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
    /// Read until the upstream closes (RFC 9112 §6.3 item 8); the connection cannot be reused.
    case untilClose
}

public enum HTTPVersion: Sendable {
    case http10, http11
}
