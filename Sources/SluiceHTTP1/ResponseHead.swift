// ResponseHead: the parsed status line and header section of an upstream response, as spans.
// Protocol layer (SluiceHTTP1). Filled in place by ResponseParser; storage is reused across responses.

public struct ResponseHead {
    public var status: Int
    public var version: HTTPVersion
    public var headers: [HeaderField]
    public var framing: ResponseBodyFraming
    /// False for a close-delimited body, `Connection: close`, or HTTP/1.0 without keep-alive.
    public var keepAlive: Bool
    /// Bytes of the head including the final CRLF (and any empty lines before the status line).
    public var headLength: Int

    init() {
        status = 0
        version = .http11
        headers = []
        framing = .none
        keepAlive = false
        headLength = 0
    }

    /// Back to empty, keeping the headers array's capacity.
    mutating func clear() {
        status = 0
        version = .http11
        headers.removeAll(keepingCapacity: true)
        framing = .none
        keepAlive = false
        headLength = 0
    }
}
