// Proxy layer: every response the gateway makes itself — status, reason and a KServe-style JSON body — in one place.
import SluiceHTTP1
import SluiceIO

/// Why the gateway answered a request itself: one case per kind of gateway-made answer, for the request record
/// (metrics count answers by it, logs print it).
public enum GatewayAnswer: UInt8, Sendable, CaseIterable {
    case noRoute, noRevision, noEndpoint, noGRPCEndpoint
    case upstreamConnectFailed, upstreamConnectTimeout, upstreamTimeout, upstreamInvalid, upstreamClosed
    case payloadTooLarge, requestTimeout
    /// The request target (414) or head (431) is over its limit.
    case headTooLarge
    /// The request head or body broke HTTP's rules (400, 414, 431, 501, 505: the parser's reason is the message).
    case malformedRequest
    case methodNotSupported
    /// A revision's `containerConcurrency` queue was full, or the request waited in it past the queue timeout.
    case queueFull, queueTimeout

    /// What the request record's flags say for this answer.
    var flags: RequestRecord.Flags {
        switch self {
        case .noRoute: return .noRoute
        case .noRevision, .noEndpoint, .noGRPCEndpoint: return .noHealthyUpstream
        case .upstreamConnectFailed: return .upstreamConnectFailure
        case .upstreamConnectTimeout: return [.upstreamConnectFailure, .upstreamConnectTimeout]
        case .upstreamTimeout: return .upstreamRequestTimeout
        case .upstreamInvalid: return .upstreamProtocolError
        case .upstreamClosed: return .upstreamConnectionTermination
        case .payloadTooLarge, .headTooLarge: return .limitExceeded
        case .requestTimeout: return .downstreamTimeout
        case .malformedRequest, .methodNotSupported: return .downstreamProtocolError
        case .queueFull, .queueTimeout: return .upstreamOverflow
        }
    }
}

struct ErrorResponse {
    let status: Int
    /// Goes into `{"error": "..."}`; ASCII without quotes or backslashes (our own words or parser reason codes).
    let message: String
    let answer: GatewayAnswer

    init(_ status: Int, _ message: String, _ answer: GatewayAnswer) {
        self.status = status
        self.message = message
        self.answer = answer
    }

    init(parseError: HTTPParseError) {
        let answer: GatewayAnswer
        switch parseError.status {
        case 413: answer = .payloadTooLarge
        case 414, 431: answer = .headTooLarge
        default: answer = .malformedRequest
        }
        self.init(parseError.status, parseError.reason, answer)
    }

    static let unknownHost = ErrorResponse(404, "no InferenceService serves this host", .noRoute)
    static let noRevision = ErrorResponse(503, "no revision has traffic", .noRevision)
    static let noEndpoint = ErrorResponse(503, "revision has no ready endpoint", .noEndpoint)
    static let upstreamConnectFailed = ErrorResponse(502, "upstream connect failed", .upstreamConnectFailed)
    static let upstreamConnectTimeout = ErrorResponse(504, "upstream connect timed out", .upstreamConnectTimeout)
    static let upstreamTimeout = ErrorResponse(504, "upstream response timed out", .upstreamTimeout)
    static let upstreamInvalid = ErrorResponse(502, "invalid response from upstream", .upstreamInvalid)
    static let upstreamClosed = ErrorResponse(502, "upstream closed the connection before responding", .upstreamClosed)
    static let payloadTooLarge = ErrorResponse(413, "request body too large", .payloadTooLarge)
    static let requestTimeout = ErrorResponse(408, "request timed out", .requestTimeout)
    static func badRequest(_ message: String) -> ErrorResponse { ErrorResponse(400, message, .malformedRequest) }
    static let noGRPCEndpoint = ErrorResponse(501, "revision serves no gRPC: it has no h2c:// or h2:// endpoint", .noGRPCEndpoint)
    static let connectNotSupported = ErrorResponse(501, "CONNECT is not supported", .methodNotSupported)
    static let queueFull = ErrorResponse(503, "revision at its containerConcurrency and its queue is full", .queueFull)
    static let queueTimeout = ErrorResponse(503, "revision at its containerConcurrency: timed out in its queue", .queueTimeout)

    /// Answers that ask the client to come back (`Retry-After: 1`): the revision is only busy.
    var retryAfterSeconds: Int? { answer == .queueFull || answer == .queueTimeout ? 1 : nil }

    /// The gRPC status a gRPC client gets for this error (trailers-only response, HTTP 200): gRPC's own mapping of
    /// HTTP statuses (doc/http-grpc-status-mapping.md), except that gateway timeouts are DEADLINE_EXCEEDED.
    var grpcStatus: Int {
        switch status {
        case 404, 405, 501: return 12  // UNIMPLEMENTED
        case 408, 504: return 4        // DEADLINE_EXCEEDED
        case 502, 503: return 14       // UNAVAILABLE
        case 413, 431: return 8        // RESOURCE_EXHAUSTED
        default: return 13             // INTERNAL (400 and the rest, as gRPC maps them)
        }
    }

    /// Writes `grpc-status` as decimal digits (at most 2).
    func writeGRPCStatus(into out: ByteBuffer) {
        out.append(decimal: grpcStatus)
    }

    func write(into out: ByteBuffer, close: Bool) {
        out.append("HTTP/1.1 ")
        out.append(decimal: status)
        out.append(byte: 0x20)
        out.append(Array(Self.reason(status).utf8))
        out.append("\r\nContent-Type: application/json\r\nContent-Length: ")
        out.append(decimal: message.utf8.count + 13)
        if close { out.append("\r\nConnection: close") }
        if let retryAfterSeconds {
            out.append("\r\nRetry-After: ")
            out.append(decimal: retryAfterSeconds)
        }
        out.append("\r\n\r\n")
        writeBody(into: out)
    }

    /// The JSON body alone (HTTP/2 carries status and length in HEADERS).
    func writeBody(into out: ByteBuffer) {
        out.append("{\"error\": \"")
        out.append(Array(message.utf8))
        out.append("\"}")
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 417: return "Expectation Failed"
        case 431: return "Request Header Fields Too Large"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }
}
