// Test support: a TLS client on OpenSSL's API directly, for what TLSClientContext rightly cannot do: offer old
// versions, offer several ALPN protocols, skip verification to read which certificate was served, and present a
// saved session.
import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

final class RawTLSClient {
    enum Step: Equatable { case done, wants, failed(String) }

    private let context: OpaquePointer
    private let ssl: OpaquePointer

    /// `maxVersion` caps the versions offered (TLS1_1_VERSION…); `alpn` in preference order; `serverName` as SNI;
    /// `session` (from `savedSession`) to resume.
    init(fd: Int32, maxVersion: Int32? = nil, alpn: [String] = [], serverName: String? = nil, session: OpaquePointer? = nil) {
        context = SSL_CTX_new(TLS_client_method())!
        // Debian's system policy (MinProtocol TLSv1.2, SECLEVEL 2) applies to every context; an old-version client
        // must really offer the old version, so that a refusal is the server's.
        _ = SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, 0, nil)
        SSL_CTX_set_security_level(context, 0)
        if let maxVersion { _ = SSL_CTX_ctrl(context, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(maxVersion), nil) }
        if !alpn.isEmpty {
            let wire = alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
            precondition(SSL_CTX_set_alpn_protos(context, wire, UInt32(wire.count)) == 0)
        }
        ssl = SSL_new(context)!
        precondition(SSL_set_fd(ssl, fd) == 1)
        if let serverName {
            let rc = serverName.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
            precondition(rc == 1)
        }
        if let session { precondition(SSL_set_session(ssl, session) == 1) }
        SSL_set_connect_state(ssl)
    }

    deinit {
        // Freed without a shutdown, OpenSSL marks the session not resumable (ssl_clear_bad_session), and the
        // SSL_SESSION a test saved is that same object: say the shutdown happened, so the next connection can use it.
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN)
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    func handshake() -> Step {
        classify(SSL_do_handshake(ssl))
    }

    /// Reads what is there (or the end); nil when nothing is readable yet.
    func read(max: Int = 1 << 16) -> (bytes: [UInt8], step: Step) {
        var buffer = [UInt8](repeating: 0, count: max)
        var n = 0
        let rc = SSL_read_ex(ssl, &buffer, max, &n)
        return (Array(buffer.prefix(n)), rc == 1 ? .done : classify(rc))
    }

    func write(_ bytes: [UInt8]) -> Step {
        var n = 0
        return SSL_write_ex(ssl, bytes, bytes.count, &n) == 1 && n == bytes.count ? .done : classify(0)
    }

    private func classify(_ rc: Int32) -> Step {
        if rc == 1 { return .done }
        let error = SSL_get_error(ssl, rc)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return .wants }
        let code = ERR_peek_last_error()
        ERR_clear_error()
        if error == SSL_ERROR_ZERO_RETURN { return .failed("close_notify") }
        return .failed(code == 0 ? "error \(error)" : String(cString: ERR_reason_error_string(code)))
    }

    /// The CN of the certificate the server presented.
    var peerCommonName: String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        var name = [CChar](repeating: 0, count: 256)
        guard X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &name, Int32(name.count)) > 0 else { return nil }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var selectedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var version: Int32 { SSL_version(ssl) }
    var isResumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The session to present on a later connection (a reference the caller frees with SSL_SESSION_free).
    var savedSession: OpaquePointer? { SSL_get1_session(ssl) }
    var hasResumableSession: Bool { SSL_SESSION_is_resumable(SSL_get_session(ssl)) == 1 }
}
