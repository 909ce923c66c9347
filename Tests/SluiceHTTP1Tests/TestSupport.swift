// Test helpers: run parsers over byte arrays, render heads as comparable text.
import XCTest
@testable import SluiceHTTP1

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func text(_ raw: [UInt8], _ span: ByteSpan?) -> String? {
    guard let span else { return nil }
    return String(decoding: raw[span.start..<span.end], as: UTF8.self)
}

/// Parses `raw` in one call.
func parseRequest(_ raw: [UInt8], limits: HTTP1Limits = HTTP1Limits()) -> (ParseStatus, RequestHead) {
    var parser = RequestParser(limits: limits)
    let status = raw.withUnsafeBytes { parser.parse($0) }
    return (status, parser.head)
}

func parseRequest(_ s: String, limits: HTTP1Limits = HTTP1Limits()) -> (ParseStatus, RequestHead) {
    parseRequest(bytes(s), limits: limits)
}

func parseResponse(_ s: String, head requestWasHEAD: Bool = false) -> (ParseStatus, ResponseHead) {
    var parser = ResponseParser(limits: HTTP1Limits())
    let raw = bytes(s)
    let status = raw.withUnsafeBytes { parser.parse($0, requestWasHEAD: requestWasHEAD) }
    return (status, parser.head)
}

/// Feeds growing prefixes of `raw` (ending at each cut, then the whole) the way the proxy does:
/// same start, longer length. Returns the first non-incomplete status.
func parseRequestIncrementally(_ raw: [UInt8], cuts: [Int], limits: HTTP1Limits = HTTP1Limits())
    -> (ParseStatus, RequestHead)
{
    var parser = RequestParser(limits: limits)
    var status = ParseStatus.incomplete
    raw.withUnsafeBytes { all in
        for end in cuts + [raw.count] {
            status = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<end]))
            if status != .incomplete { return }
        }
    }
    return (status, parser.head)
}

func describe(_ head: RequestHead, _ raw: [UInt8]) -> String {
    var s = "\(text(raw, head.method)!) \(text(raw, head.target)!) empty=\(head.targetIsEmptyPath) "
    s += "auth=\(text(raw, head.authority) ?? "-") host=\(text(raw, head.host) ?? "-") \(head.version) "
    s += "\(head.framing) ka=\(head.keepAlive) 100=\(head.expectsContinue) len=\(head.headLength) HEAD=\(head.isHEAD)\n"
    for h in head.headers {
        s += "\(text(raw, h.name)!)=[\(text(raw, h.value)!)] \(h.kind) drop=\(h.dropOnForward)\n"
    }
    return s
}

func describe(_ head: ResponseHead, _ raw: [UInt8]) -> String {
    var s = "\(head.status) \(head.version) \(head.framing) ka=\(head.keepAlive) len=\(head.headLength)\n"
    for h in head.headers {
        s += "\(text(raw, h.name)!)=[\(text(raw, h.value)!)] \(h.kind) drop=\(h.dropOnForward)\n"
    }
    return s
}

/// Runs a chunked body through a decoder; the input grows to each offset in `splits` in turn (then to the
/// end), as reads arrive. Returns the decoded data, the final step and the total bytes consumed.
func decodeChunked(_ raw: [UInt8], splits: [Int] = []) -> (data: [UInt8], step: ChunkedDecoder.Step, consumed: Int) {
    var decoder = ChunkedDecoder()
    var data: [UInt8] = []
    var offset = 0
    var available = splits.first ?? raw.count
    var nextSplit = 1
    return raw.withUnsafeBytes { all in
        while true {
            let (consumed, step) = decoder.next(UnsafeRawBufferPointer(rebasing: all[offset..<available]))
            switch step {
            case .data(let span):
                data += raw[(offset + span.start)..<(offset + span.end)]
                offset += consumed
            case .needMore:
                offset += consumed
                if available == raw.count { return (data, .needMore, offset) }
                available = nextSplit < splits.count ? max(splits[nextSplit], offset) : raw.count
                nextSplit += 1
            case .end:
                return (data, .end, offset + consumed)
            case .failed(let e):
                return (data, .failed(e), offset + consumed)
            }
        }
    }
}
