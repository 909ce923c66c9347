// Test support: an HTTP/2 client on nghttp2's own client API, bytes in and bytes out in memory, that drives an
// H2Session with no socket; it records the responses, and every frame the server wrote (parsed by hand).
import CNGHTTP2

final class H2PeerClient {
    struct Response {
        var status = 0
        var headers: [(String, String)] = []
        var trailers: [(String, String)] = []
        var body: [UInt8] = []
        var isClosed = false
        /// The RST_STREAM (or GOAWAY) code the stream closed with; 0 after a normal end.
        var errorCode: UInt32 = 0
        /// Names of the fields that arrived as HPACK "literal never indexed" (RFC 7541 §6.2.3).
        var neverIndexed: [String] = []
        func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
    }

    private var session: OpaquePointer?
    private(set) var responses: [Int32: Response] = [:]
    /// Upload state per stream: the body so far, how much nghttp2 took, and whether the body is complete.
    private var uploads: [Int32: (body: [UInt8], sent: Int, isComplete: Bool)] = [:]
    /// Every frame the server wrote, in order.
    private(set) var frames: [H2Frame] = []
    private var unparsed: [UInt8] = []

    /// `window` is this client's receive window per stream (and for the connection), large by default so that
    /// responses never wait on the client.
    init(window: UInt32 = 1 << 24) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, flags, user in
            let c = Unmanaged<H2PeerClient>.fromOpaque(user!).takeUnretainedValue()
            let id = frame!.pointee.hd.stream_id
            let n = String(decoding: UnsafeRawBufferPointer(start: name, count: nameLength), as: UTF8.self)
            let v = String(decoding: UnsafeRawBufferPointer(start: value, count: valueLength), as: UTF8.self)
            if flags & UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue) != 0 { c.responses[id, default: Response()].neverIndexed.append(n) }
            if frame!.pointee.headers.cat == NGHTTP2_HCAT_HEADERS {
                c.responses[id, default: Response()].trailers.append((n, v))
            } else if n == ":status" {
                c.responses[id, default: Response()].status = Int(v) ?? -1
            } else {
                c.responses[id, default: Response()].headers.append((n, v))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, length, user in
            let c = Unmanaged<H2PeerClient>.fromOpaque(user!).takeUnretainedValue()
            c.responses[id, default: Response()].body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
            let c = Unmanaged<H2PeerClient>.fromOpaque(user!).takeUnretainedValue()
            c.responses[id, default: Response()].isClosed = true
            c.responses[id, default: Response()].errorCode = code
            return 0
        }
        let rc = nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
        nghttp2_session_callbacks_del(callbacks)
        precondition(rc == 0, "nghttp2_session_client_new failed")
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: window)]
        _ = nghttp2_submit_settings(session, 0, &settings, 1)
        _ = nghttp2_session_set_local_window_size(session, 0, 0, Int32(min(window, 1 << 30)))
    }

    deinit { nghttp2_session_del(session) }

    // MARK: Requests

    /// Submits a request with the four pseudo-headers, then `headers`; with `body` a DATA stream follows, which
    /// stays open (deferred) after the bytes given until `isComplete` (or `appendBody(…, isComplete: true)`).
    @discardableResult
    func request(_ method: String = "GET", _ path: String = "/", authority: String = "example.test",
                 headers: [(String, String)] = [], body: [UInt8]? = nil, isComplete: Bool = true) -> Int32 {
        let fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)] + headers
        let id: Int32 = withNameValues(fields) { nva in
            guard body != nil else { return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, nil, nil) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: { _, id, buffer, length, flags, _, user in
                let c = Unmanaged<H2PeerClient>.fromOpaque(user!).takeUnretainedValue()
                guard var upload = c.uploads[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
                let n = min(length, upload.body.count - upload.sent)
                if n == 0 && !upload.isComplete { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
                upload.body.withUnsafeBytes { UnsafeMutableRawPointer(buffer!).copyMemory(from: $0.baseAddress! + upload.sent, byteCount: n) }
                upload.sent += n
                c.uploads[id] = upload
                if upload.isComplete && upload.sent == upload.body.count { flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
                return n
            })
            return nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, &provider, nil)
        }
        precondition(id > 0, "nghttp2_submit_request failed: \(id)")
        if let body { uploads[id] = (body, 0, isComplete) }
        responses[id] = Response()
        return id
    }

    /// More request body for a deferred stream (or its end).
    func appendBody(_ stream: Int32, _ bytes: [UInt8], isComplete: Bool) {
        uploads[stream]!.body += bytes
        uploads[stream]!.isComplete = isComplete
        _ = nghttp2_session_resume_data(session, stream)
    }

    /// Body bytes of `stream` that nghttp2 has taken so far (limited by the window the server granted).
    func uploaded(_ stream: Int32) -> Int { uploads[stream]?.sent ?? 0 }

    func reset(_ stream: Int32, code: UInt32) {
        _ = nghttp2_submit_rst_stream(session, 0, stream, code)
    }

    // MARK: Bytes in, bytes out

    /// Everything nghttp2 has to send now (the preface and SETTINGS first).
    func output() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            precondition(n >= 0, "nghttp2_session_mem_send failed: \(n)")
            if n == 0 { return out }
            out.append(contentsOf: UnsafeBufferPointer(start: chunk, count: n))
        }
    }

    /// Feeds the server's bytes to nghttp2 and to the frame parser; nghttp2's result (negative on a fatal error).
    @discardableResult
    func input(_ bytes: [UInt8]) -> Int {
        let parsed = H2Frame.parse(unparsed + bytes)
        frames += parsed.frames
        unparsed = parsed.rest
        return bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
    }

    // MARK: What the client knows of the server

    func remoteSetting(_ id: nghttp2_settings_id) -> UInt32 { nghttp2_session_get_remote_settings(session, id) }

    /// The size of the HPACK decoder's dynamic table (RFC 7541 §4.1: what the server's responses had it index).
    var dynamicTableSize: Int { Int(nghttp2_session_get_hd_inflate_dynamic_table_size(session)) }

    /// The window the server grants `stream` (or the connection, for 0) right now.
    func remoteWindow(_ stream: Int32) -> Int32 {
        stream == 0 ? nghttp2_session_get_remote_window_size(session) : nghttp2_session_get_stream_remote_window_size(session, stream)
    }

    var goAways: [(lastStreamId: Int32, errorCode: UInt32)] { frames.compactMap(\.goAway) }
    func resets(_ stream: Int32) -> [UInt32] { frames.filter { $0.streamId == stream }.compactMap(\.resetCode) }
}

/// Calls `body` with an nghttp2 name/value vector for `fields`, all in one scratch allocation valid during the call.
func withNameValues<R>(_ fields: [(String, String)], _ body: (UnsafeBufferPointer<nghttp2_nv>) -> R) -> R {
    var bytes: [UInt8] = []
    var offsets: [(Int, Int, Int, Int)] = []
    for (name, value) in fields {
        let n = bytes.count
        bytes += Array(name.utf8)
        let v = bytes.count
        bytes += Array(value.utf8)
        offsets.append((n, name.utf8.count, v, value.utf8.count))
    }
    bytes.append(0)  // never empty, so the base address exists
    return bytes.withUnsafeMutableBufferPointer { scratch in
        let p = scratch.baseAddress!
        let nva = offsets.map { nghttp2_nv(name: p + $0.0, value: p + $0.2, namelen: $0.1, valuelen: $0.3, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)) }
        return nva.withUnsafeBufferPointer(body)
    }
}
