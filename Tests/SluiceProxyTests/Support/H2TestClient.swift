// Test support: a blocking HTTP/2 client (h2c prior knowledge) on nghttp2's client API, for multiplexing,
// flow-control and attack tests. Every wait is bounded by a deadline; nothing sleeps.
import CNGHTTP2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct H2TestResponse {
    var status = 0
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    var isClosed = false
    /// RST_STREAM code (0 for a normal close).
    var errorCode: UInt32 = 0
    func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum H2TestClientError: Error { case connect(Int32), timeout(String), session(Int) }

final class H2TestClient {
    let fd: Int32
    private var session: OpaquePointer?
    private(set) var responses: [Int32: H2TestResponse] = [:]
    /// Upload state per stream: the body and how much of it nghttp2 has taken (sent, within the window).
    private var uploads: [Int32: (body: [UInt8], sent: Int)] = [:]
    /// GOAWAY received: error code and last stream id.
    private(set) var goAway: (errorCode: UInt32, lastStreamId: Int32)?
    /// Every byte received, for checks nghttp2's client does not report (it ignores a GOAWAY after the first).
    private(set) var raw: [UInt8] = []

    /// GOAWAY frames in the received bytes, in order (a scan for the frame header; fine for these small tests).
    var goAwayFrames: [(lastStreamId: Int32, errorCode: UInt32)] {
        var found: [(Int32, UInt32)] = []
        var i = 0
        while i + 17 <= raw.count {
            if raw[i] == 0, raw[i + 1] == 0, raw[i + 2] == 8, raw[i + 3] == 7, raw[i + 4] == 0, raw[i + 5..<i + 9].allSatisfy({ $0 == 0 }) {
                let last = raw[i + 9..<i + 13].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7FFF_FFFF
                let code = raw[i + 13..<i + 17].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                found.append((Int32(last), code))
                i += 17
            } else {
                i += 1
            }
        }
        return found
    }

    /// The server closed the TCP connection.
    private(set) var isEOF = false

    /// `window` is this client's receive window per stream (and 4× that per connection): small ones make the
    /// gateway wait on the client.
    init(port: UInt16, window: UInt32 = 1 << 24) throws {
        do { fd = try connectLoopback(port: port) } catch TestClientError.connect(let e) { throw H2TestClientError.connect(e) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nl, value, vl, _, user in
            let c = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            let id = frame!.pointee.hd.stream_id
            let n = String(decoding: UnsafeRawBufferPointer(start: name, count: nl), as: UTF8.self)
            let v = String(decoding: UnsafeRawBufferPointer(start: value, count: vl), as: UTF8.self)
            if n == ":status" { c.responses[id, default: H2TestResponse()].status = Int(v) ?? 0 } else { c.responses[id, default: H2TestResponse()].headers.append((n, v)) }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, len, user in
            let c = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            c.responses[id, default: H2TestResponse()].body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: len))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
            let c = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            c.responses[id, default: H2TestResponse()].isClosed = true
            c.responses[id, default: H2TestResponse()].errorCode = code
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let c = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
            if frame!.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                c.goAway = (frame!.pointee.goaway.error_code, frame!.pointee.goaway.last_stream_id)
            }
            return 0
        }
        nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
        nghttp2_session_callbacks_del(callbacks)
        // A large receive window so that downloads never wait on this client.
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: window)]
        nghttp2_submit_settings(session, 0, &settings, 1)
        nghttp2_session_set_local_window_size(session, 0, 0, Int32(min(UInt64(window) * 4, 1 << 30)))
    }

    deinit {
        nghttp2_session_del(session)
        Glibc.close(fd)
    }

    /// Submits a request; returns its stream id. `headers` are extra fields (lower-case names).
    @discardableResult
    func request(_ method: String = "GET", _ path: String, authority: String, headers: [(String, String)] = [], body: [UInt8]? = nil) -> Int32 {
        var fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)] + headers
        if let body { fields.append(("content-length", String(body.count))) }
        var storage: [[UInt8]] = []
        for (n, v) in fields { storage.append(Array(n.utf8)); storage.append(Array(v.utf8)) }
        var nva: [nghttp2_nv] = []
        let id: Int32 = storage.withUnsafeMutableBufferPointer { s in
            var pointers: [UnsafeMutablePointer<UInt8>] = []
            for i in 0..<s.count {
                let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, s[i].count))
                p.initialize(from: s[i], count: s[i].count)
                pointers.append(p)
            }
            defer { pointers.forEach { $0.deallocate() } }
            for i in stride(from: 0, to: s.count, by: 2) {
                nva.append(nghttp2_nv(name: pointers[i], value: pointers[i + 1], namelen: s[i].count, valuelen: s[i + 1].count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
            }
            if body != nil {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: { _, id, buf, len, flags, _, user in
                    let c = Unmanaged<H2TestClient>.fromOpaque(user!).takeUnretainedValue()
                    guard var u = c.uploads[id] else { flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue); return 0 }
                    let n = min(len, u.body.count - u.sent)
                    u.body.withUnsafeBytes { b in UnsafeMutableRawPointer(buf!).copyMemory(from: b.baseAddress! + u.sent, byteCount: n) }
                    u.sent += n
                    c.uploads[id] = u
                    if u.sent == u.body.count { flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
                    return n
                })
                return nghttp2_submit_request(session, nil, nva, nva.count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, nva, nva.count, nil, nil)
        }
        if let body { uploads[id] = (body, 0) }
        responses[id] = H2TestResponse()
        return id
    }

    /// Body bytes of `stream` that nghttp2 has sent so far (limited by the window the server granted).
    func uploaded(_ stream: Int32) -> Int { uploads[stream]?.sent ?? 0 }

    /// The window the server grants `stream` right now.
    func remoteWindow(_ stream: Int32) -> Int32 { nghttp2_session_get_stream_remote_window_size(session, stream) }

    /// Sends FIN (the client is done).
    func closeWrite() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    func reset(_ stream: Int32) {
        nghttp2_submit_rst_stream(session, 0, stream, UInt32(NGHTTP2_CANCEL.rawValue))
    }

    /// Sends what is pending and processes what arrives until `done` holds; throws after `seconds`.
    func run(seconds: Double = 10, until done: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !done() {
            try exchangeOnce(waitMs: 50)
            if isEOF { if done() { return }; throw H2TestClientError.timeout("connection closed") }
            if Date() > deadline { throw H2TestClientError.timeout("not done within \(seconds) s") }
        }
    }

    /// Processes traffic until nothing arrives for `quietMs` (at most `seconds`): for waiting on a stalled upload.
    func runUntilQuiet(quietMs: Int32 = 300, seconds: Double = 5) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try !exchangeOnce(waitMs: quietMs) { return }
        }
    }

    /// One round: write pending frames, wait up to `waitMs` for bytes, feed them. Returns whether anything moved.
    @discardableResult
    func exchangeOnce(waitMs: Int32) throws -> Bool {
        var moved = false
        while nghttp2_session_want_write(session) != 0 {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            if n < 0 { throw H2TestClientError.session(n) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = Glibc.send(fd, chunk! + off, n - off, Int32(MSG_NOSIGNAL))
                if w > 0 { off += w; moved = true; continue }
                if errno == EAGAIN {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
                    _ = poll(&p, 1, waitMs)
                    if p.revents & Int16(POLLIN) != 0 { try readAvailable() }
                    continue
                }
                isEOF = true
                return moved
            }
        }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, waitMs) > 0 {
            if try readAvailable() { moved = true }
        }
        return moved
    }

    @discardableResult
    private func readAvailable() throws -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var any = false
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                raw.append(contentsOf: buffer[0..<n])
                any = true
                let rc = buffer.withUnsafeBytes { nghttp2_session_mem_recv(session, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), n) }
                if rc < 0 { throw H2TestClientError.session(rc) }
                continue
            }
            if n == 0 { isEOF = true }
            if n < 0 && errno != EAGAIN { isEOF = true }
            return any
        }
    }
}
