// Fuzzing (Tests/Fuzz): the per-input check of RequestParser and the request body path behind it — the bytes a
// client sends on one connection: heads, Content-Length or chunked bodies (ChunkedDecoderCheck), pipelined.
import SluiceHTTP1

public enum RequestParserCheck {
    /// Requests read from one input at most; a connection's later requests take the same paths as its first.
    static let maxMessages = 8

    /// Parses `input` as a connection's bytes, request after request, and checks each head four ways: in one call,
    /// byte by byte (the verdict must not depend on how reads split the bytes), after `reset()` on a used parser
    /// (reuse keeps no state), and under tight limits (which may only reject more).
    public static func check(_ input: UnsafeRawBufferPointer) throws(FuzzViolation) {
        var whole = RequestParser(limits: HTTP1Limits())
        var split = RequestParser(limits: HTTP1Limits())
        var tight = RequestParser(limits: tightLimits)
        var offset = 0
        for _ in 0..<maxMessages where offset < input.count {
            let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
            whole.reset()
            split.reset()
            tight.reset()
            let first = parse(&whole, rest)
            try checkHead(first, rest, limits: HTTP1Limits())
            let bytewise = parseByteByByte(&split, rest)
            try require(bytewise == first, "byte by byte \(bytewise.status) differs from whole \(first.status) at offset \(offset)")
            whole.reset()
            let again = parse(&whole, rest)
            try require(again == first, "after reset \(again.status) differs from \(first.status) at offset \(offset)")
            let limited = parse(&tight, rest)
            try checkHead(limited, rest, limits: tightLimits)
            switch (first.status, limited.status) {
            case (.complete, .complete):
                try require(limited.head == first.head, "tight limits changed an accepted head at offset \(offset)")
            case (.failed, .complete), (.incomplete, .complete):
                throw FuzzViolation("tight limits accepted what default limits say is \(first.status) at offset \(offset)")
            case (.complete, _), (.failed, _), (.incomplete, _):
                break
            }
            guard first.status == .complete, let head = first.head else { return }
            offset += head.headLength
            switch head.framing {
            case .none:
                break
            case .contentLength(let n):
                guard n <= input.count - offset else { return }
                offset += n
            case .chunked:
                guard let end = try ChunkedDecoderCheck.decodeBody(UnsafeRawBufferPointer(rebasing: input[offset...])) else { return }
                offset += end
            }
            // Persistence (RFC 9112 §9.3): after a non-persistent request the gateway reads nothing more.
            if !head.keepAlive { return }
        }
    }

    static func parse(_ parser: inout RequestParser, _ bytes: UnsafeRawBufferPointer) -> Parsed<RequestSnapshot> {
        let status = parser.parse(bytes)
        return Parsed(status: status, head: status == .complete ? RequestSnapshot(parser.head) : nil)
    }

    /// Same start, one byte longer per call, as the slowest reads would deliver it.
    static func parseByteByByte(_ parser: inout RequestParser, _ bytes: UnsafeRawBufferPointer) -> Parsed<RequestSnapshot> {
        var status = ParseStatus.incomplete
        var end = 0
        while status == .incomplete && end <= bytes.count {
            status = parser.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<end]))
            end += 1
        }
        return Parsed(status: status, head: status == .complete ? RequestSnapshot(parser.head) : nil)
    }

    static func checkHead(_ parsed: Parsed<RequestSnapshot>, _ buffer: UnsafeRawBufferPointer, limits: HTTP1Limits) throws(FuzzViolation) {
        switch parsed.status {
        case .incomplete:
            // A head that has not ended within the limit is 431, never a wait for more (RFC 6585 §5).
            try require(buffer.count <= limits.maxHeadBytes, "incomplete after \(buffer.count) bytes, limit \(limits.maxHeadBytes)")
            return
        case .failed(let error):
            try require([400, 414, 417, 431, 501, 505].contains(error.status), "request rejected with status \(error.status)")
            try require(!error.reason.isEmpty, "rejection without a reason")
            return
        case .complete:
            break
        }
        guard let head = parsed.head else { throw FuzzViolation("complete without a head") }
        let n = head.headLength
        try checkHeadEnd(buffer, headLength: n, limits: limits)
        try checkSpan(head.method, inside: n, "method")
        try checkSpan(head.target, inside: n, "target")
        try require(head.method.count > 0, "empty method")
        for i in head.method.start..<head.method.end { try require(isToken(buffer[i]), "method byte \(buffer[i])") }
        try require(head.target.end <= head.headLength, "target past the head")
        try require(head.target.count <= limits.maxTargetBytes, "target of \(head.target.count) bytes, limit \(limits.maxTargetBytes)")
        try require(head.isHEAD == buffer.span(head.method, equalsBytes: "HEAD"), "isHEAD is \(head.isHEAD)")
        if let authority = head.authority {
            try checkSpan(authority, inside: n, "authority")
            try require(head.host == authority, "absolute-form: host \(String(describing: head.host)) is not the authority \(authority)")
        }
        try checkFields(head.headers, buffer, headLength: n, limits: limits)
        let hosts = head.headers.filter { $0.kind == .host }
        try require(hosts.count <= 1, "\(hosts.count) Host fields accepted")
        if head.authority == nil { try require(head.host == hosts.first?.value, "host is not the Host field") }
        if head.version == .http11 { try require(head.host != nil, "HTTP/1.1 request without a host") }
        // RFC 9112 §6.1, §6.3: one framing, and the one the fields say.
        let hasTE = head.headers.contains { $0.kind == .transferEncoding }
        let hasCL = head.headers.contains { $0.kind == .contentLength }
        try require(!(hasTE && hasCL), "Content-Length and Transfer-Encoding accepted together")
        switch head.framing {
        case .none: try require(!hasTE && !hasCL, "no framing despite CL or TE")
        case .contentLength(let length): try require(hasCL && length >= 0, "Content-Length framing \(length) without a valid field")
        case .chunked: try require(hasTE && head.version == .http11, "chunked framing without TE on HTTP/1.1")
        }
        if head.version == .http10 { try require(!head.expectsContinue, "100-continue on HTTP/1.0") }
    }
}
