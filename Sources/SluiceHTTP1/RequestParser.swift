// RequestParser: strict, resumable, zero-copy parser for an HTTP/1.1 request head (RFC 9112 §2–§7).
// Protocol layer (SluiceHTTP1): bytes in, spans out; it never copies or re-serialises bytes itself.
//
// Resumable: the caller passes the whole unconsumed region each time (same start, longer length); we
// keep `position`, the first byte not yet examined, so validated bytes are never scanned twice. Every
// rule is checked on the byte that decides it, so errors surface before the head is complete and the
// verdict does not depend on how the bytes were split. Zero allocation once warm: spans only, and
// `reset()` keeps the headers array's capacity. (If the caller keeps a copy of `head` across `reset()`,
// copy-on-write will allocate; read what you need, then reset.)

public struct RequestParser {
    enum State: UInt8 {
        case idle  // before the request line: an empty line may be skipped (RFC 9112 §2.2)
        case leadingLF  // saw CR of such an empty line
        case method
        case target
        case version
        case requestLineLF
        case fields
        case complete
        case failed
    }

    public let limits: HTTP1Limits
    var state: State = .idle
    /// Resume offset: the first byte not yet examined.
    var position = 0
    /// Start of the token being read in the request line.
    var mark = 0
    var versionMajor: UInt8 = 0
    var lines = FieldLineScanner()
    var storage = RequestHead()
    var failure = HTTPParseError(status: 400, reason: HTTPParseReason.invalidCharacters)

    // What the fields said so far, checked as each line completes.
    /// Kind of the field line being read, classified at its colon.
    var fieldKind = HeaderKind.other
    var hostCount = 0
    var hostField: ByteSpan?
    var contentLength = -1
    var codings = TransferCodings()
    var connection = ConnectionOptions()
    var connectionTokens: [ByteSpan] = []
    var expectsContinue = false
    /// Test hook (internal, never set by the proxy): lets the llhttp corpus replay check the rest of a
    /// request that lacks Host, since most llhttp samples omit it.
    var requiresHost = true

    public init(limits: HTTP1Limits) {
        self.init(limits: limits, storage: RequestParserStorage(limits: limits))
    }

    public init(limits: HTTP1Limits, storage lent: RequestParserStorage) {
        self.limits = limits
        adoptStorage(lent)
    }

    /// False once the storage has been lent out (`lendStorage`): the next parse would allocate.
    public var hasStorage: Bool { storage.headers.capacity > 0 }

    /// Nothing parsed since `reset` (or since it was made): the storage may be lent.
    public var isBetweenRequests: Bool { state == .idle && position == 0 }

    /// Gives the growable storage away, for a connection that falls idle between requests: it then holds no field
    /// list. Only between requests (nothing parsed since `reset`); `adoptStorage` before the next parse.
    public mutating func lendStorage() -> RequestParserStorage {
        precondition(isBetweenRequests, "RequestParser: storage lent in the middle of a head")
        var lent = RequestParserStorage.none
        swap(&lent.headers, &storage.headers)
        swap(&lent.connectionTokens, &connectionTokens)
        return lent
    }

    /// Takes storage (a new one, or one another parser lent) for the next request. It must be empty: emptying it
    /// here would copy it (the caller still holds a reference while this runs), an allocation per request.
    public mutating func adoptStorage(_ lent: RequestParserStorage) {
        precondition(lent.headers.isEmpty && lent.connectionTokens.isEmpty, "RequestParser: adopted storage is not empty")
        storage.headers = lent.headers
        connectionTokens = lent.connectionTokens
    }

    /// Valid after `parse` returned `.complete`.
    public var head: RequestHead { storage }

    /// Before the next request on the connection. Keeps capacity.
    public mutating func reset() {
        state = .idle
        position = 0
        mark = 0
        lines.reset()
        storage.clear()
        hostCount = 0
        hostField = nil
        contentLength = -1
        codings = TransferCodings()
        connection = ConnectionOptions()
        connectionTokens.removeAll(keepingCapacity: true)
        expectsContinue = false
    }

    /// Parses from offset 0 of `buffer` (the whole unconsumed region), resuming where the last call stopped.
    public mutating func parse(_ buffer: UnsafeRawBufferPointer) -> ParseStatus {
        switch state {
        case .complete: return .complete
        case .failed: return .failed(failure)
        case .idle, .leadingLF, .method, .target, .version, .requestLineLF, .fields: break
        }
        // Never look past the head limit: a head that has not ended by then is 431 (RFC 6585 §5).
        let limit = min(buffer.count, limits.maxHeadBytes)
        var p = position
        while p < limit {
            let b = buffer[p]
            switch state {
            case .idle:
                if ASCII.isToken(b) {
                    mark = p
                    state = .method
                } else if b == ASCII.cr {
                    state = .leadingLF
                } else if b == ASCII.lf {
                    return fail(400, HTTPParseReason.bareLF)
                } else {
                    return fail(400, HTTPParseReason.invalidMethod)
                }
            case .leadingLF:
                guard b == ASCII.lf else { return fail(400, HTTPParseReason.bareCR) }
                state = .idle
            case .method:
                // RFC 9110 §9.1: method = token; RFC 9112 §3: exactly one SP follows.
                if ASCII.isToken(b) { break }
                guard b == ASCII.sp else { return fail(400, HTTPParseReason.invalidMethod) }
                let method = ByteSpan(start: mark, count: p - mark)
                storage.method = method
                // Methods are case-sensitive (RFC 9110 §9.1).
                if buffer.span(method, equalsBytes: "CONNECT") {
                    // The gateway does not tunnel; RFC 9110 §15.6.2 501 for a method it does not implement.
                    return fail(501, HTTPParseReason.connectNotSupported)
                }
                guard RegisteredMethods.contains(buffer, method) else {
                    return fail(501, HTTPParseReason.unknownMethod)
                }
                storage.isHEAD = buffer.span(method, equalsBytes: "HEAD")
                mark = p + 1
                state = .target
            case .target:
                if ASCII.isVisible(b) {
                    // RFC 9112 §3: a server MUST be able to say 414 for a target longer than it handles.
                    if p - mark >= limits.maxTargetBytes { return fail(414, HTTPParseReason.urlTooLong) }
                    break
                }
                guard b == ASCII.sp, p > mark else { return fail(400, HTTPParseReason.invalidURL) }
                if let error = classifyTarget(buffer, ByteSpan(start: mark, count: p - mark)) {
                    return fail(error.status, error.reason)
                }
                mark = p + 1
                state = .version
            case .version:
                if let error = versionByte(b, index: p - mark) { return fail(error.status, error.reason) }
            case .requestLineLF:
                guard b == ASCII.lf else { return fail(400, HTTPParseReason.bareCR) }
                lines.reset()
                state = .fields
            case .fields:
                let skipped = lines.skipPlain(buffer, from: p, limit: limit)
                if skipped != p {
                    p = skipped
                    continue
                }
                switch lines.consume(b, at: p) {
                case .none:
                    break
                case .name(let name):
                    if let error = startField(buffer, name) { return fail(error.status, error.reason) }
                case .field(let name, let value, let hasUnderscore):
                    if let error = addField(buffer, name, value, hasUnderscore) { return fail(error.status, error.reason) }
                case .end:
                    position = p + 1
                    storage.headLength = p + 1
                    return finish(buffer)
                case .failed(let violation):
                    return fail(400, violation.reason)
                }
            case .complete, .failed:
                preconditionFailure("parse loop entered a final state")
            }
            p += 1
        }
        position = p
        if buffer.count > limits.maxHeadBytes { return fail(431, HTTPParseReason.headersTooLarge) }
        return .incomplete
    }

    mutating func fail(_ status: Int, _ reason: String) -> ParseStatus {
        state = .failed
        failure = HTTPParseError(status: status, reason: reason)
        return .failed(failure)
    }

    /// RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, then CRLF ends the request line. Decided
    /// byte by byte: a wrong prefix is 400 at once, a well-formed version other than 1.0/1.1 is 505 as
    /// soon as its minor digit arrives.
    mutating func versionByte(_ b: UInt8, index: Int) -> HTTPParseError? {
        switch index {
        case 0...4:
            let expected: StaticString = "HTTP/"
            if b != expected.utf8Start[index] { return HTTPParseError(status: 400, reason: HTTPParseReason.invalidVersion) }
        case 5:
            guard ASCII.isDigit(b) else { return HTTPParseError(status: 400, reason: HTTPParseReason.invalidVersion) }
            versionMajor = b
        case 6:
            guard b == 0x2E else { return HTTPParseError(status: 400, reason: HTTPParseReason.invalidVersion) }
        case 7:
            guard ASCII.isDigit(b) else { return HTTPParseError(status: 400, reason: HTTPParseReason.invalidVersion) }
            switch (versionMajor, b) {
            case (0x31, 0x31): storage.version = .http11
            case (0x31, 0x30): storage.version = .http10
            default: return HTTPParseError(status: 505, reason: HTTPParseReason.unsupportedVersion)
            }
        default:
            if b == ASCII.cr {
                state = .requestLineLF
            } else if b == ASCII.lf {
                return HTTPParseError(status: 400, reason: HTTPParseReason.bareLF)
            } else {
                return HTTPParseError(status: 400, reason: HTTPParseReason.invalidVersion)
            }
        }
        return nil
    }

    /// RFC 9112 §3.2: origin-form, absolute-form (http/https), asterisk-form (OPTIONS only).
    /// authority-form is CONNECT only, which was already refused.
    mutating func classifyTarget(_ buffer: UnsafeRawBufferPointer, _ target: ByteSpan) -> HTTPParseError? {
        let first = buffer[target.start]
        if first == ASCII.slash {
            storage.target = target
            return nil
        }
        if first == 0x2A && target.count == 1 {  // "*"
            // RFC 9112 §3.2.4: asterisk-form is only for a server-wide OPTIONS.
            guard buffer.span(storage.method, equalsBytes: "OPTIONS") else {
                return HTTPParseError(status: 400, reason: HTTPParseReason.invalidURL)
            }
            storage.target = target
            return nil
        }
        // RFC 9112 §3.2.2 absolute-form; the scheme is case-insensitive (RFC 3986 §3.1).
        var authorityStart = -1
        if target.count > 7, buffer.span(ByteSpan(start: target.start, count: 7), equalsLowercase: "http://") {
            authorityStart = target.start + 7
        } else if target.count > 8,
            buffer.span(ByteSpan(start: target.start, count: 8), equalsLowercase: "https://")
        {
            authorityStart = target.start + 8
        }
        guard authorityStart >= 0 else {
            // Something with a scheme we do not speak, or no form at all.
            var i = target.start
            while i < target.end && ASCII.isToken(buffer[i]) && buffer[i] != ASCII.colon { i += 1 }
            let looksLikeScheme = i < target.end && buffer[i] == ASCII.colon && i > target.start
            return HTTPParseError(status: 400, reason: looksLikeScheme ? HTTPParseReason.invalidScheme : HTTPParseReason.invalidURL)
        }
        var pathStart = authorityStart
        while pathStart < target.end && buffer[pathStart] != ASCII.slash && buffer[pathStart] != 0x3F { pathStart += 1 }
        let authority = ByteSpan(start: authorityStart, count: pathStart - authorityStart)
        guard FieldGrammar.isValidHost(buffer, authority) else {
            return HTTPParseError(status: 400, reason: HTTPParseReason.invalidURL)
        }
        storage.authority = authority
        storage.target = ByteSpan(start: pathStart, count: target.end - pathStart)
        storage.targetIsEmptyPath = pathStart == target.end || buffer[pathStart] != ASCII.slash
        return nil
    }

    /// Rules decided by the name alone, applied at its colon so they fail before the value arrives.
    mutating func startField(_ buffer: UnsafeRawBufferPointer, _ name: ByteSpan) -> HTTPParseError? {
        if storage.headers.count >= limits.maxHeaderCount {
            return HTTPParseError(status: 431, reason: HTTPParseReason.tooManyHeaders)
        }
        fieldKind = HeaderKind.classify(buffer, name)
        switch fieldKind {
        case .host:
            // RFC 9112 §3.2: 400 for more than one Host line.
            if hostCount > 0 { return HTTPParseError(status: 400, reason: HTTPParseReason.duplicateHost) }
        case .contentLength:
            // RFC 9112 §6.1: a server MAY reject CL together with TE; we do (hardening.md §1.7 row 1).
            if codings.isPresent {
                return HTTPParseError(status: 400, reason: HTTPParseReason.contentLengthAndChunked)
            }
        case .transferEncoding:
            // RFC 9112 §6.1: TE in an HTTP/1.0 message means the framing is faulty.
            if storage.version == .http10 {
                return HTTPParseError(status: 400, reason: HTTPParseReason.transferEncodingNotAllowed)
            }
            if contentLength >= 0 {
                return HTTPParseError(status: 400, reason: HTTPParseReason.contentLengthAndChunked)
            }
        case .other, .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect,
            .xForwardedFor, .xForwardedProto, .xRequestId, .knativeServingTag:
            break
        }
        return nil
    }

    /// Applies the rules of one complete field line; nil when it is acceptable.
    mutating func addField(
        _ buffer: UnsafeRawBufferPointer, _ name: ByteSpan, _ value: ByteSpan, _ hasUnderscore: Bool
    ) -> HTTPParseError? {
        let kind = fieldKind
        switch kind {
        case .host:
            // RFC 9112 §3.2: 400 for an invalid Host value.
            hostCount += 1
            guard FieldGrammar.isValidHost(buffer, value) else {
                return HTTPParseError(status: 400, reason: HTTPParseReason.invalidHost)
            }
            hostField = value
        case .contentLength:
            // RFC 9112 §6.3 item 5: invalid or conflicting Content-Length → 400 and close.
            guard let length = FieldGrammar.contentLength(buffer, value),
                contentLength < 0 || contentLength == length
            else { return HTTPParseError(status: 400, reason: HTTPParseReason.invalidContentLength) }
            contentLength = length
        case .transferEncoding:
            // RFC 9112 §6.3 item 4: chunked must be last and applied once; once something follows a
            // chunked no later line can repair that, so reject as soon as it is seen.
            guard codings.add(buffer, value), codings.chunkedCount <= 1, !codings.hasCodingAfterChunked else {
                return HTTPParseError(status: 400, reason: HTTPParseReason.invalidTransferEncoding)
            }
        case .connection:
            guard connection.add(buffer, value, naming: &connectionTokens) else {
                return HTTPParseError(status: 400, reason: HTTPParseReason.invalidConnection)
            }
        case .expect:
            // RFC 9110 §10.1.1: 100-continue is the only expectation; anything else → 417.
            guard buffer.span(value, equalsLowercase: "100-continue") else {
                return HTTPParseError(status: 417, reason: HTTPParseReason.expectationFailed)
            }
            expectsContinue = storage.version == .http11
        case .other, .keepAlive, .proxyConnection, .te, .trailer, .upgrade,
            .xForwardedFor, .xForwardedProto, .xRequestId, .knativeServingTag:
            break
        }
        // Names with "_" are dropped like nginx's `underscores_in_headers off`: CGI/WSGI backends alias
        // X_Foo to X-Foo, so a client could spoof a header the proxy set (hardening.md §1.7 row 13).
        storage.headers.append(
            HeaderField(name: name, value: value, kind: kind, dropOnForward: kind.isDroppedOnForward || hasUnderscore))
        return nil
    }

    /// The head is complete: cross-field rules, framing and connection persistence.
    mutating func finish(_ buffer: UnsafeRawBufferPointer) -> ParseStatus {
        if storage.headLength > limits.maxHeadBytes { return fail(431, HTTPParseReason.headersTooLarge) }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
        if storage.version == .http11 && hostCount == 0 && requiresHost { return fail(400, HTTPParseReason.missingHost) }
        // RFC 9112 §6.3: TE overrides CL (both together were already refused); chunked must be last.
        if codings.isPresent {
            if codings.isChunkedLast {
                storage.framing = .chunked
            } else if codings.chunkedCount > 0 {
                return fail(400, HTTPParseReason.invalidTransferEncoding)
            } else {
                // RFC 9112 §6.1: a server SHOULD answer 501 to a transfer coding it does not understand.
                return fail(501, HTTPParseReason.unknownTransferEncoding)
            }
        } else if contentLength >= 0 {
            storage.framing = .contentLength(contentLength)
        } else {
            // RFC 9112 §6.3 item 7: a request without CL or TE has no body, whatever its method.
            storage.framing = .none
        }
        switch storage.version {
        case .http11: storage.keepAlive = !connection.hasClose
        case .http10: storage.keepAlive = connection.hasKeepAlive && !connection.hasClose
        }
        storage.expectsContinue = expectsContinue
        storage.host = storage.authority ?? hostField
        FieldGrammar.markFieldsNamed(by: connectionTokens, in: &storage.headers, buffer)
        state = .complete
        return .complete
    }
}

/// What a request parser allocates: the field list and the Connection tokens, with their capacity. Parsers on one
/// thread pass it around (`RequestParser.lendStorage`, `adoptStorage`), so that idle connections hold none of it
/// and busy ones allocate nothing.
public struct RequestParserStorage {
    /// The field list; an HTTP/2 stream, which parses no HTTP/1.1 head, borrows the storage for this alone.
    public var headers: [HeaderField]
    var connectionTokens: [ByteSpan]

    /// No storage (nothing allocated): what a borrower holds once it gave its storage back.
    public static var none: RequestParserStorage { RequestParserStorage(headers: [], connectionTokens: []) }

    init(headers: [HeaderField], connectionTokens: [ByteSpan]) {
        self.headers = headers
        self.connectionTokens = connectionTokens
    }

    public init(limits: HTTP1Limits) {
        headers = []
        headers.reserveCapacity(min(limits.maxHeaderCount, 16))  // grows once if needed, then reused
        connectionTokens = []
        connectionTokens.reserveCapacity(8)
    }

    /// Made with (or grown to) no more than the usual capacity: worth keeping for the next parser.
    public var isStandardSize: Bool { headers.capacity <= 32 && connectionTokens.capacity <= 16 }
}
