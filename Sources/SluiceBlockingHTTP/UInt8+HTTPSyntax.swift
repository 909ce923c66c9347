// Byte classes and trimming from HTTP's grammar (RFC 9110 §5.6), used by the blocking server's parser.

extension UInt8 {
    var isASCIIDigit: Bool { self >= 0x30 && self <= 0x39 }

    var isASCIIHexDigit: Bool { isASCIIDigit || (self | 0x20) >= 0x61 && (self | 0x20) <= 0x66 }

    /// RFC 9110 §5.6.2 tchar.
    var isTokenCharacter: Bool {
        switch self {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
        default: false
        }
    }
}

extension Collection where Element == UInt8 {
    /// Without leading and trailing SP and HTAB (RFC 9110 §5.6.3 OWS).
    func trimmingSpaces() -> [UInt8] {
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        return Array(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(decoding: utf8.trimmingSpaces(), as: UTF8.self)
    }
}
