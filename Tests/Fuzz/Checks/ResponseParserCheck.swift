// Fuzzing (Tests/Fuzz): the per-input check of ResponseParser and the response body path behind it — the bytes a
// pod sends on one upstream connection: interim and final heads, Content-Length or chunked bodies, pipelined.
import SluiceHTTP1

public enum ResponseParserCheck {
    static let maxMessages = 8

    /// Parses `input` as an upstream connection's bytes, response after response, each head in one call, byte by
    /// byte, after `reset()`, under tight limits, and as the answer to a HEAD request (which changes its framing
    /// and nothing else).
    public static func check(_ input: UnsafeRawBufferPointer) throws(FuzzViolation) {
        var whole = ResponseParser(limits: HTTP1Limits())
        var split = ResponseParser(limits: HTTP1Limits())
        var tight = ResponseParser(limits: tightLimits)
        var offset = 0
        for _ in 0..<maxMessages where offset < input.count {
            let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
            whole.reset()
            split.reset()
            tight.reset()
            let first = parse(&whole, rest, head: false)
            try checkHead(first, rest, limits: HTTP1Limits())
            let bytewise = parseByteByByte(&split, rest)
            try require(bytewise == first, "byte by byte \(bytewise.status) differs from whole \(first.status) at offset \(offset)")
            whole.reset()
            let again = parse(&whole, rest, head: false)
            try require(again == first, "after reset \(again.status) differs from \(first.status) at offset \(offset)")
            whole.reset()
            let toHEAD = parse(&whole, rest, head: true)
            try checkHead(toHEAD, rest, limits: HTTP1Limits())
            try require(toHEAD.status == first.status, "answer to HEAD \(toHEAD.status), to GET \(first.status)")
            if var headAnswer = toHEAD.head, let getAnswer = first.head {
                // RFC 9112 §6.3 item 1: the answer to HEAD has no body; and so it can stay persistent.
                try require(headAnswer.framing == .none, "answer to HEAD framed \(headAnswer.framing)")
                headAnswer.framing = getAnswer.framing
                headAnswer.keepAlive = getAnswer.keepAlive
                try require(headAnswer == getAnswer, "HEAD changed more than the framing at offset \(offset)")
            }
            let limited = parse(&tight, rest, head: false)
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
            case .untilClose:
                return
            }
            // An interim (1xx) response is followed by the final one on the same connection (RFC 9110 §15.2).
            if !head.keepAlive && head.status >= 200 { return }
        }
    }

    static func parse(_ parser: inout ResponseParser, _ bytes: UnsafeRawBufferPointer, head: Bool) -> Parsed<ResponseSnapshot> {
        let status = parser.parse(bytes, requestWasHEAD: head)
        return Parsed(status: status, head: status == .complete ? ResponseSnapshot(parser.head) : nil)
    }

    static func parseByteByByte(_ parser: inout ResponseParser, _ bytes: UnsafeRawBufferPointer) -> Parsed<ResponseSnapshot> {
        var status = ParseStatus.incomplete
        var end = 0
        while status == .incomplete && end <= bytes.count {
            status = parser.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<end]), requestWasHEAD: false)
            end += 1
        }
        return Parsed(status: status, head: status == .complete ? ResponseSnapshot(parser.head) : nil)
    }

    static func checkHead(_ parsed: Parsed<ResponseSnapshot>, _ buffer: UnsafeRawBufferPointer, limits: HTTP1Limits) throws(FuzzViolation) {
        switch parsed.status {
        case .incomplete:
            try require(buffer.count <= limits.maxHeadBytes, "incomplete after \(buffer.count) bytes, limit \(limits.maxHeadBytes)")
            return
        case .failed(let error):
            // Whatever is wrong with a pod's response, the client gets 502 (RFC 9112 §6.3 item 5).
            try require(error.status == 502 && !error.reason.isEmpty, "response rejected with \(error)")
            return
        case .complete:
            break
        }
        guard let head = parsed.head else { throw FuzzViolation("complete without a head") }
        try checkHeadEnd(buffer, headLength: head.headLength, limits: limits)
        try require((100...599).contains(head.status), "status \(head.status)")
        try checkFields(head.headers, buffer, headLength: head.headLength, limits: limits)
        let hasTE = head.headers.contains { $0.kind == .transferEncoding }
        let hasCL = head.headers.contains { $0.kind == .contentLength }
        try require(!(hasTE && hasCL), "Content-Length and Transfer-Encoding accepted together")
        if head.status < 200 || head.status == 204 || head.status == 304 {
            try require(head.framing == .none, "status \(head.status) framed \(head.framing)")
        }
        switch head.framing {
        case .none, .untilClose: break
        case .contentLength(let length): try require(hasCL && length >= 0, "Content-Length framing \(length) without a valid field")
        case .chunked: try require(hasTE && head.version == .http11, "chunked framing without TE on HTTP/1.1")
        }
        // A body that runs to the close leaves nothing to reuse the connection for.
        if head.framing == .untilClose { try require(!head.keepAlive, "keep-alive with a close-delimited body") }
    }
}
