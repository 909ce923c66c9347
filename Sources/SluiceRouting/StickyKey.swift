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
    /// process, so it cannot be used), on every platform (words are read little-endian). Eight bytes at a time, each
    /// folded in by a 64×64→128 multiply whose halves are xored (wyhash's `mum`), then murmur3's fmix64, so that the
    /// high bits — the ones `pick`'s multiply-high reads — depend on every byte. Not byte-wise FNV-1a: its multiply
    /// per byte is a chain of about 4 cycles a byte, some 50 ns for a 36-byte UUID, half the budget of the request
    /// path; this is one multiply per 8 bytes. The length is mixed in first, so `a` and `a\0` differ. Allocation-free.
    @inlinable @inline(__always)
    public static func hash(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        @inline(__always) func mum(_ a: UInt64) -> UInt64 {
            let product = a.multipliedFullWidth(by: 0xa076_1d64_78bd_642f)
            return product.high ^ product.low
        }
        let count = key.count
        var hash = mum(seed ^ (UInt64(truncatingIfNeeded: count) &* 0x9e37_79b9_7f4a_7c15))
        var offset = 0
        if let base = key.baseAddress {
            while offset + 8 <= count {
                hash = mum(hash ^ UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
                offset += 8
            }
            if offset < count {
                var tail: UInt64 = 0
                for index in offset..<count { tail |= UInt64(base.load(fromByteOffset: index, as: UInt8.self)) << (8 * (index - offset)) }
                hash = mum(hash ^ tail ^ 0xe703_7ed1_a0b4_28db)
            }
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

/// A service's sticky key ready for the request path: the names to look for as bytes its `ServiceRoute` owns (plain
/// pointers, so that reading it copies no counted reference: every worker reads the same service). Valid while that
/// service is: read it through `ServiceRoute.sticky` only.
public struct StickyKeyReader: @unchecked Sendable {  // immutable; its bytes live and die with the owning ServiceRoute
    /// The lowercased name of the field that carries the key: the header's, or `cookie`.
    @usableFromInline let fieldName: UnsafeRawBufferPointer
    /// The cookie's name; empty for a header key.
    @usableFromInline let cookieName: UnsafeRawBufferPointer
    /// `StickyKey.seed` of the service.
    public let seed: UInt64

    /// Copies the names into one allocation; `deallocate` frees it (the owner's deinit).
    init(_ key: StickyKey, seed: UInt64) {
        self.seed = seed
        let field: [UInt8], cookie: [UInt8]
        switch key {
        case .header(let name): (field, cookie) = (ASCII.lowercasedBytes(name), [])
        case .cookie(let name): (field, cookie) = (Array("cookie".utf8), Array(name.utf8))
        }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: field.count + cookie.count, alignment: 1)
        storage.copyBytes(from: field + cookie)
        fieldName = UnsafeRawBufferPointer(rebasing: storage[0..<field.count])
        cookieName = UnsafeRawBufferPointer(rebasing: storage[field.count...])
    }

    func deallocate() {
        UnsafeMutableRawPointer(mutating: fieldName.baseAddress)?.deallocate()
    }

    /// Reads one field line (`name` in any case, `value` without its surrounding whitespace). Callers go through the
    /// lines in order and stop at the first answer other than `.other`: of duplicate header lines the first one wins,
    /// and of cookies the first occurrence of the name across all `Cookie` lines (RFC 6265 §5.4 leaves the order of
    /// same-named cookies to the client; first is what most servers read). Inlined into the worker's loop over the
    /// fields; allocation-free.
    @inlinable @inline(__always)
    public func read(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> StickyField {
        guard name.count == fieldName.count else { return .other }
        for index in 0..<name.count {
            let byte = name[index]
            // ASCII lower case (field names are tokens, RFC 9110 §5.6.2).
            if (byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte) != fieldName[index] { return .other }
        }
        guard !cookieName.isEmpty else { return value.isEmpty ? .empty : .key(value) }
        return cookie(in: value)
    }

    /// The named cookie in one `Cookie` value: `name=value; name2=value2` (RFC 6265 §4.2.1), read in one pass and
    /// leniently as §5.4 browsers send it — pairs split on `;`, spaces and tabs around names and values ignored, a pair
    /// without `=` skipped, a value in double quotes taken without them.
    @inlinable
    func cookie(in value: UnsafeRawBufferPointer) -> StickyField {
        @inline(__always) func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        let count = value.count, wanted = cookieName
        var cursor = 0
        while cursor < count {
            while cursor < count, isSpace(value[cursor]) { cursor += 1 }
            let nameStart = cursor
            while cursor < count, value[cursor] != UInt8(ascii: "="), value[cursor] != UInt8(ascii: ";") { cursor += 1 }
            guard cursor < count, value[cursor] == UInt8(ascii: "=") else {
                cursor += 1  // a pair without `=`, or the end
                continue
            }
            var nameEnd = cursor
            while nameEnd > nameStart, isSpace(value[nameEnd - 1]) { nameEnd -= 1 }
            cursor += 1
            var start = cursor
            while cursor < count, value[cursor] != UInt8(ascii: ";") { cursor += 1 }
            var isWanted = nameEnd - nameStart == wanted.count
            if isWanted {
                for index in 0..<wanted.count where value[nameStart + index] != wanted[index] {
                    isWanted = false
                    break
                }
            }
            if isWanted {
                var end = cursor
                while start < end, isSpace(value[start]) { start += 1 }
                while end > start, isSpace(value[end - 1]) { end -= 1 }
                if end - start >= 2, value[start] == UInt8(ascii: "\""), value[end - 1] == UInt8(ascii: "\"") {
                    start += 1
                    end -= 1
                }
                return end > start ? .key(UnsafeRawBufferPointer(rebasing: value[start..<end])) : .empty
            }
            cursor += 1
        }
        return .other
    }
}
