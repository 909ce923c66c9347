// Fuzzing (Tests/Fuzz): the per-input check of ChunkedDecoder, on its own (a chunked body) and as the body path of
// the request and response checks.
import SluiceHTTP1

public enum ChunkedDecoderCheck {
    /// What decoding a whole input came to: the body bytes, how it stopped, and the offset it stopped at.
    struct Outcome: Equatable {
        enum End: Equatable { case end, needMore, failed(HTTPParseError) }
        var data: [UInt8]
        var end: End
        /// After `.end`, the first byte past the final CRLF; after a failure, the offending byte.
        var offset: Int
    }

    /// Decodes `input` in one window and one byte per call, after `reset()`, and under tight limits; the body,
    /// the verdict and where it stopped must not depend on the windows, and a tight limit may only reject more.
    public static func check(_ input: UnsafeRawBufferPointer) throws(FuzzViolation) {
        var decoder = ChunkedDecoder()
        let whole = try decode(&decoder, input, window: input.count)
        let bytewise = try decode(&decoder, input, window: 1)
        try require(bytewise == whole, "byte by byte \(bytewise.end) at \(bytewise.offset), whole \(whole.end) at \(whole.offset)")
        var tight = ChunkedDecoder(maxChunkLineBytes: 16, maxTrailerBytes: 64)
        let limited = try decode(&tight, input, window: 7)
        if limited.end != .end { return }
        try require(limited == whole, "tight limits changed an accepted body: \(whole.end) at \(whole.offset)")
    }

    /// The request and response checks' body path: where the body ends in `input`, or nil when it does not.
    static func decodeBody(_ input: UnsafeRawBufferPointer) throws(FuzzViolation) -> Int? {
        var decoder = ChunkedDecoder()
        let whole = try decode(&decoder, input, window: input.count)
        let split = try decode(&decoder, input, window: 3)
        try require(split == whole, "chunked body in 3-byte windows \(split.end) at \(split.offset), whole \(whole.end) at \(whole.offset)")
        return whole.end == .end ? whole.offset : nil
    }

    /// Runs `decoder` (reset first) over `input`, offering at most `window` new bytes per call as reads would,
    /// and checks each step's contract.
    static func decode(_ decoder: inout ChunkedDecoder, _ input: UnsafeRawBufferPointer, window: Int) throws(FuzzViolation) -> Outcome {
        decoder.reset()
        var data: [UInt8] = []
        var offset = 0
        // Unconsumed bytes stay offered: the proxy passes the whole unconsumed region again with more appended.
        var available = min(window, input.count)
        while true {
            let offered = UnsafeRawBufferPointer(rebasing: input[offset..<available])
            let (consumed, step) = decoder.next(offered)
            try require(consumed >= 0 && consumed <= offered.count, "consumed \(consumed) of \(offered.count)")
            switch step {
            case .data(let span):
                try require(span.count > 0, "empty data step at \(offset)")
                try require(span.start >= 0 && span.end == consumed, "data span \(span) with \(consumed) consumed")
                data += offered[span.start..<span.end]
                offset += consumed
            case .needMore:
                try require(consumed == offered.count, "needMore after consuming \(consumed) of \(offered.count)")
                offset += consumed
                if available == input.count { return Outcome(data: data, end: .needMore, offset: offset) }
                available = min(available + window, input.count)
            case .end:
                offset += consumed
                // Final: the decoder says so again and consumes nothing, whatever follows.
                let (again, step) = decoder.next(UnsafeRawBufferPointer(rebasing: input[offset...]))
                try require(again == 0 && step == .end, "after the end: \(step), \(again) consumed")
                return Outcome(data: data, end: .end, offset: offset)
            case .failed(let error):
                try require(error.status == 400 && !error.reason.isEmpty, "chunked failure \(error)")
                offset += consumed
                let (again, step) = decoder.next(UnsafeRawBufferPointer(rebasing: input[offset...]))
                try require(again == 0 && step == .failed(error), "after a failure: \(step), \(again) consumed")
                return Outcome(data: data, end: .failed(error), offset: offset)
            }
        }
    }
}
