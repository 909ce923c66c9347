// Test support: a minimal h2c gRPC-like pod on nghttp2's server API, one thread per connection.
// POST /echo answers the request body back (HEADERS, DATA, trailers grpc-status 0); /fail answers trailers-only
// grpc-status 5; /grpc.health.v1.Health/Check and /inference.GRPCInferenceService/ModelReady answer `healthStatus`
// and `modelReady` (UNIMPLEMENTED while nil, as a pod without that service); /hang never answers (and counts the RST_STREAMs it receives); /stall never answers and never
// grants window for its request body (a pod that reads nothing). Request headers are recorded.
// With `tls`, the pod speaks HTTP/2 over TLS (blocking OpenSSL, the given certificate; ALPN h2 unless `selectH2`
// is false) and counts its completed and failed handshakes.
import CNGHTTP2
import COpenSSL
import SluiceTLS
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class H2EchoBackend: @unchecked Sendable {  // shared state behind `lock`
    let listener: RawBackend
    var port: UInt16 { listener.port }
    private let lock = NSLock()
    private var _requests: [[(String, String)]] = []
    private var _resets = 0
    private var _connections = 0
    /// Sent as a response header, to tell backends apart.
    let name: String
    /// SETTINGS_MAX_CONCURRENT_STREAMS this pod announces.
    let maxStreams: UInt32

    var requests: [[(String, String)]] { lock.withLock { _requests } }
    private var _healthStatus: UInt8?
    private var _modelReady: Bool?
    /// grpc.health.v1 ServingStatus answered to Health/Check (1 SERVING, 2 NOT_SERVING); nil: UNIMPLEMENTED.
    var healthStatus: UInt8? {
        get { lock.withLock { _healthStatus } }
        set { lock.withLock { _healthStatus = newValue } }
    }
    /// KServe V2 ModelReadyResponse.ready; nil: UNIMPLEMENTED.
    var modelReady: Bool? {
        get { lock.withLock { _modelReady } }
        set { lock.withLock { _modelReady = newValue } }
    }
    var resets: Int { lock.withLock { _resets } }
    var connections: Int { lock.withLock { _connections } }

    /// The first connection closes (without answering) when its second request arrives: a pod closing an idle
    /// connection just as the gateway reuses it.
    let dropFirstConnectionOnSecondRequest: Bool

    /// The server SSL_CTX in TLS mode; nil for h2c.
    fileprivate let tlsContext: OpaquePointer?
    private var _handshakes = 0
    private var _failedHandshakes = 0
    var handshakes: Int { lock.withLock { _handshakes } }
    var failedHandshakes: Int { lock.withLock { _failedHandshakes } }
    fileprivate func recordHandshake(ok: Bool) { lock.withLock { if ok { _handshakes += 1 } else { _failedHandshakes += 1 } } }

    init(name: String = "echo", maxStreams: UInt32 = 100, dropFirstConnectionOnSecondRequest: Bool = false,
         tls: TLSCertificateFiles? = nil, selectH2: Bool = true) {
        if let tls {
            let ctx = SSL_CTX_new(TLS_server_method())!
            precondition(SSL_CTX_use_certificate_chain_file(ctx, tls.cert) == 1 && SSL_CTX_use_PrivateKey_file(ctx, tls.key, SSL_FILETYPE_PEM) == 1,
                         "test pod certificate")
            if selectH2 {
                SSL_CTX_set_alpn_select_cb(ctx, { _, out, outLength, offered, offeredLength, _ in
                    // Select "h2" when the client offers it; otherwise no ALPN (SSL_TLSEXT_ERR_NOACK).
                    var i = 0
                    while i < Int(offeredLength) {
                        let n = Int(offered![i])
                        if n == 2 && offered![i + 1] == UInt8(ascii: "h") && offered![i + 2] == UInt8(ascii: "2") {
                            out!.pointee = UnsafePointer(offered! + i + 1)
                            outLength!.pointee = 2
                            return 0  // SSL_TLSEXT_ERR_OK
                        }
                        i += 1 + n
                    }
                    return 3
                }, nil)
            }
            tlsContext = ctx
        } else {
            tlsContext = nil
        }
        self.name = name
        self.maxStreams = maxStreams
        self.dropFirstConnectionOnSecondRequest = dropFirstConnectionOnSecondRequest
        listener = RawBackend()
        listener.start { [unowned self] client in
            let number = self.lock.withLock { self._connections += 1; return self._connections }
            let connection = H2EchoConnection(fd: client.fd, backend: self)
            connection.dropOnRequest = number == 1 && dropFirstConnectionOnSecondRequest ? 2 : 0
            connection.run()
        }
    }

    func stop() { listener.stop() }

    deinit { if let tlsContext { SSL_CTX_free(tlsContext) } }

    fileprivate func record(_ headers: [(String, String)]) { lock.withLock { _requests.append(headers) } }
    fileprivate func recordReset() { lock.withLock { _resets += 1 } }
    fileprivate func recordBody(_ n: Int) { lock.withLock { _bodyBytes += n } }
    private var _bodyBytes = 0
    /// Request body bytes received on every stream.
    var bodyBytes: Int { lock.withLock { _bodyBytes } }
}

private final class H2EchoConnection {
    let fd: Int32
    let backend: H2EchoBackend
    var session: OpaquePointer?
    var headers: [Int32: [(String, String)]] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var outgoing: [Int32: (body: [UInt8], sent: Int, trailers: Bool)] = [:]
    /// Close the connection when this request (1-based) arrives; 0: never.
    var dropOnRequest = 0
    var requestCount = 0
    var dropNow = false
    /// TLS mode: the server session on `fd`.
    var ssl: OpaquePointer?

    init(fd: Int32, backend: H2EchoBackend) {
        self.fd = fd
        self.backend = backend
    }

    func run() {
        if let ctx = backend.tlsContext {
            ssl = SSL_new(ctx)
            SSL_set_fd(ssl, fd)
            let ok = SSL_accept(ssl) == 1
            backend.recordHandshake(ok: ok)
            if !ok { SSL_free(ssl); ssl = nil; return }
        }
        defer { if let ssl { SSL_shutdown(ssl); SSL_free(ssl) } }
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nl, value, vl, _, user in
            let c = Unmanaged<H2EchoConnection>.fromOpaque(user!).takeUnretainedValue()
            let n = String(decoding: UnsafeRawBufferPointer(start: name, count: nl), as: UTF8.self)
            let v = String(decoding: UnsafeRawBufferPointer(start: value, count: vl), as: UTF8.self)
            c.headers[frame!.pointee.hd.stream_id, default: []].append((n, v))
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, len, user in
            let c = Unmanaged<H2EchoConnection>.fromOpaque(user!).takeUnretainedValue()
            c.bodies[id, default: []].append(contentsOf: UnsafeRawBufferPointer(start: data, count: len))
            let path = c.headers[id]?.first { $0.0 == ":path" }?.1 ?? ""
            if !path.hasSuffix("/stall") { nghttp2_session_consume(c.session, id, len) }
            c.backend.recordBody(len)
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let c = Unmanaged<H2EchoConnection>.fromOpaque(user!).takeUnretainedValue()
            let hd = frame!.pointee.hd
            if hd.type == UInt8(NGHTTP2_RST_STREAM.rawValue) { c.backend.recordReset() }
            if hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame!.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                c.requestCount += 1
                if c.requestCount == c.dropOnRequest { c.dropNow = true; return 0 }
                c.backend.record(c.headers[hd.stream_id] ?? [])
            }
            if c.dropNow { return 0 }
            if (hd.type == UInt8(NGHTTP2_HEADERS.rawValue) || hd.type == UInt8(NGHTTP2_DATA.rawValue)) && hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
                c.respond(hd.stream_id)
            }
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        nghttp2_session_set_local_window_size(session, 0, 0, 1 << 24)
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: backend.maxStreams)]
        nghttp2_submit_settings(session, 0, &settings, 1)
        defer { nghttp2_session_del(session) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            while nghttp2_session_want_write(session) != 0 {
                var chunk: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &chunk)
                if n <= 0 { break }
                var off = 0
                while off < n {
                    let w = ssl.map { Int(SSL_write($0, chunk! + off, Int32(n - off))) } ?? Glibc.send(fd, chunk! + off, n - off, Int32(MSG_NOSIGNAL))
                    if w <= 0 { return }
                    off += w
                }
            }
            let n = buffer.withUnsafeMutableBytes { b in ssl.map { Int(SSL_read($0, b.baseAddress, Int32(b.count))) } ?? recv(fd, b.baseAddress, b.count, 0) }
            if n <= 0 { return }
            let rc = buffer.withUnsafeBytes { nghttp2_session_mem_recv(session, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), n) }
            if rc < 0 || dropNow { return }
        }
    }

    func respond(_ id: Int32) {
        let path = headers[id]?.first { $0.0 == ":path" }?.1 ?? ""
        if path.hasSuffix("/hang") || path.hasSuffix("/stall") { return }
        if path == "/grpc.health.v1.Health/Check" || path == "/inference.GRPCInferenceService/ModelReady" {
            let value: UInt8? = path.hasSuffix("/Check") ? backend.healthStatus : backend.modelReady.map { $0 ? 1 : 0 }
            guard let value else {
                submit(id, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12"), ("grpc-message", "Method not found!")], body: false)
                return
            }
            // A Length-Prefixed-Message holding field 1 (varint) = value.
            outgoing[id] = ([0, 0, 0, 0, 2, 0x08, value], 0, true)
            submit(id, [(":status", "200"), ("content-type", "application/grpc"), ("x-backend", backend.name)], body: true)
            return
        }
        if path.hasSuffix("/fail") {
            submit(id, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "5"), ("grpc-message", "model not found")], body: false)
            return
        }
        outgoing[id] = (bodies[id] ?? [], 0, true)
        submit(id, [(":status", "200"), ("content-type", "application/grpc"), ("x-backend", backend.name)], body: true)
    }

    func submit(_ id: Int32, _ fields: [(String, String)], body: Bool, trailers: Bool = false) {
        let storage = fields.map { (Array($0.0.utf8), Array($0.1.utf8)) }
        var pointers: [UnsafeMutablePointer<UInt8>] = []
        var nva: [nghttp2_nv] = []
        for (n, v) in storage {
            let pn = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, n.count)); pn.initialize(from: n, count: n.count)
            let pv = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, v.count)); pv.initialize(from: v, count: v.count)
            pointers += [pn, pv]
            nva.append(nghttp2_nv(name: pn, value: pv, namelen: n.count, valuelen: v.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
        }
        defer { pointers.forEach { $0.deallocate() } }
        if trailers {
            nghttp2_submit_trailer(session, id, nva, nva.count)
        } else if body {
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: { _, id, buf, len, flags, _, user in
                let c = Unmanaged<H2EchoConnection>.fromOpaque(user!).takeUnretainedValue()
                guard var o = c.outgoing[id] else { flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue); return 0 }
                let n = min(len, o.body.count - o.sent)
                o.body.withUnsafeBytes { b in if n > 0 { UnsafeMutableRawPointer(buf!).copyMemory(from: b.baseAddress! + o.sent, byteCount: n) } }
                o.sent += n
                c.outgoing[id] = o
                if o.sent == o.body.count {
                    flags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) | UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
                    c.submit(id, [("grpc-status", "0"), ("grpc-message", "echoed \(o.body.count) bytes")], body: false, trailers: true)
                }
                return n
            })
            nghttp2_submit_response(session, id, nva, nva.count, &provider)
        } else {
            nghttp2_submit_response(session, id, nva, nva.count, nil)
        }
    }
}
