// Routing layer: a service's sticky key — the request field that names a client (`header:NAME`, `cookie:NAME`) —
// its setting text, its reading from a request's field lines, and the stable hash that places it on the split.

/// The request key that keeps a client on one revision: the same key, the same draw for `ServiceRoute.pick`, so the
/// same revision for as long as the split holds (see `ServiceRoute.pick`).
public enum StickyKey: Hashable, Sendable, CustomStringConvertible {
    /// A header's value; the name is stored lowercased (field names are case-insensitive, RFC 9110 §5.1).
    case header(String)
    /// The value of the named cookie in the `Cookie` field; the name is case-sensitive (RFC 6265 §5.4 compares
    /// names exactly).
    case cookie(String)

    /// Why a setting text is refused, worded to follow kubectl's `Invalid value: "…": REASON`.
    public struct ParseError: Error, Hashable, Sendable {
        public let reason: String
    }

    static let shapeReason = "must be header:NAME or cookie:NAME (e.g. 'header:x-user-id', or 'cookie:session')"

    /// Parses `header:x-user-id` or `cookie:session`. Names are RFC 9110 tokens (a cookie name is one too, RFC 6265
    /// §4.1.1); `header:cookie` is refused, because the whole field would then be the key.
    public static func parse(_ text: String) -> Result<StickyKey, ParseError> {
        guard let colon = text.firstIndex(of: ":") else { return .failure(ParseError(reason: shapeReason)) }
        let kind = text[..<colon]
        let name = String(text[text.index(after: colon)...])
        guard kind == "header" || kind == "cookie" else { return .failure(ParseError(reason: shapeReason)) }
        guard !name.isEmpty else {
            return .failure(ParseError(reason: "the \(kind) name after '\(kind):' must not be empty"))
        }
        guard name.utf8.count <= 256, name.utf8.allSatisfy(isTokenByte) else {
            return .failure(ParseError(reason: "a \(kind) name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. '\(kind == "header" ? "x-user-id" : "session")')"))
        }
        if kind == "cookie" { return .success(.cookie(name)) }
        let lowercased = String(decoding: ASCII.lowercasedBytes(name), as: UTF8.self)
        guard lowercased != "cookie" else {
            return .failure(ParseError(reason: "the whole Cookie field cannot be the key; name one cookie with cookie:NAME"))
        }
        return .success(.header(lowercased))
    }

    /// The setting text (`header:x-user-id`), as parsed back by `parse`.
    public var description: String {
        switch self {
        case .header(let name): return "header:\(name)"
        case .cookie(let name): return "cookie:\(name)"
        }
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A 64-bit hash of `key`, the same in every worker, process, restart and replica (Swift's `Hasher` is seeded per
    /// process, so it cannot be used): FNV-1a from `seed`, then murmur3's fmix64, so that the high bits — the ones
    /// `pick`'s multiply-high reads — depend on every byte (FNV-1a alone leaves a short key's last byte mostly in the
    /// low bits). Allocation-free.
    @inline(__always)
    public static func hash(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var hash = seed
        for byte in key {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        hash &*= 0xc4ce_b9fe_1a85_ec53
        hash ^= hash >> 33
        return hash
    }

    /// The seed of a service's key hashes: FNV-1a of `namespace/name`. Why one per service: with one seed for all, the
    /// keys in the lowest 10 % of the range would be the first users of every canary of every model in the cluster;
    /// seeded per service, a user's exposure to one rollout says nothing about the next service's. A name is the same
    /// on every replica, so the hash still is.
    public static func seed(namespace: String, name: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(namespace)/\(name)".utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// What one field line says about a request's sticky key.
public enum StickyField {
    /// Not the key's field (another header; a `Cookie` line without the named cookie): look at the next line.
    case other
    /// The key's field, with an empty value: the request has no key (ordinary weighted pick).
    case empty
    /// The key's value (without a cookie value's quotes), pointing into the field value.
    case key(UnsafeRawBufferPointer)
}

/// A service's sticky key ready for the request path: the field name to look for, as bytes.
public struct StickyKeyReader: Sendable {
    public let key: StickyKey
    /// The lowercased name of the field that carries the key: the header's, or `cookie`.
    let fieldName: [UInt8]
    /// The cookie's name; empty for a header key.
    let cookieName: [UInt8]
    /// `StickyKey.seed` of the service.
    public let seed: UInt64

    public init(_ key: StickyKey, seed: UInt64) {
        self.key = key
        self.seed = seed
        switch key {
        case .header(let name):
            fieldName = ASCII.lowercasedBytes(name)
            cookieName = []
        case .cookie(let name):
            fieldName = Array("cookie".utf8)
            cookieName = Array(name.utf8)
        }
    }

    /// Reads one field line (`name` in any case, `value` without its surrounding whitespace). Callers go through the
    /// lines in order and stop at the first answer other than `.other`: of duplicate header lines the first one wins,
    /// and of cookies the first occurrence of the name across all `Cookie` lines (RFC 6265 §5.4 leaves the order of
    /// same-named cookies to the client; first is what most servers read). Allocation-free.
    @inline(__always)
    public func read(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> StickyField {
        guard name.count == fieldName.count else { return .other }
        let isField = fieldName.withUnsafeBufferPointer { expected in
            for index in 0..<expected.count where ASCII.lowercased(name[index]) != expected[index] { return false }
            return true
        }
        guard isField else { return .other }
        guard !cookieName.isEmpty else { return value.isEmpty ? .empty : .key(value) }
        return cookieName.withUnsafeBufferPointer { cookie(UnsafeRawBufferPointer($0), in: value) }
    }

    /// The named cookie in one `Cookie` value: `name=value; name2=value2` (RFC 6265 §4.2.1), read leniently as §5.4
    /// browsers send it — pairs split on `;`, spaces and tabs around names and values ignored, a pair without `=`
    /// skipped, a value in double quotes taken without them.
    private func cookie(_ wanted: UnsafeRawBufferPointer, in value: UnsafeRawBufferPointer) -> StickyField {
        @inline(__always) func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        let count = value.count
        var cursor = 0
        while cursor < count {
            var pairEnd = cursor
            while pairEnd < count, value[pairEnd] != UInt8(ascii: ";") { pairEnd += 1 }
            var equals = cursor
            while equals < pairEnd, value[equals] != UInt8(ascii: "=") { equals += 1 }
            if equals < pairEnd {
                var nameStart = cursor, nameEnd = equals
                while nameStart < nameEnd, isSpace(value[nameStart]) { nameStart += 1 }
                while nameEnd > nameStart, isSpace(value[nameEnd - 1]) { nameEnd -= 1 }
                if nameEnd - nameStart == wanted.count, matches(value, from: nameStart, wanted) {
                    var start = equals + 1, end = pairEnd
                    while start < end, isSpace(value[start]) { start += 1 }
                    while end > start, isSpace(value[end - 1]) { end -= 1 }
                    if end - start >= 2, value[start] == UInt8(ascii: "\""), value[end - 1] == UInt8(ascii: "\"") {
                        start += 1
                        end -= 1
                    }
                    return end > start ? .key(UnsafeRawBufferPointer(rebasing: value[start..<end])) : .empty
                }
            }
            cursor = pairEnd + 1
        }
        return .other
    }

    @inline(__always)
    private func matches(_ bytes: UnsafeRawBufferPointer, from start: Int, _ other: UnsafeRawBufferPointer) -> Bool {
        for index in 0..<other.count where bytes[start + index] != other[index] { return false }
        return true
    }
}
