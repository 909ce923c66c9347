// One HTTP response a handler returns; the blocking server adds the framing.
import Glibc

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
    /// A long-lived body (a watch): called once with a sink to send chunks to and to wait on, so that it learns
    /// promptly when the peer goes away. Replaces `body` when set.
    public var sinkStream: (@Sendable (any BlockingStreamSink) -> Void)?

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], chunked: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.stream = nil
        self.sinkStream = nil
    }

    /// A long-lived body (see `sinkStream`), chunked to HTTP/1.1 clients.
    public init(status: Int, headers: [(String, String)] = [], sink: @escaping @Sendable (any BlockingStreamSink) -> Void) {
        self.init(status: status, headers: headers, chunked: true)
        self.sinkStream = sink
    }

    /// A body written piece by piece as it is produced (see `stream`), chunked to HTTP/1.1 clients.
    public init(status: Int, headers: [(String, String)] = [], stream: @escaping @Sendable (_ emit: (UnsafeRawBufferPointer) -> Bool) -> Void) {
        self.init(status: status, headers: headers, chunked: true)
        self.stream = stream
    }

    /// The whole body: `body`, or everything `stream` emits (tests, HTTP/1.0 clients).
    public var collectedBody: [UInt8] {
        if let sinkStream {
            let sink = CollectingSink()
            sinkStream(sink)
            return sink.bytes
        }
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
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
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

/// What a long-lived response body writes to and waits on.
public protocol BlockingStreamSink: AnyObject {
    /// Sends `bytes` as one piece (a chunk); false once the peer is gone.
    func emit(_ bytes: [UInt8]) -> Bool
    /// Waits until `fd` is readable, the peer goes away, or `milliseconds` pass.
    func wait(readable fd: Int32, milliseconds: Int) -> BlockingWake
}

public enum BlockingWake: Sendable {
    case readable
    case timedOut
    case peerGone
}

/// Gathers a long-lived body whole (tests calling a handler directly, HTTP/1.0 clients): there is no peer to lose.
final class CollectingSink: BlockingStreamSink {
    var bytes: [UInt8] = []

    func emit(_ piece: [UInt8]) -> Bool {
        bytes += piece
        return true
    }

    func wait(readable fd: Int32, milliseconds: Int) -> BlockingWake {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, Int32(clamping: milliseconds)) > 0 ? .readable : .timedOut
    }
}
