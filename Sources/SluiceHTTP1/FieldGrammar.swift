// FieldGrammar: the value grammars the proxy acts on (Content-Length, Transfer-Encoding, Connection,
// Host). Protocol layer (SluiceHTTP1). Pure functions over spans; nothing here allocates.

enum FieldGrammar {
    /// Calls `body` with each non-empty, OWS-trimmed element of a comma list (RFC 9110 §5.6.1: a recipient
    /// ignores empty elements). Stops early and returns false when `body` does.
    @inline(__always)
    static func forEachElement(
        _ buffer: UnsafeRawBufferPointer, _ value: ByteSpan, _ body: (ByteSpan) -> Bool
    ) -> Bool {
        var i = value.start
        let end = value.end
        while i <= end {
            var j = i
            while j < end && buffer[j] != ASCII.comma { j += 1 }
            var s = i
            var e = j
            while s < e && ASCII.isOWS(buffer[s]) { s += 1 }
            while e > s && ASCII.isOWS(buffer[e - 1]) { e -= 1 }
            if e > s && !body(ByteSpan(start: s, count: e - s)) { return false }
            i = j + 1
        }
        return true
    }

    /// RFC 9112 §6.3 item 5 / RFC 9110 §8.6: `1*DIGIT`, or a comma list of identical values, which MAY be
    /// collapsed. Empty values and empty list elements are rejected (HAProxy CVE-2023-40225 was an
    /// empty CL forwarded). At most 18 digits so the value always fits in an Int.
    static func contentLength(_ buffer: UnsafeRawBufferPointer, _ value: ByteSpan) -> Int? {
        if value.count == 0 { return nil }
        var result = -1
        var i = value.start
        let end = value.end
        while i <= end {
            var j = i
            while j < end && buffer[j] != ASCII.comma { j += 1 }
            var s = i
            var e = j
            while s < e && ASCII.isOWS(buffer[s]) { s += 1 }
            while e > s && ASCII.isOWS(buffer[e - 1]) { e -= 1 }
            let digits = e - s
            if digits == 0 || digits > 18 { return nil }
            var n = 0
            var k = s
            while k < e {
                let b = buffer[k]
                guard ASCII.isDigit(b) else { return nil }
                n = n * 10 + Int(b - 0x30)
                k += 1
            }
            if result >= 0 && result != n { return nil }
            result = n
            i = j + 1
        }
        return result
    }

    /// Host and absolute-form authority: `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2).
    /// uri-host is a reg-name (unreserved / pct-encoded / sub-delims) or an IPv6 literal in brackets;
    /// the port is 1–5 digits. An empty host is rejected: a gateway routes by it. Userinfo (`@`) is not
    /// a reg-name character, so it is rejected too (RFC 9110 §4.2.4 says to treat it as an error).
    static func isValidHost(_ buffer: UnsafeRawBufferPointer, _ span: ByteSpan) -> Bool {
        let end = span.end
        var i = span.start
        guard i < end else { return false }
        if buffer[i] == 0x5B {  // "[" IPv6address "]"
            i += 1
            let literalStart = i
            while i < end && buffer[i] != 0x5D {
                let b = buffer[i]
                guard ASCII.hexValue(b) != nil || b == ASCII.colon || b == 0x2E else { return false }
                i += 1
            }
            guard i < end, i - literalStart >= 2 else { return false }
            i += 1
        } else {
            let nameStart = i
            while i < end && buffer[i] != ASCII.colon {
                let b = buffer[i]
                if b == 0x25 {  // pct-encoded
                    guard i + 2 < end, ASCII.hexValue(buffer[i + 1]) != nil, ASCII.hexValue(buffer[i + 2]) != nil
                    else { return false }
                    i += 3
                    continue
                }
                guard ASCII.isRegName(b) else { return false }
                i += 1
            }
            guard i > nameStart else { return false }
        }
        if i == end { return true }
        guard buffer[i] == ASCII.colon else { return false }
        i += 1
        let digits = end - i
        guard digits >= 1 && digits <= 5 else { return false }
        while i < end {
            guard ASCII.isDigit(buffer[i]) else { return false }
            i += 1
        }
        return true
    }

    /// RFC 9110 §7.6.1: a proxy removes the fields named by Connection before forwarding. Done after the
    /// whole section is read because Connection may come after the fields it names.
    static func markFieldsNamed(
        by tokens: [ByteSpan], in headers: inout [HeaderField], _ buffer: UnsafeRawBufferPointer
    ) {
        if tokens.isEmpty { return }
        for i in headers.indices where !headers[i].dropOnForward {
            let name = headers[i].name
            for token in tokens where buffer.span(name, equalsIgnoringCase: token) {
                headers[i].dropOnForward = true
                break
            }
        }
    }

    /// Whether every byte of `span` is a tchar.
    static func isToken(_ buffer: UnsafeRawBufferPointer, _ span: ByteSpan) -> Bool {
        guard span.count > 0 else { return false }
        var i = span.start
        while i < span.end {
            guard ASCII.isToken(buffer[i]) else { return false }
            i += 1
        }
        return true
    }
}

/// What the Transfer-Encoding lines of one head said, accumulated across lines (RFC 9110 §5.3: several
/// lines are one comma list). The parsers decide what the facts mean for their side.
struct TransferCodings {
    var isPresent = false
    var chunkedCount = 0
    var isChunkedLast = false
    /// A coding other than chunked appears after a chunked (request: 400, RFC 9112 §6.3 item 4).
    var hasCodingAfterChunked = false

    /// Adds one Transfer-Encoding line. Returns false if the line is not a valid list of
    /// `transfer-coding = token *( OWS ";" OWS transfer-parameter )` (RFC 9112 §7). Parameters with
    /// quoted strings are rejected: no real client sends them and they could hide a comma.
    mutating func add(_ buffer: UnsafeRawBufferPointer, _ value: ByteSpan) -> Bool {
        isPresent = true
        var elements = 0
        var codings = self
        let ok = FieldGrammar.forEachElement(buffer, value) { element in
            elements += 1
            var nameEnd = element.start
            while nameEnd < element.end && ASCII.isToken(buffer[nameEnd]) { nameEnd += 1 }
            let name = ByteSpan(start: element.start, count: nameEnd - element.start)
            guard name.count > 0 else { return false }
            var hasParameters = false
            var k = nameEnd
            while k < element.end {
                let b = buffer[k]
                if b == ASCII.semicolon {
                    hasParameters = true
                } else if !(ASCII.isToken(b) || ASCII.isOWS(b) || b == ASCII.equals) {
                    return false
                }
                k += 1
            }
            if nameEnd < element.end && !hasParameters { return false }
            if buffer.span(name, equalsLowercase: "chunked") {
                // RFC 9112 §7: chunked takes no parameters.
                if hasParameters { return false }
                codings.chunkedCount += 1
                codings.isChunkedLast = true
            } else {
                if codings.isChunkedLast || codings.chunkedCount > 0 { codings.hasCodingAfterChunked = true }
                codings.isChunkedLast = false
            }
            return true
        }
        self = codings
        // An empty Transfer-Encoding says nothing useful and is a classic desync probe.
        return ok && elements > 0
    }
}

/// What the Connection lines said (RFC 9110 §7.6.1). Other tokens name fields to drop on forward.
struct ConnectionOptions {
    var hasClose = false
    var hasKeepAlive = false

    /// Returns false if an element is not a token.
    mutating func add(_ buffer: UnsafeRawBufferPointer, _ value: ByteSpan, naming tokens: inout [ByteSpan]) -> Bool {
        var options = self
        let ok = FieldGrammar.forEachElement(buffer, value) { element in
            guard FieldGrammar.isToken(buffer, element) else { return false }
            if buffer.span(element, equalsLowercase: "close") {
                options.hasClose = true
            } else if buffer.span(element, equalsLowercase: "keep-alive") {
                options.hasKeepAlive = true
            } else {
                tokens.append(element)
            }
            return true
        }
        self = options
        return ok
    }
}
