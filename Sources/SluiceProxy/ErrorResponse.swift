// Proxy layer: every response the gateway makes itself — status, reason and a KServe-style JSON body — in one place.
import SluiceHTTP1
import SluiceIO

struct ErrorResponse {
    let status: Int
    /// Goes into `{"error": "..."}`; ASCII without quotes or backslashes (our own words or parser reason codes).
    let message: String

    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    init(parseError: HTTPParseError) {
        self.init(parseError.status, parseError.reason)
    }

    static let unknownHost = ErrorResponse(404, "no InferenceService serves this host")
    static let noRevision = ErrorResponse(503, "no revision has traffic")
    static let noEndpoint = ErrorResponse(503, "revision has no ready endpoint")
    static let upstreamConnectFailed = ErrorResponse(502, "upstream connect failed")
    static let upstreamConnectTimeout = ErrorResponse(504, "upstream connect timed out")
    static let upstreamTimeout = ErrorResponse(504, "upstream response timed out")
    static let upstreamInvalid = ErrorResponse(502, "invalid response from upstream")
    static let upstreamClosed = ErrorResponse(502, "upstream closed the connection before responding")
    static let payloadTooLarge = ErrorResponse(413, "request body too large")
    static let requestTimeout = ErrorResponse(408, "request timed out")
    static func badRequest(_ message: String) -> ErrorResponse { ErrorResponse(400, message) }
    static let noGRPCEndpoint = ErrorResponse(501, "revision serves no gRPC: it has no h2c:// or h2:// endpoint")

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
