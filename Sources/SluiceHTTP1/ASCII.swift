// ASCII byte classes from the HTTP grammars (RFC 9110 §5.6, RFC 3986). Protocol layer (SluiceHTTP1).
// Switches over byte ranges compile to compact tables; no Foundation, no Character.

enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B
    static let equals: UInt8 = 0x3D
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C
    static let slash: UInt8 = 0x2F
    static let underscore: UInt8 = 0x5F

    @inline(__always) static func lower(_ b: UInt8) -> UInt8 {
        (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
    }

    /// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
    /// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    @inline(__always) static func isToken(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }

    /// RFC 9110 §5.5: field-vchar = VCHAR / obs-text, plus SP / HTAB inside a value.
    /// Everything else (CTLs incl. NUL, DEL) is rejected: RFC 9110 §5.5 allows reject or replace; a gateway rejects.
    @inline(__always) static func isFieldValue(_ b: UInt8) -> Bool {
        b == htab || (b >= 0x20 && b != 0x7F)
    }

    @inline(__always) static func isOWS(_ b: UInt8) -> Bool { b == sp || b == htab }

    /// VCHAR (0x21–0x7E): the only bytes allowed in a request-target (RFC 9112 §3.2, RFC 3986 §2).
    @inline(__always) static func isVisible(_ b: UInt8) -> Bool { b >= 0x21 && b <= 0x7E }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// Value of a hex digit, or nil (RFC 9110 §5.6.1 HEXDIG, case-insensitive).
    @inline(__always) static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b - 0x30)
        case 0x41...0x46: return Int(b - 0x41 + 10)
        case 0x61...0x66: return Int(b - 0x61 + 10)
        default: return nil
        }
    }

    /// RFC 3986 §3.2.2 reg-name characters other than pct-encoded: unreserved / sub-delims.
    @inline(__always) static func isRegName(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x2D, 0x2E, 0x5F, 0x7E: return true  // - . _ ~
        case 0x21, 0x24, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x3B, 0x3D: return true  // sub-delims
        default: return false
        }
    }

    /// RFC 9110 §5.6.4 qdtext (without the DQUOTE and backslash handled by the caller).
    @inline(__always) static func isQuotedText(_ b: UInt8) -> Bool {
        b == htab || b == sp || b == 0x21 || (b >= 0x23 && b <= 0x5B) || (b >= 0x5D && b <= 0x7E) || b >= 0x80
    }
}
