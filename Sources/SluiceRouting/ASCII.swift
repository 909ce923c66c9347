// Routing layer: byte-level helpers for host and tag matching without building Strings.

/// ASCII operations on raw bytes. Host names and tags are ASCII (RFC 1123), so folding only A–Z is correct.
enum ASCII {
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
    }

    static func lowercasedBytes(_ string: String) -> [UInt8] {
        string.utf8.map(lowercased)
    }

    /// FNV-1a over the lower-cased bytes: cheap, good enough spread for a few thousand host names.
    @inline(__always)
    static func hashLowercased(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(lowercased(byte))) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
