// Proxy layer: one access log line from a request record — JSON (the default) or Envoy's default text format —
// written into the worker's scratch bytes at finish, without allocating: bytes, not String.
import SluiceIO
import SluiceRouting
#if canImport(Glibc)
import Glibc
#endif

/// The JSON line's fields, in order (one object per line; absent values are `null`):
///
/// `start_time` (RFC 3339, UTC, microseconds: when the request's first byte arrived), `request_id`, `trace_id`
/// (32 lowercase hex digits), `method`, `authority`, `path`, `protocol` (`http/1.1`, `h2` or `grpc`), `tls`,
/// `status` (0: nothing was sent), `grpc_status`, `revision`, `tag`, `endpoint` (`IP:port` of the last attempt),
/// `attempts`, `bytes_received` and `bytes_sent` (body bytes), `duration_us` (start to end), `upstream_us` (the
/// pod's connection ready to its response head), `ttfb_us` (start to the pod's response head: Envoy's
/// %RESPONSE_DURATION%), `response_flags` (Envoy's short flags, `-` for none), `user_agent`, `client_address`.
/// Durations are integer microseconds, the unit in the key.
///
/// Strings are escaped as RFC 8259 §7 asks (`"`, `\`, control bytes as `\u00XX`, with `\n`, `\r`, `\t` short),
/// and bytes that are not UTF-8 become U+FFFD, so a line is always valid JSON whatever the client sent.
struct AccessLogFormatter {
    /// The UTC date and time of `cachedSecond`, `YYYY-MM-DDTHH:MM:SS`: formatted once per second.
    private var cachedDate = InlineArray<19, UInt8>(repeating: 0)
    private var cachedSecond: Int64 = -1

    /// Writes one line (with its newline) for `record`, that started at `startWallNs` (CLOCK_REALTIME), into `out`;
    /// returns its length, or 0 if it did not fit `capacity`.
    mutating func format(_ record: borrowing RequestRecord, as format: AccessLogSettings.Format, startWallNs: Int64,
                         into out: UnsafeMutableRawPointer, capacity: Int) -> Int {
        var line = LineBytes(base: out, capacity: capacity)
        switch format {
        case .json: json(record, startWallNs: startWallNs, &line)
        case .envoy: envoy(record, startWallNs: startWallNs, &line)
        }
        return line.isOverflowed ? 0 : line.count
    }

    // MARK: JSON

    private mutating func json(_ r: borrowing RequestRecord, startWallNs: Int64, _ line: inout LineBytes) {
        line.append("{\"start_time\":\"")
        time(startWallNs, fractionDigits: 6, &line)
        line.append("\",\"request_id\":")
        r.requestId.withBytes { line.jsonText($0) }
        line.append(",\"trace_id\":")
        if r.trace.hasTrace {
            line.byte(0x22)
            for i in 0..<16 { line.hex(r.trace.traceId[i]) }
            line.byte(0x22)
        } else {
            line.append("null")
        }
        line.append(",\"method\":")
        r.method.withBytes { line.jsonText($0) }
        line.append(",\"authority\":")
        r.authority.withBytes { line.jsonText($0) }
        line.append(",\"path\":")
        r.path.withBytes { line.jsonText($0) }
        line.append(",\"protocol\":")
        switch r.clientProtocol {
        case .http11: line.append("\"http/1.1\"")
        case .h2: line.append("\"h2\"")
        case .grpc: line.append("\"grpc\"")
        }
        line.append(r.isTLS ? ",\"tls\":true,\"status\":" : ",\"tls\":false,\"status\":")
        line.decimal(r.status)
        line.append(",\"grpc_status\":")
        if r.grpcStatus >= 0 { line.decimal(r.grpcStatus) } else { line.append("null") }
        line.append(",\"revision\":")
        if let revision = r.revision { line.jsonText(revision.name) } else { line.append("null") }
        line.append(",\"tag\":")
        if let tag = r.tag { line.jsonText(tag) } else { line.append("null") }
        line.append(",\"endpoint\":")
        if let endpoint = r.endpoint {
            line.byte(0x22)
            line.endpoint(endpoint)
            line.byte(0x22)
        } else {
            line.append("null")
        }
        line.append(",\"attempts\":")
        line.decimal(r.attempts)
        line.append(",\"bytes_received\":")
        line.decimal(r.requestBodyBytes)
        line.append(",\"bytes_sent\":")
        line.decimal(r.responseBodyBytes)
        line.append(",\"duration_us\":")
        line.decimal(Int(r.durationNs / 1000))
        line.append(",\"upstream_us\":")
        if let ns = Self.upstreamNs(r) { line.decimal(Int(ns / 1000)) } else { line.append("null") }
        line.append(",\"ttfb_us\":")
        if let ns = Self.firstByteNs(r) { line.decimal(Int(ns / 1000)) } else { line.append("null") }
        line.append(",\"response_flags\":\"")
        Self.responseFlags(r.flags, status: r.status, &line)
        line.append("\",\"user_agent\":")
        r.userAgent.withBytes { line.jsonText($0) }
        line.append(",\"client_address\":")
        r.clientAddress.withBytes { line.jsonText($0) }
        line.append("}\n")
    }

    // MARK: Envoy

    /// Envoy's default format (docs: access log usage, "Default format string"), field by field:
    ///
    ///     [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    ///     %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    ///     %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    ///     "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n
    ///
    /// START_TIME in Envoy's default `%Y-%m-%dT%H:%M:%E3SZ` (UTC, milliseconds); PROTOCOL `HTTP/1.1` or `HTTP/2`
    /// (gRPC is HTTP/2); DURATION and the upstream service time in whole milliseconds (truncated, as Envoy's
    /// duration casts do); X-FORWARDED-FOR as Envoy at the edge sees it after appending the peer: the client's
    /// address (an XFF the client sent itself is not kept in the record); UPSTREAM_HOST `IP:port`. Every value the
    /// request does not have is `-`, as Envoy prints it. Control bytes (which no parser lets through) print as
    /// `\xHH` so a line stays one line.
    private mutating func envoy(_ r: borrowing RequestRecord, startWallNs: Int64, _ line: inout LineBytes) {
        line.byte(0x5B)
        time(startWallNs, fractionDigits: 3, &line)
        line.append("] \"")
        r.method.withBytes { line.envoyText($0) }
        line.byte(0x20)
        r.path.withBytes { line.envoyText($0) }
        line.append(r.clientProtocol == .http11 ? " HTTP/1.1\" " : " HTTP/2\" ")
        line.decimal(r.status)
        line.byte(0x20)
        Self.responseFlags(r.flags, status: r.status, &line)
        line.byte(0x20)
        line.decimal(r.requestBodyBytes)
        line.byte(0x20)
        line.decimal(r.responseBodyBytes)
        line.byte(0x20)
        line.decimal(Int(r.durationNs / 1_000_000))
        line.byte(0x20)
        if let ns = Self.upstreamNs(r) { line.decimal(Int(ns / 1_000_000)) } else { line.byte(0x2D) }
        line.append(" \"")
        r.clientAddress.withBytes { line.envoyText($0) }
        line.append("\" \"")
        r.userAgent.withBytes { line.envoyText($0) }
        line.append("\" \"")
        r.requestId.withBytes { line.envoyText($0) }
        line.append("\" \"")
        r.authority.withBytes { line.envoyText($0) }
        line.append("\" \"")
        if let endpoint = r.endpoint { line.endpoint(endpoint) } else { line.byte(0x2D) }
        line.append("\"\n")
    }

    // MARK: Shared fields

    /// The pod's time: from its connection being ready to its response head (nil: no pod answered).
    static func upstreamNs(_ r: borrowing RequestRecord) -> UInt64? {
        guard r.upstreamConnectedNs > 0, r.firstResponseByteNs >= r.upstreamConnectedNs else { return nil }
        return r.firstResponseByteNs - r.upstreamConnectedNs
    }

    /// From the request's start to the pod's response head (nil: no pod answered).
    static func firstByteNs(_ r: borrowing RequestRecord) -> UInt64? {
        guard r.startNs > 0, r.firstResponseByteNs >= r.startNs else { return nil }
        return r.firstResponseByteNs - r.startNs
    }

    /// Envoy's short response flags (RequestRecord.Flags.forEachEnvoyCode), comma-separated, `-` for none.
    static func responseFlags(_ flags: RequestRecord.Flags, status: Int, _ line: inout LineBytes) {
        let start = line.count
        flags.forEachEnvoyCode(status: status) { code in
            if line.count > start { line.byte(0x2C) }
            line.append(code)
        }
        if line.count == start { line.byte(0x2D) }
    }

    /// `YYYY-MM-DDTHH:MM:SS.fffZ` (3 digits) or `.ffffffZ` (6), UTC.
    private mutating func time(_ wallNs: Int64, fractionDigits: Int, _ line: inout LineBytes) {
        let second = wallNs >= 0 ? wallNs / 1_000_000_000 : (wallNs - 999_999_999) / 1_000_000_000
        if second != cachedSecond { cacheDate(second) }
        withUnsafeBytes(of: cachedDate) { line.append($0) }
        line.byte(0x2E)
        let nanos = Int(wallNs - second * 1_000_000_000)
        if fractionDigits == 3 { line.digits(nanos / 1_000_000, width: 3) } else { line.digits(nanos / 1000, width: 6) }
        line.byte(0x5A)
    }

    /// The date and time of `second` (WallClock.civil), formatted once per second.
    private mutating func cacheDate(_ second: Int64) {
        cachedSecond = second
        let t = WallClock.civil(seconds: second)
        func put(_ value: Int, at offset: Int, width: Int, _ date: inout InlineArray<19, UInt8>) {
            var v = value
            var i = offset + width - 1
            while i >= offset {
                date[i] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
                v /= 10
                i -= 1
            }
        }
        put(t.year, at: 0, width: 4, &cachedDate)
        cachedDate[4] = 0x2D
        put(t.month, at: 5, width: 2, &cachedDate)
        cachedDate[7] = 0x2D
        put(t.day, at: 8, width: 2, &cachedDate)
        cachedDate[10] = 0x54
        put(t.hour, at: 11, width: 2, &cachedDate)
        cachedDate[13] = 0x3A
        put(t.minute, at: 14, width: 2, &cachedDate)
        cachedDate[16] = 0x3A
        put(t.second, at: 17, width: 2, &cachedDate)
    }
}

/// Bounded appends into raw bytes; a line that would pass `capacity` is marked overflowed and dropped whole.
struct LineBytes {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var count = 0
    private(set) var isOverflowed = false

    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    @inline(__always) private mutating func room(_ n: Int) -> Bool {
        if count + n <= capacity { return true }
        isOverflowed = true
        return false
    }

    @inline(__always) mutating func byte(_ b: UInt8) {
        guard room(1) else { return }
        base.storeBytes(of: b, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, room(bytes.count) else { return }
        (base + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always) mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    mutating func hex(_ b: UInt8) {
        guard room(2) else { return }
        let digits = Self.hexDigits.utf8Start
        base.storeBytes(of: digits[Int(b >> 4)], toByteOffset: count, as: UInt8.self)
        base.storeBytes(of: digits[Int(b & 0xF)], toByteOffset: count + 1, as: UInt8.self)
        count += 2
    }

    /// A non-negative decimal (negative values print as 0: no field here can be negative).
    mutating func decimal(_ value: Int) {
        var v = max(0, value)
        var digits = 1
        var p = 10
        while v >= p && digits < 19 { digits += 1; p &*= 10 }
        guard room(digits) else { return }
        var i = count + digits - 1
        repeat {
            base.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + v % 10), toByteOffset: i, as: UInt8.self)
            v /= 10
            i -= 1
        } while v > 0
        count += digits
    }

    /// Exactly `width` digits, zero-padded.
    mutating func digits(_ value: Int, width: Int) {
        guard room(width) else { return }
        var v = value
        for i in stride(from: count + width - 1, through: count, by: -1) {
            base.storeBytes(of: UInt8(truncatingIfNeeded: 0x30 + v % 10), toByteOffset: i, as: UInt8.self)
            v /= 10
        }
        count += width
    }

    /// `IP:port`, with brackets around an IPv6 literal (RFC 3986 §3.2.2), as Envoy prints an upstream address.
    mutating func endpoint(_ endpoint: Endpoint) {
        let isV6 = Self.contains(endpoint.host, 0x3A)
        if isV6 { byte(0x5B) }
        text(endpoint.host)
        if isV6 { byte(0x5D) }
        byte(0x3A)
        decimal(Int(endpoint.port))
    }

    private static func contains(_ s: String, _ b: UInt8) -> Bool {
        s.utf8.withContiguousStorageIfAvailable { $0.contains(b) } ?? s.utf8.contains(b)
    }

    /// The bytes of a configuration string (a revision name, a tag, an IP) as they are.
    mutating func text(_ s: String) {
        if s.utf8.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) == nil {
            for b in s.utf8 { byte(b) }
        }
    }

    // MARK: JSON strings

    /// A JSON string, or `null` for no bytes (a field the request never had).
    mutating func jsonText(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { append("null"); return }
        byte(0x22)
        jsonEscaped(bytes)
        byte(0x22)
    }

    mutating func jsonText(_ s: String) {
        if s.utf8.withContiguousStorageIfAvailable({ jsonText(UnsafeRawBufferPointer($0)) }) == nil {
            var copy = s
            copy.withUTF8 { jsonText(UnsafeRawBufferPointer($0)) }
        }
    }

    /// RFC 8259 §7: runs of plain bytes are copied whole; `"`, `\`, and control bytes are escaped; bytes that do
    /// not form UTF-8 (RFC 3629 §4: no overlong forms, no surrogates, nothing above U+10FFFF) become U+FFFD.
    /// Plain ASCII is skipped eight bytes at a time (`mayNeedEscape`), the bulk of every line's text.
    mutating func jsonEscaped(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        let n = bytes.count
        var i = 0
        var runStart = 0
        while i < n {
            while i + 8 <= n && !Self.mayNeedEscape(base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) { i += 8 }
            guard i < n else { break }
            let b = base.load(fromByteOffset: i, as: UInt8.self)
            if b >= 0x20 && b < 0x80 && b != 0x22 && b != 0x5C { i += 1; continue }
            if b >= 0x80, let length = Self.utf8SequenceLength(bytes, at: i) { i += length; continue }
            append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
            switch b {
            case 0x22: append("\\\"")
            case 0x5C: append("\\\\")
            case 0x0A: append("\\n")
            case 0x0D: append("\\r")
            case 0x09: append("\\t")
            case 0x80...: append("\\ufffd")
            default:
                append("\\u00")
                hex(b)
            }
            i += 1
            runStart = i
        }
        append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<n]))
    }

    /// Whether any of eight bytes may need more than a copy: ≥ 0x80, < 0x20, `"` or `\`. The borrows of the
    /// subtractions can flag a byte above a real hit too (then the bytes are looked at one by one), never miss one:
    /// the lowest byte below 0x20, or equal to `"` or `\` after the xor, always sets its top bit.
    @inline(__always) static func mayNeedEscape(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let control = w &- 0x20 &* ones
        let quote = (w ^ (0x22 &* ones)) &- ones
        let backslash = (w ^ (0x5C &* ones)) &- ones
        return (w | control | quote | backslash) & (0x80 &* ones) != 0
    }

    /// The length of the well-formed UTF-8 sequence starting at `i` (a byte ≥ 0x80), or nil.
    private static func utf8SequenceLength(_ p: UnsafeRawBufferPointer, at i: Int) -> Int? {
        let b0 = p[i]
        let n = p.count
        @inline(__always) func cont(_ j: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
            j < n && p[j] >= low && p[j] <= high
        }
        switch b0 {
        case 0xC2...0xDF: return cont(i + 1) ? 2 : nil
        case 0xE0: return cont(i + 1, 0xA0) && cont(i + 2) ? 3 : nil
        case 0xED: return cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : nil
        case 0xE1...0xEF: return cont(i + 1) && cont(i + 2) ? 3 : nil
        case 0xF0: return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : nil
        case 0xF1...0xF3: return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : nil
        case 0xF4: return cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : nil
        default: return nil
        }
    }

    // MARK: Envoy strings

    /// A quoted Envoy value: the bytes as they are (Envoy does not escape), `-` for none; control bytes as `\xHH`.
    mutating func envoyText(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { byte(0x2D); return }
        var runStart = 0
        for i in 0..<bytes.count where bytes[i] < 0x20 || bytes[i] == 0x7F {
            append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
            append("\\x")
            hex(bytes[i])
            runStart = i + 1
        }
        append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<bytes.count]))
    }
}
