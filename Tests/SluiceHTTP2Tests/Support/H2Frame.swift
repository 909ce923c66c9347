// Test support: HTTP/2 frames by hand (RFC 9113 §4.1): a builder for what no well-behaved client sends (floods,
// bad prefaces) and a parser for what a session wrote, so that tests can read every frame, not only those nghttp2
// reports to a client callback.

struct H2Frame: Equatable {
    var type: UInt8
    var flags: UInt8
    var streamId: Int32
    var payload: [UInt8]

    // Frame types (RFC 9113 §6) and the flags the tests use.
    static let data: UInt8 = 0x0, headers: UInt8 = 0x1, rstStream: UInt8 = 0x3, settings: UInt8 = 0x4, ping: UInt8 = 0x6
    static let goAway: UInt8 = 0x7, windowUpdate: UInt8 = 0x8, continuation: UInt8 = 0x9
    static let endStream: UInt8 = 0x1, ack: UInt8 = 0x1, endHeaders: UInt8 = 0x4

    /// The client connection preface (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    init(type: UInt8, flags: UInt8 = 0, streamId: Int32 = 0, payload: [UInt8] = []) {
        self.type = type
        self.flags = flags
        self.streamId = streamId
        self.payload = payload
    }

    /// The frame on the wire: 24-bit length, type, flags, 31-bit stream id, payload.
    var bytes: [UInt8] {
        let n = payload.count
        let id = UInt32(bitPattern: streamId) & 0x7FFF_FFFF
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(id >> 24), UInt8(id >> 16 & 0xFF), UInt8(id >> 8 & 0xFF), UInt8(id & 0xFF)] + payload
    }

    /// Splits `bytes` (a server's output, which has no preface) into whole frames, and returns the bytes of a
    /// frame not yet complete.
    static func parse(_ bytes: [UInt8]) -> (frames: [H2Frame], rest: [UInt8]) {
        var frames: [H2Frame] = []
        var i = 0
        while i + 9 <= bytes.count {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            guard i + 9 + n <= bytes.count else { break }
            frames.append(H2Frame(type: bytes[i + 3], flags: bytes[i + 4], streamId: Int32(bitPattern: word(bytes, i + 5) & 0x7FFF_FFFF),
                                  payload: Array(bytes[i + 9..<i + 9 + n])))
            i += 9 + n
        }
        return (frames, Array(bytes[i...]))
    }

    private static func word(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    /// GOAWAY (RFC 9113 §6.8): the last stream id the sender will process and the error code.
    var goAway: (lastStreamId: Int32, errorCode: UInt32)? {
        guard type == Self.goAway, payload.count >= 8 else { return nil }
        return (Int32(bitPattern: Self.word(payload, 0) & 0x7FFF_FFFF), Self.word(payload, 4))
    }

    /// RST_STREAM's error code (RFC 9113 §6.4).
    var resetCode: UInt32? { type == Self.rstStream && payload.count == 4 ? Self.word(payload, 0) : nil }

    /// WINDOW_UPDATE's increment (RFC 9113 §6.9).
    var windowIncrement: UInt32? { type == Self.windowUpdate && payload.count == 4 ? Self.word(payload, 0) & 0x7FFF_FFFF : nil }

    /// A SETTINGS frame's entries in order (RFC 9113 §6.5.1): identifier and value.
    var settingsEntries: [(id: UInt16, value: UInt32)] {
        guard type == Self.settings else { return [] }
        return stride(from: 0, to: payload.count - payload.count % 6, by: 6).map {
            (UInt16(payload[$0]) << 8 | UInt16(payload[$0 + 1]), Self.word(payload, $0 + 2))
        }
    }
}
