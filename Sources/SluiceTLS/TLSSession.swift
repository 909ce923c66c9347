// Protocol layer: one TLS connection (server side toward clients, client side toward pods) over a non-blocking
// socket the caller owns and polls.
// No sockets of its own, no routing: bytes in, bytes out, with the plain socket's IOResult words.
import COpenSSL
import CSluiceTLS
import SluiceIO
#if canImport(Glibc)
import Glibc
#endif

public final class TLSSession {
    public enum HandshakeResult: Equatable {
        /// Established; ALPN chose this protocol (HTTP/1.1 when the client sent no ALPN).
        case done(ApplicationProtocol)
        /// Call `handshake()` again once the fd is readable (or writable): any event will do.
        case wantRead
        case wantWrite
        /// The handshake cannot complete (bad client hello, no shared cipher, peer gone…); close the fd.
        case failed(String)
    }

    private var ssl: OpaquePointer?
    /// Keeps the SNI table and the SSL_CTXs (a TLSContext, or a TLSClientContext) alive while this session exists,
    /// across reloads.
    private let owner: AnyObject
    /// The server generation this session was accepted under; nil for a client session.
    public var context: TLSContext? { owner as? TLSContext }
    public private(set) var applicationProtocol: ApplicationProtocol?
    /// After a fatal error OpenSSL forbids any further I/O on the SSL, close_notify included.
    private var isBroken = false
    /// The end of the stream, found while a read had already returned bytes; handed out by the next read.
    private var pendingEnd: IOResult?
    /// The last read stopped because OpenSSL must write first (a TLS 1.3 KeyUpdate answer): a writable event
    /// should retry the read.
    public private(set) var readWantsWritable = false
    /// The last read stopped early because the socket was proven empty (OpenSSL holds nothing and its last read(2)
    /// was short): like a short plain read, the caller may wait for the next epoll edge without reading again.
    public private(set) var isDrained = false

    /// A session for an accepted socket; nil only when OpenSSL cannot allocate one.
    public init?(fd: Int32, context: TLSContext) {
        guard let ssl = SSL_new(context.defaultContext) else {
            ERR_clear_error()
            return nil
        }
        guard SSL_set_fd(ssl, fd) == 1 else {
            ERR_clear_error()
            SSL_free(ssl)
            return nil
        }
        SSL_set_accept_state(ssl)
        sluice_tls_watch_socket_reads(ssl)
        self.ssl = ssl
        self.owner = context
    }

    /// What a client session checks the pod's certificate against.
    public enum PeerName: Equatable, Sendable {
        /// An IP literal (IPv4 or IPv6) that must be among the certificate's IP subjectAltNames; no SNI is sent.
        case ip(String)
        /// A DNS name, sent as SNI and checked against the certificate's DNS names.
        case dns(String)
    }

    /// A client session on a connected (or still connecting) socket toward a pod; nil only when OpenSSL cannot
    /// allocate one or refuses the name.
    public init?(fd: Int32, clientContext: TLSClientContext, peer: PeerName) {
        let made: OpaquePointer?
        switch peer {
        case .ip(let ip): made = sluice_tls_client_new(clientContext.context, fd, ip, 1)
        case .dns(let name): made = sluice_tls_client_new(clientContext.context, fd, name, 0)
        }
        guard let ssl = made else { return nil }
        self.ssl = ssl
        self.owner = clientContext
    }

    deinit {
        if let ssl { SSL_free(ssl) }
    }

    public var isEstablished: Bool { applicationProtocol != nil }

    /// The handshake resumed an earlier session (a ticket) instead of a full handshake (for the metrics).
    public var isResumed: Bool { ssl.map { SSL_session_reused($0) == 1 } ?? false }

    /// One non-blocking handshake step.
    public func handshake() -> HandshakeResult {
        guard let ssl, !isBroken else { return .failed("session closed") }
        var error: UInt = 0
        var sysErrno: Int32 = 0
        switch sluice_tls_handshake(ssl, &error, &sysErrno) {
        case Int32(SLUICE_TLS_OK):
            let chosen: ApplicationProtocol = sluice_tls_selected_protocol(ssl) == Int32(SLUICE_TLS_PROTO_H2) ? .h2 : .http11
            applicationProtocol = chosen
            return .done(chosen)
        case Int32(SLUICE_TLS_WANT_READ):
            return .wantRead
        case Int32(SLUICE_TLS_WANT_WRITE):
            return .wantWrite
        default:
            isBroken = true
            if let verify = sluice_tls_verify_failure(ssl) {
                return .failed("certificate verify failed: \(String(cString: verify))")
            }
            if error != 0, let text = ERR_reason_error_string(error) { return .failed(String(cString: text)) }
            return .failed(sysErrno == ECONNRESET ? "peer closed the connection" : String(cString: strerror(sysErrno)))
        }
    }

    /// Reads decrypted bytes into `buffer`'s free room, at most `limit` of them.
    ///
    /// Edge-triggered polling and TLS: OpenSSL reads whole records from the socket, so it can hold decrypted
    /// bytes that no future epoll edge will announce. This call therefore keeps reading until `limit` is
    /// reached or OpenSSL needs more bytes from the socket (EAGAIN). Its contract for the caller:
    /// - `.bytes(n)` with `n < limit`: nothing is left inside OpenSSL and the socket is drained, unless the
    ///   stream also ended, which the next call reports; so call again until a non-`.bytes` result before
    ///   waiting for an edge, exactly as with a plain socket read loop that only stops on EAGAIN;
    /// - `.bytes(limit)`: there may be more; read again once there is room (bytes stay safe in OpenSSL);
    /// - `.wouldBlock`: OpenSSL and the socket are both empty: waiting for the next edge is safe;
    /// - `.endOfFile`: the peer sent close_notify; `.failed(errno)`: socket error or TLS alert
    ///   (EPROTO), including a TCP close without close_notify.
    public func read(into buffer: ByteBuffer, limit: Int) -> IOResult {
        if let end = pendingEnd { return end }
        guard let ssl, !isBroken else { return .failed(EBADF) }
        let room = min(limit, buffer.writableBytes)
        precondition(room > 0, "read with no room")
        var total = 0
        readWantsWritable = false
        isDrained = false
        let into = buffer.writable.baseAddress!
        while total < room {
            var done = 0
            var sysErrno: Int32 = 0
            let status = sluice_tls_read(ssl, into + total, room - total, &done, &sysErrno)
            if status == Int32(SLUICE_TLS_OK) {
                total += done
                if sluice_tls_socket_drained(ssl) == 1 {
                    isDrained = true
                    break
                }
                continue
            }
            let end: IOResult
            switch status {
            case Int32(SLUICE_TLS_WANT_READ):
                end = .wouldBlock
            case Int32(SLUICE_TLS_WANT_WRITE):
                readWantsWritable = true
                end = .wouldBlock
            case Int32(SLUICE_TLS_CLOSED):
                end = .endOfFile
            default:
                isBroken = true
                end = .failed(sysErrno)
            }
            if total == 0 { return end }
            if end != .wouldBlock { pendingEnd = end }
            break
        }
        buffer.commit(total)
        return .bytes(total)
    }

    /// Encrypts and sends the buffer's unread bytes once (at most a few records), consuming what was taken.
    /// `.wouldBlock` means: call again with the same bytes first (they may only have grown or moved, which
    /// SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows) once the fd is writable.
    public func write(from buffer: ByteBuffer) -> IOResult {
        guard buffer.readableBytes > 0 else { return .bytes(0) }
        guard let ssl, !isBroken else { return .failed(EBADF) }
        var done = 0
        var sysErrno: Int32 = 0
        switch sluice_tls_write(ssl, buffer.readable.baseAddress!, buffer.readableBytes, &done, &sysErrno) {
        case Int32(SLUICE_TLS_OK):
            buffer.consume(done)
            return .bytes(done)
        case Int32(SLUICE_TLS_WANT_READ), Int32(SLUICE_TLS_WANT_WRITE):
            return .wouldBlock
        case Int32(SLUICE_TLS_CLOSED):
            return .endOfFile
        default:
            isBroken = true
            return .failed(sysErrno)
        }
    }

    /// Ends the session: after a clean end, one non-blocking attempt at close_notify (RFC 8446 §6.1) so the
    /// client can tell a complete response from a truncated one; `clean: false` (an aborted response) sends
    /// none, on purpose. Frees the SSL; the caller closes the fd afterwards.
    public func close(clean: Bool) {
        guard let ssl else { return }
        if clean && !isBroken && isEstablished {
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
        }
        SSL_free(ssl)
        self.ssl = nil
    }
}
