// RequestHead: the parsed request line and header section, as spans into the connection buffer.
// Protocol layer (SluiceHTTP1). Filled in place by RequestParser; storage is reused across requests.

public struct RequestHead {
    public var method: ByteSpan
    public var isHEAD: Bool
    /// Origin-form to forward. For absolute-form `http://h:p/x?y` this is `/x?y`.
    public var target: ByteSpan
    /// Absolute-form without a path (`http://h` or `http://h?q`): forward "/" followed by `target`.
    public var targetIsEmptyPath: Bool
    /// Host from an absolute-form target. RFC 9112 §3.2.2: route by it and ignore the Host field.
    public var authority: ByteSpan?
    public var version: HTTPVersion
    public var headers: [HeaderField]
    /// The Host field value, or the absolute-form authority when there is one.
    public var host: ByteSpan?
    public var framing: RequestBodyFraming
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (RFC 9112 §9.3).
    public var keepAlive: Bool
    /// `Expect: 100-continue` on HTTP/1.1 (RFC 9110 §10.1.1; ignored on HTTP/1.0 as that section says).
    public var expectsContinue: Bool
    /// Bytes of the head including the final CRLF (and any empty lines before the request line).
    public var headLength: Int

    init() {
        method = .empty
        isHEAD = false
        target = .empty
        targetIsEmptyPath = false
        authority = nil
        version = .http11
        headers = []
        host = nil
        framing = .none
        keepAlive = false
        expectsContinue = false
        headLength = 0
    }

    /// A head built by another protocol layer (HTTP/2 → HTTP/1.1 downgrade): spans point into that layer's bytes,
    /// the version is HTTP/1.1 with keep-alive, and there is no `Expect` to answer.
    public init(method: ByteSpan, isHEAD: Bool, target: ByteSpan, host: ByteSpan, headers: [HeaderField], framing: RequestBodyFraming) {
        self.method = method
        self.isHEAD = isHEAD
        self.target = target
        targetIsEmptyPath = false
        authority = nil
        version = .http11
        self.headers = headers
        self.host = host
        self.framing = framing
        keepAlive = true
        expectsContinue = false
        headLength = 0
    }

    /// Back to empty, keeping the headers array's capacity so the next request does not allocate.
    mutating func clear() {
        method = .empty
        isHEAD = false
        target = .empty
        targetIsEmptyPath = false
        authority = nil
        version = .http11
        headers.removeAll(keepingCapacity: true)
        host = nil
        framing = .none
        keepAlive = false
        expectsContinue = false
        headLength = 0
    }
}
