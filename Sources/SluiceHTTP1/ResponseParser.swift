// ResponseParser: strict, resumable, zero-copy parser for an upstream HTTP/1.1 response head.
// Protocol layer (SluiceHTTP1). Same field strictness as requests; every error means the proxy
// discards the response, closes the upstream connection and answers 502 (RFC 9112 §6.3 item 5).
// Resumption and allocation behave as in RequestParser.

public struct ResponseParser {
    enum State: UInt8 {
        case idle  // before the status line: empty lines are skipped (RFC 9112 §2.2)
        case leadingLF
        case version
        case status
        case reason
        case statusLineLF
        case fields
        case complete
        case failed
    }

    public let limits: HTTP1Limits
    var state: State = .idle
    var position = 0
    var mark = 0
    var versionMajor: UInt8 = 0
    var lines = FieldLineScanner()
    var storage = ResponseHead()
    var failure = HTTPParseError(status: 502, reason: HTTPParseReason.invalidCharacters)

    var contentLength = -1
    var codings = TransferCodings()
    var connection = ConnectionOptions()
    var connectionTokens: [ByteSpan] = []

    public init(limits: HTTP1Limits) {
        self.limits = limits
        storage.headers.reserveCapacity(min(limits.maxHeaderCount, 16))  // grows once if needed, then reused; small so idle connections stay cheap
        connectionTokens.reserveCapacity(8)
    }

    /// Valid after `parse` returned `.complete`.
    public var head: ResponseHead { storage }

    /// Before the next response on the connection (also after a 1xx). Keeps capacity.
    public mutating func reset() {
        state = .idle
        position = 0
        mark = 0
        lines.reset()
        storage.clear()
        contentLength = -1
        codings = TransferCodings()
        connection = ConnectionOptions()
        connectionTokens.removeAll(keepingCapacity: true)
    }

    /// Parses from offset 0 of `buffer`, resuming where the last call stopped. `requestWasHEAD` decides
    /// framing (RFC 9112 §6.3 item 1), so pass the same value on every call for one response.
    public mutating func parse(_ buffer: UnsafeRawBufferPointer, requestWasHEAD: Bool) -> ParseStatus {
        switch state {
        case .complete: return .complete
        case .failed: return .failed(failure)
        case .idle, .leadingLF, .version, .status, .reason, .statusLineLF, .fields: break
        }
        let limit = min(buffer.count, limits.maxHeadBytes)
        var p = position
        while p < limit {
            let b = buffer[p]
            switch state {
            case .idle:
                if b == 0x48 {  // "H"
                    mark = p
                    state = .version
                } else if b == ASCII.cr {
                    state = .leadingLF
                } else if b == ASCII.lf {
                    return fail(HTTPParseReason.bareLF)
                } else {
                    return fail(HTTPParseReason.invalidVersion)
                }
            case .leadingLF:
                guard b == ASCII.lf else { return fail(HTTPParseReason.bareCR) }
                state = .idle
            case .version:
                // RFC 9112 §4: HTTP-version SP status-code SP [ reason-phrase ] CRLF.
                let index = p - mark
                switch index {
                case 1...4:
                    let expected: StaticString = "HTTP/"
                    guard b == expected.utf8Start[index] else { return fail(HTTPParseReason.invalidVersion) }
                case 5:
                    guard ASCII.isDigit(b) else { return fail(HTTPParseReason.invalidVersion) }
                    versionMajor = b
                case 6:
                    guard b == 0x2E else { return fail(HTTPParseReason.invalidVersion) }
                case 7:
                    guard ASCII.isDigit(b) else { return fail(HTTPParseReason.invalidVersion) }
                    switch (versionMajor, b) {
                    case (0x31, 0x31): storage.version = .http11
                    case (0x31, 0x30): storage.version = .http10
                    default: return fail(HTTPParseReason.unsupportedVersion)
                    }
                default:
                    guard b == ASCII.sp else { return fail(HTTPParseReason.invalidVersion) }
                    mark = p + 1
                    storage.status = 0
                    state = .status
                }
            case .status:
                // RFC 9110 §15: status-code = 3DIGIT in 100...599.
                let index = p - mark
                if index < 3 {
                    guard ASCII.isDigit(b) else { return fail(HTTPParseReason.invalidStatus) }
                    storage.status = storage.status * 10 + Int(b - 0x30)
                    if index == 2 && !(100...599).contains(storage.status) { return fail(HTTPParseReason.invalidStatus) }
                } else if b == ASCII.sp {
                    state = .reason
                } else if b == ASCII.cr {
                    // RFC 9112 §4 requires the SP even before an empty reason, but many servers send
                    // `HTTP/1.1 200\r\n`; the status code is unambiguous without it, so we accept it.
                    state = .statusLineLF
                } else if b == ASCII.lf {
                    return fail(HTTPParseReason.bareLF)
                } else {
                    return fail(HTTPParseReason.invalidStatus)
                }
            case .reason:
                // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); it is never forwarded verbatim.
                if b == ASCII.cr {
                    state = .statusLineLF
                } else if b == ASCII.lf {
                    return fail(HTTPParseReason.bareLF)
                } else if !ASCII.isFieldValue(b) {
                    return fail(HTTPParseReason.invalidCharacters)
                }
            case .statusLineLF:
                guard b == ASCII.lf else { return fail(HTTPParseReason.bareCR) }
                lines.reset()
                state = .fields
            case .fields:
                let skipped = lines.skipPlain(buffer, from: p, limit: limit)
                if skipped != p {
                    p = skipped
                    continue
                }
                switch lines.consume(b, at: p) {
                case .none, .name:
                    break
                case .field(let name, let value, _):
                    if let reason = addField(buffer, name, value) { return fail(reason) }
                case .end:
                    position = p + 1
                    storage.headLength = p + 1
                    return finish(buffer, requestWasHEAD: requestWasHEAD)
                case .failed(let violation):
                    return fail(violation.reason)
                }
            case .complete, .failed:
                preconditionFailure("parse loop entered a final state")
            }
            p += 1
        }
        position = p
        if buffer.count > limits.maxHeadBytes { return fail(HTTPParseReason.headersTooLarge) }
        return .incomplete
    }

    mutating func fail(_ reason: String) -> ParseStatus {
        state = .failed
        failure = HTTPParseError(status: 502, reason: reason)
        return .failed(failure)
    }

    /// Applies the rules of one field line; returns the failure reason, or nil.
    mutating func addField(_ buffer: UnsafeRawBufferPointer, _ name: ByteSpan, _ value: ByteSpan) -> String? {
        if storage.headers.count >= limits.maxHeaderCount { return HTTPParseReason.tooManyHeaders }
        let kind = HeaderKind.classify(buffer, name)
        switch kind {
        case .contentLength:
            // RFC 9112 §6.3 item 5: an invalid CL in a response → discard it, close, 502.
            guard let length = FieldGrammar.contentLength(buffer, value),
                contentLength < 0 || contentLength == length
            else { return HTTPParseReason.invalidContentLength }
            if codings.isPresent { return HTTPParseReason.contentLengthAndChunked }
            contentLength = length
        case .transferEncoding:
            // RFC 9112 §6.1: TE in HTTP/1.0 means faulty framing; CL with TE is a smuggling signal, and
            // after any framing doubt the proxy does not trust the connection (hardening.md §1.7 row 15).
            if storage.version == .http10 { return HTTPParseReason.transferEncodingNotAllowed }
            if contentLength >= 0 { return HTTPParseReason.contentLengthAndChunked }
            guard codings.add(buffer, value), codings.chunkedCount <= 1 else {
                return HTTPParseReason.invalidTransferEncoding
            }
        case .connection:
            guard connection.add(buffer, value, naming: &connectionTokens) else {
                return HTTPParseReason.invalidConnection
            }
        case .other, .host, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect,
            .xForwardedFor, .xForwardedProto, .xRequestId, .knativeServingTag:
            break
        }
        // No underscore rule here: the aliasing problem is backends reading *request* headers.
        storage.headers.append(HeaderField(name: name, value: value, kind: kind, dropOnForward: kind.isDroppedOnForward))
        return nil
    }

    /// RFC 9112 §6.3: the body length of a response, in the order the section lists.
    mutating func finish(_ buffer: UnsafeRawBufferPointer, requestWasHEAD: Bool) -> ParseStatus {
        if storage.headLength > limits.maxHeadBytes { return fail(HTTPParseReason.headersTooLarge) }
        let status = storage.status
        if requestWasHEAD || status < 200 || status == 204 || status == 304 {
            // Item 1: HEAD responses, 1xx, 204 and 304 end at the head, whatever their fields say.
            storage.framing = .none
        } else if codings.isPresent {
            // Item 4: chunked last → chunked; any other final coding → read until close.
            storage.framing = codings.isChunkedLast ? .chunked : .untilClose
        } else if contentLength >= 0 {
            storage.framing = .contentLength(contentLength)
        } else {
            // Item 8: no framing → the body runs to the end of the connection.
            storage.framing = .untilClose
        }
        // RFC 9112 §9.3 persistence.
        let persistent: Bool
        switch storage.version {
        case .http11: persistent = !connection.hasClose
        case .http10: persistent = connection.hasKeepAlive && !connection.hasClose
        }
        storage.keepAlive = persistent && storage.framing != .untilClose
        FieldGrammar.markFieldsNamed(by: connectionTokens, in: &storage.headers, buffer)
        state = .complete
        return .complete
    }
}
