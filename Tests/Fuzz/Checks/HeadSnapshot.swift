// Fuzzing (Tests/Fuzz): comparable copies of parsed heads, so that two parses of the same bytes (whole or byte by
// byte, fresh or after reset, default or tight limits) can be required to agree field for field.
import SluiceHTTP1

struct FieldSnapshot: Equatable {
    var name: ByteSpan
    var value: ByteSpan
    var kind: HeaderKind
    var dropOnForward: Bool
}

struct RequestSnapshot: Equatable {
    var method: ByteSpan
    var isHEAD: Bool
    var target: ByteSpan
    var targetIsEmptyPath: Bool
    var authority: ByteSpan?
    var version: HTTPVersion
    var headers: [FieldSnapshot]
    var host: ByteSpan?
    var framing: RequestBodyFraming
    var keepAlive: Bool
    var expectsContinue: Bool
    var headLength: Int

    init(_ h: RequestHead) {
        method = h.method
        isHEAD = h.isHEAD
        target = h.target
        targetIsEmptyPath = h.targetIsEmptyPath
        authority = h.authority
        version = h.version
        headers = h.headers.map { FieldSnapshot(name: $0.name, value: $0.value, kind: $0.kind, dropOnForward: $0.dropOnForward) }
        host = h.host
        framing = h.framing
        keepAlive = h.keepAlive
        expectsContinue = h.expectsContinue
        headLength = h.headLength
    }
}

struct ResponseSnapshot: Equatable {
    var status: Int
    var version: HTTPVersion
    var headers: [FieldSnapshot]
    var framing: ResponseBodyFraming
    var keepAlive: Bool
    var headLength: Int

    init(_ h: ResponseHead) {
        status = h.status
        version = h.version
        headers = h.headers.map { FieldSnapshot(name: $0.name, value: $0.value, kind: $0.kind, dropOnForward: $0.dropOnForward) }
        framing = h.framing
        keepAlive = h.keepAlive
        headLength = h.headLength
    }
}

/// The parse of one head: the verdict, and the head when it is complete.
struct Parsed<Snapshot: Equatable>: Equatable {
    var status: ParseStatus
    var head: Snapshot?
}

/// Invariants of the fields any complete head has, request or response.
func checkFields(_ headers: [FieldSnapshot], _ buffer: UnsafeRawBufferPointer, headLength: Int, limits: HTTP1Limits) throws(FuzzViolation) {
    try require(headers.count <= limits.maxHeaderCount, "\(headers.count) fields, limit \(limits.maxHeaderCount)")
    for field in headers {
        try checkSpan(field.name, inside: headLength, "field name")
        try checkSpan(field.value, inside: headLength, "field value")
        try require(field.name.count > 0, "empty field name at \(field.name.start)")
        try require(field.name.end <= field.value.start, "field name \(field.name) after its value \(field.value)")
        for i in field.name.start..<field.name.end {
            try require(isToken(buffer[i]), "field name byte \(buffer[i]) at \(i) is not a tchar")
        }
        // RFC 9112 §5.1: the value is trimmed of OWS and holds no CR, LF or NUL (RFC 9110 §5.5).
        for i in field.value.start..<field.value.end {
            let b = buffer[i]
            try require(b != 0x0D && b != 0x0A && b != 0x00, "field value byte \(b) at \(i)")
        }
        if field.value.count > 0 {
            try require(!isOWS(buffer[field.value.start]) && !isOWS(buffer[field.value.end - 1]), "field value \(field.value) not trimmed")
        }
        try require(field.kind == HeaderKind.classify(buffer, field.name), "field at \(field.name.start) classified \(field.kind)")
        if field.kind.isDroppedOnForward { try require(field.dropOnForward, "hop-by-hop field \(field.kind) kept for forwarding") }
    }
}

func checkSpan(_ span: ByteSpan, inside count: Int, _ what: String) throws(FuzzViolation) {
    try require(span.start >= 0 && span.count >= 0 && span.end <= count, "\(what) span \(span) outside the \(count)-byte head")
}

/// The head ends with the CRLF of its empty line (RFC 9112 §2.1).
func checkHeadEnd(_ buffer: UnsafeRawBufferPointer, headLength: Int, limits: HTTP1Limits) throws(FuzzViolation) {
    try require(headLength >= 2 && headLength <= buffer.count, "head length \(headLength) of \(buffer.count) bytes")
    try require(headLength <= limits.maxHeadBytes, "head length \(headLength) above the limit \(limits.maxHeadBytes)")
    try require(buffer[headLength - 2] == 0x0D && buffer[headLength - 1] == 0x0A, "head does not end in CRLF")
}

/// RFC 9110 §5.6.2 tchar, written out again so the check does not trust the parser's table.
func isToken(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
    default: return false
    }
}

func isOWS(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

/// Limits small enough that fuzz inputs reach every limit; a tighter limit may only turn an accepted head into a
/// rejected one, never change what an accepted head says.
let tightLimits: HTTP1Limits = {
    var limits = HTTP1Limits()
    limits.maxHeadBytes = 512
    limits.maxHeaderCount = 8
    limits.maxTargetBytes = 64
    return limits
}()
