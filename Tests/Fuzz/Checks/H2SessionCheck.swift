// Fuzzing (Tests/Fuzz): the per-input check of H2Session — the input is what a client sends on one connection
// (preface, then frames), fed in reads of varying size to a session owned by a gateway-like delegate.
import SluiceHTTP2
import SluiceIO

public enum H2SessionCheck {
    /// Read sizes, in turn: frames and the preface split at every kind of place, and whole reads.
    static let reads = [4096, 1, 9, 100, 16_393, 3]

    /// Feeds `input` the way H2Connection does — receive a read, let the delegate act, send everything — and checks
    /// the delegate's callback order, flow control and caps (H2FuzzConnection), and that the session writes
    /// well-formed frames, only on streams the client opened, with the server preface first.
    public static func check(_ input: UnsafeRawBufferPointer) throws(FuzzViolation) {
        var limits = H2Limits()
        // Small enough for short inputs to reach them.
        limits.maxHeaderCount = 16
        limits.maxHeaderListBytes = 2048
        limits.maxStreamsPerConnection = 10
        limits.maxResetsPerSecond = 20
        let connection = H2FuzzConnection(limits: limits)
        let out = ByteBuffer(capacity: 16_384)
        var frames = FrameReader()
        var offset = 0
        var read = 0
        var now: Int64 = 0
        var open = true
        while offset < input.count && open {
            let n = min(reads[read % reads.count], input.count - offset)
            read += 1
            open = connection.session.receive(UnsafeRawBufferPointer(rebasing: input[offset..<(offset + n)]), now: now)
            offset += n
            now += 7  // milliseconds: the rapid-reset window sees about 140 reads a second
            if let violation = connection.violation { throw violation }
            if open && connection.session.terminatedReason == nil { connection.afterReceive() }
            if let violation = connection.violation { throw violation }
            // A fatal error ends the connection; what was queued (the GOAWAY) still goes out.
            let sent = connection.session.send(into: out, limit: Int.max)
            try frames.read(out.readable, opened: connection)
            out.clear()
            if let violation = connection.violation { throw violation }
            if !sent || connection.session.terminatedReason != nil { open = false }
        }
        try require(frames.pending == 0 || !open, "the session left a partial frame of \(frames.pending) bytes")
    }

    /// Splits the session's output into frames (RFC 9113 §4.1) across sends and checks each header.
    struct FrameReader {
        private var header: [UInt8] = []
        private var payloadLeft = 0
        private var count = 0
        var pending: Int { header.count + payloadLeft }

        mutating func read(_ bytes: UnsafeRawBufferPointer, opened connection: H2FuzzConnection) throws(FuzzViolation) {
            var i = 0
            while i < bytes.count {
                if payloadLeft > 0 {
                    let n = min(payloadLeft, bytes.count - i)
                    payloadLeft -= n
                    i += n
                    continue
                }
                header.append(bytes[i])
                i += 1
                guard header.count == 9 else { continue }
                let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                let type = header[3]
                let streamId = Int32(header[5] & 0x7F) << 24 | Int32(header[6]) << 16 | Int32(header[7]) << 8 | Int32(header[8])
                // RFC 9113 §3.4: the server preface is a SETTINGS frame.
                if count == 0 { try require(type == 0x4 && streamId == 0, "first frame is type \(type), not SETTINGS") }
                count += 1
                switch type {
                case 0x0, 0x1, 0x3:  // DATA, HEADERS, RST_STREAM: only on a client stream the delegate saw opening
                    // RST_STREAM may answer a stream that never reached the delegate (refused, or a bad header block).
                    if type != 0x3 {
                        try require(streamId % 2 == 1 && connection.wasOpened(streamId), "frame type \(type) on stream \(streamId), never opened")
                    }
                case 0x5:
                    throw FuzzViolation("PUSH_PROMISE sent with push disabled")
                case 0x4, 0x6, 0x7:  // SETTINGS, PING, GOAWAY: connection frames
                    try require(streamId == 0, "frame type \(type) on stream \(streamId)")
                case 0x8:
                    break
                default:
                    throw FuzzViolation("frame of type \(type) sent")
                }
                payloadLeft = length
                header.removeAll(keepingCapacity: true)
            }
        }
    }
}
