// FieldLineScanner: byte-at-a-time validation of field lines (header section and chunked trailers).
// Protocol layer (SluiceHTTP1). Shared by RequestParser, ResponseParser and ChunkedDecoder.
//
// Line endings: CRLF only. RFC 9112 §2.2 lets a recipient accept a bare LF, but a gateway never
// forwards bytes it did not produce (it re-serialises every head), and guessing where a line ends is
// exactly what request smuggling exploits; so a bare LF is rejected rather than guessed at. A bare CR
// MUST be rejected or replaced (RFC 9112 §2.2); we reject.

struct FieldLineScanner {
    enum State: UInt8 {
        case lineStart  // first byte of a field line, or the CR of the empty line ending the section
        case name
        case value
        case valueCR  // saw CR after a value, LF must follow
        case finalCR  // saw CR of the empty line, LF must follow
    }

    enum Violation {
        case bareLF, bareCR, obsFold, whitespaceBeforeColon, emptyName, missingColon, invalidName, invalidValue

        var reason: String {
            switch self {
            case .bareLF: return HTTPParseReason.bareLF
            case .bareCR: return HTTPParseReason.bareCR
            case .obsFold: return HTTPParseReason.obsFold
            case .whitespaceBeforeColon: return HTTPParseReason.whitespaceBeforeColon
            case .emptyName: return HTTPParseReason.emptyHeaderName
            case .missingColon: return HTTPParseReason.missingColon
            case .invalidName, .invalidValue: return HTTPParseReason.invalidCharacters
            }
        }
    }

    enum Event {
        case none
        /// The colon after a name: lets the parser apply name-only rules before the value arrives.
        case name(ByteSpan)
        /// A complete line; `value` is OWS-trimmed.
        case field(name: ByteSpan, value: ByteSpan, hasUnderscore: Bool)
        /// The empty line that ends the section (its LF was the byte just consumed).
        case end
        case failed(Violation)
    }

    var state: State = .lineStart
    var nameStart = 0
    var nameEnd = 0
    var valueFirst = -1
    var valueEnd = 0
    var hasUnderscore = false

    mutating func reset() {
        state = .lineStart
        valueFirst = -1
        hasUnderscore = false
    }

    /// Skips, from offset `p`, the bytes that only continue the current name or value (most of a head), doing for
    /// each what `consume` would (the underscore note, the value's first and last byte), and returns the offset of
    /// the first byte that may change the state, or `limit`. That byte, and every other, goes through `consume`, so
    /// every rule is still checked on the byte that decides it. A name byte is a token byte; a value byte here is
    /// VCHAR or obs-text (0x21–0x7E, 0x80–0xFF): whitespace, which is trimmed at the ends, and CR stop the skip.
    @inline(__always)
    mutating func skipPlain(_ buffer: UnsafeRawBufferPointer, from p: Int, limit: Int) -> Int {
        var q = p
        switch state {
        case .name:
            while q < limit {
                let b = buffer[q]
                guard ASCII.isToken(b) else { break }
                if b == ASCII.underscore { hasUnderscore = true }
                q &+= 1
            }
        case .value:
            while q < limit {
                let b = buffer[q]
                guard b > ASCII.sp && b != 0x7F else { break }
                q &+= 1
            }
            if q > p {
                if valueFirst < 0 { valueFirst = p }
                valueEnd = q
            }
        case .lineStart, .valueCR, .finalCR:
            break
        }
        return q
    }

    /// Consumes the byte at offset `pos`. Positions only matter for spans; the chunked decoder ignores them.
    @inline(__always)
    mutating func consume(_ b: UInt8, at pos: Int) -> Event {
        switch state {
        case .lineStart:
            if ASCII.isToken(b) {
                nameStart = pos
                hasUnderscore = b == ASCII.underscore
                state = .name
                return .none
            }
            if b == ASCII.cr { state = .finalCR; return .none }
            if b == ASCII.lf { return .failed(.bareLF) }
            // RFC 9112 §5.2: obs-fold MUST be rejected (or unfolded) by a server; we never forward a fold.
            // RFC 9112 §2.2: whitespace between the start line and the first field MUST be rejected or skipped.
            if ASCII.isOWS(b) { return .failed(.obsFold) }
            // RFC 9110 §5.1: field-name = token, so an empty name is invalid (CVE-2023-25725 class).
            if b == ASCII.colon { return .failed(.emptyName) }
            return .failed(.invalidName)
        case .name:
            if ASCII.isToken(b) {
                if b == ASCII.underscore { hasUnderscore = true }
                return .none
            }
            if b == ASCII.colon {
                nameEnd = pos
                valueFirst = -1
                state = .value
                return .name(ByteSpan(start: nameStart, count: pos - nameStart))
            }
            // RFC 9112 §5.1: a server MUST reject whitespace between field name and colon with 400.
            if ASCII.isOWS(b) { return .failed(.whitespaceBeforeColon) }
            if b == ASCII.cr || b == ASCII.lf { return .failed(.missingColon) }
            return .failed(.invalidName)
        case .value:
            if b == ASCII.cr { state = .valueCR; return .none }
            if ASCII.isOWS(b) { return .none }
            if ASCII.isFieldValue(b) {
                if valueFirst < 0 { valueFirst = pos }
                valueEnd = pos + 1
                return .none
            }
            if b == ASCII.lf { return .failed(.bareLF) }
            // RFC 9110 §5.5: CR, LF, NUL and other CTLs in a value are rejected, never passed on.
            return .failed(.invalidValue)
        case .valueCR:
            if b != ASCII.lf { return .failed(.bareCR) }
            state = .lineStart
            let name = ByteSpan(start: nameStart, count: nameEnd - nameStart)
            let value = valueFirst < 0
                ? ByteSpan(start: nameEnd + 1, count: 0)
                : ByteSpan(start: valueFirst, count: valueEnd - valueFirst)
            return .field(name: name, value: value, hasUnderscore: hasUnderscore)
        case .finalCR:
            if b != ASCII.lf { return .failed(.bareCR) }
            return .end
        }
    }
}
