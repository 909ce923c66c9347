// ChunkedDecoder: streaming decoder for the chunked transfer coding (RFC 9112 §7.1), request or response.
// Protocol layer (SluiceHTTP1). Bytes in, data spans out; it keeps only counters between calls (never
// buffered bytes), so a chunk line split across reads costs nothing and its length is bounded.

public struct ChunkedDecoder {
    public enum Step: Equatable, Sendable {
        /// Body bytes inside the input, within the consumed range.
        case data(ByteSpan)
        /// Everything given was consumed; call again with more.
        case needMore
        /// The last-chunk and trailer section are complete.
        case end
        case failed(HTTPParseError)
    }

    enum State: UInt8 {
        case size  // chunk-size = 1*HEXDIG
        case sizeBWS  // whitespace after the size: only ";" may follow (RFC 9112 §7.1.1 BWS ";")
        case extNameStart  // after ";": BWS then chunk-ext-name
        case extName
        case extAfterName  // whitespace after a name: "=" or ";" must follow
        case extValueStart  // after "=": BWS then token or quoted-string
        case extToken
        case extQuoted
        case extQuotedPair
        case extQuoteEnd  // right after a closing DQUOTE
        case extAfterValue  // whitespace after a value: ";" must follow (no BWS before CRLF)
        case sizeLF  // CR of the chunk line seen
        case data
        case dataCR  // RFC 9112 §7.1: CRLF after chunk-data, exactly (errata 7633: no bare LF)
        case dataLF
        case trailers  // trailer-section = *( field-line CRLF ) CRLF
        case done
        case failed
    }

    let maxChunkLineBytes: Int
    let maxTrailerBytes: Int
    var state: State = .size
    /// The size being read, then the data bytes still to come.
    var size = 0
    var digits = 0
    var lineBytes = 0
    var trailerBytes = 0
    var trailer = FieldLineScanner()
    var failure = HTTPParseError(status: 400, reason: HTTPParseReason.invalidChunkSize)

    public init(maxChunkLineBytes: Int = 4096, maxTrailerBytes: Int = 16 * 1024) {
        self.maxChunkLineBytes = maxChunkLineBytes
        self.maxTrailerBytes = maxTrailerBytes
    }

    public mutating func reset() {
        state = .size
        size = 0
        digits = 0
        lineBytes = 0
        trailerBytes = 0
        trailer.reset()
    }

    /// Decodes from the start of `input`; returns how many bytes it consumed and what it found.
    /// After `.end`, `consumed` stops right after the final CRLF so pipelined bytes stay unconsumed.
    public mutating func next(_ input: UnsafeRawBufferPointer) -> (consumed: Int, step: Step) {
        let n = input.count
        var p = 0
        while p < n {
            let b = input[p]
            switch state {
            case .size, .sizeBWS, .extNameStart, .extName, .extAfterName, .extValueStart, .extToken, .extQuoted,
                .extQuotedPair, .extQuoteEnd, .extAfterValue, .sizeLF:
                lineBytes += 1
                if lineBytes > maxChunkLineBytes { return fail(p, HTTPParseReason.chunkLineTooLong) }
                if let reason = lineByte(b) { return fail(p, reason) }
            case .data:
                let take = min(size, n - p)
                size -= take
                if size == 0 { state = .dataCR }
                return (p + take, .data(ByteSpan(start: p, count: take)))
            case .dataCR:
                guard b == ASCII.cr else { return fail(p, HTTPParseReason.missingChunkCRLF) }
                state = .dataLF
            case .dataLF:
                guard b == ASCII.lf else { return fail(p, HTTPParseReason.missingChunkCRLF) }
                state = .size
                size = 0
                digits = 0
                lineBytes = 0
            case .trailers:
                trailerBytes += 1
                if trailerBytes > maxTrailerBytes { return fail(p, HTTPParseReason.trailersTooLarge) }
                // Trailers get the header rules (RFC 9112 §7.1.2) and are then discarded: the proxy
                // re-frames the body and never forwards fields it did not validate into a header section.
                switch trailer.consume(b, at: p) {
                case .none, .name, .field:
                    break
                case .end:
                    state = .done
                    return (p + 1, .end)
                case .failed(let violation):
                    return fail(p, violation.reason)
                }
            case .done:
                return (0, .end)
            case .failed:
                return (0, .failed(failure))
            }
            p += 1
        }
        switch state {
        case .done: return (0, .end)
        case .failed: return (0, .failed(failure))
        case .size, .sizeBWS, .extNameStart, .extName, .extAfterName, .extValueStart, .extToken, .extQuoted,
            .extQuotedPair, .extQuoteEnd, .extAfterValue, .sizeLF, .data, .dataCR, .dataLF, .trailers:
            return (n, .needMore)
        }
    }

    mutating func fail(_ consumed: Int, _ reason: String) -> (consumed: Int, step: Step) {
        state = .failed
        failure = HTTPParseError(status: 400, reason: reason)
        return (consumed, .failed(failure))
    }

    /// One byte of a chunk line (size, extensions, CRLF). Returns a failure reason, or nil.
    mutating func lineByte(_ b: UInt8) -> String? {
        switch state {
        case .size:
            if let h = ASCII.hexValue(b) {
                // RFC 9112 §7.1: guard against overflow; 16 hex digits is the most an Int64 can mean.
                if digits == 16 { return HTTPParseReason.invalidChunkSize }
                if size > (Int.max - h) >> 4 { return HTTPParseReason.chunkSizeOverflow }
                size = size << 4 | h
                digits += 1
                return nil
            }
            if digits == 0 { return HTTPParseReason.invalidChunkSize }
            if b == ASCII.cr { state = .sizeLF; return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            if ASCII.isOWS(b) { state = .sizeBWS; return nil }
            return b == ASCII.lf ? HTTPParseReason.bareLF : HTTPParseReason.invalidChunkSize
        case .sizeBWS:
            // No trailing whitespace without an extension: "5 \r\n" is how parsers were desynced.
            if ASCII.isOWS(b) { return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            return HTTPParseReason.invalidChunkSize
        case .extNameStart:
            if ASCII.isOWS(b) { return nil }
            if ASCII.isToken(b) { state = .extName; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extName:
            if ASCII.isToken(b) { return nil }
            if b == ASCII.equals { state = .extValueStart; return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            if b == ASCII.cr { state = .sizeLF; return nil }
            if ASCII.isOWS(b) { state = .extAfterName; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extAfterName:
            if ASCII.isOWS(b) { return nil }
            if b == ASCII.equals { state = .extValueStart; return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extValueStart:
            if ASCII.isOWS(b) { return nil }
            if b == ASCII.quote { state = .extQuoted; return nil }
            if ASCII.isToken(b) { state = .extToken; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extToken:
            if ASCII.isToken(b) { return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            if b == ASCII.cr { state = .sizeLF; return nil }
            if ASCII.isOWS(b) { state = .extAfterValue; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extQuoted:
            // RFC 9110 §5.6.4 quoted-string.
            if b == ASCII.quote { state = .extQuoteEnd; return nil }
            if b == ASCII.backslash { state = .extQuotedPair; return nil }
            if ASCII.isQuotedText(b) { return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extQuotedPair:
            if ASCII.isFieldValue(b) { state = .extQuoted; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extQuoteEnd:
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            if b == ASCII.cr { state = .sizeLF; return nil }
            if ASCII.isOWS(b) { state = .extAfterValue; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .extAfterValue:
            if ASCII.isOWS(b) { return nil }
            if b == ASCII.semicolon { state = .extNameStart; return nil }
            return HTTPParseReason.invalidChunkExtension
        case .sizeLF:
            guard b == ASCII.lf else { return HTTPParseReason.bareCR }
            lineBytes = 0
            digits = 0
            if size == 0 {
                // last-chunk: the trailer section follows.
                trailer.reset()
                trailerBytes = 0
                state = .trailers
            } else {
                state = .data
            }
            return nil
        case .data, .dataCR, .dataLF, .trailers, .done, .failed:
            preconditionFailure("lineByte called outside a chunk line")
        }
    }
}
