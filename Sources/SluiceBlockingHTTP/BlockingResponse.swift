// One HTTP response a handler returns; the blocking server adds the framing.

public struct BlockingResponse: Sendable {
    public var status: Int
    /// Extra fields. `Content-Length`, `Transfer-Encoding` and `Connection` are ignored: the server frames.
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Send the body with `Transfer-Encoding: chunked` (to HTTP/1.1 clients) instead of `Content-Length`.
    public var chunked: Bool
    /// A body produced while it is sent (a large /metrics scrape): called once with `emit`, which sends each piece
    /// as a chunk (HTTP/1.0 clients get the pieces gathered, with a Content-Length) and returns false once the peer
    /// is gone. Replaces `body` when set.
    public var stream: (@Sendable (_ emit: (UnsafeRawBufferPointer) -> Bool) -> Void)?

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], chunked: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.stream = nil
    }

    /// A body written piece by piece as it is produced (see `stream`), chunked to HTTP/1.1 clients.
    public init(status: Int, headers: [(String, String)] = [], stream: @escaping @Sendable (_ emit: (UnsafeRawBufferPointer) -> Bool) -> Void) {
        self.init(status: status, headers: headers, chunked: true)
        self.stream = stream
    }

    /// The whole body: `body`, or everything `stream` emits (tests, HTTP/1.0 clients).
    public var collectedBody: [UInt8] {
        guard let stream else { return body }
        var bytes: [UInt8] = []
        stream { bytes.append(contentsOf: $0); return true }
        return bytes
    }

    /// A JSON body, already serialised, with its content type.
    public static func json(status: Int = 200, _ string: String) -> BlockingResponse {
        BlockingResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(string.utf8))
    }

    /// A plain-text body, for errors the server itself produces (400, 413, 431).
    public static func text(status: Int, _ string: String) -> BlockingResponse {
        BlockingResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(string.utf8))
    }

    /// The reason phrase for the status line; the phrase is informational only (RFC 9112 §4).
    static func reason(for status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 204: "No Content"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: ""
        }
    }
}
