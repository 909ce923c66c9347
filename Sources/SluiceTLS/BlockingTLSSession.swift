// Protocol layer: one server-side TLS connection over a blocking socket (the admin API's thread-per-connection
// server), on the same certificates and OpenSSL settings as the data plane's listener (TLSContext).
import COpenSSL
import CSluiceTLS
#if canImport(Glibc)
import Glibc
#endif

public final class BlockingTLSSession {
    private var ssl: OpaquePointer?
    /// Keeps the SSL_CTXs alive while this session exists.
    private let context: TLSContext

    /// Accepts the handshake on `fd` (blocking); nil when it fails. The caller owns and closes `fd`. The process
    /// ignores SIGPIPE (Gateway, ReadinessProber): OpenSSL's writes use write(2), without MSG_NOSIGNAL.
    public init?(fd: Int32, context: TLSContext) {
        guard let ssl = SSL_new(context.defaultContext) else {
            ERR_clear_error()
            return nil
        }
        guard SSL_set_fd(ssl, fd) == 1, SSL_accept(ssl) == 1 else {
            ERR_clear_error()
            SSL_free(ssl)
            return nil
        }
        self.ssl = ssl
        self.context = context
    }

    deinit { close() }

    /// Up to `buffer.count` decrypted bytes; 0 once the peer closed (close_notify or not), nil on an error.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let ssl, let base = buffer.baseAddress, buffer.count > 0 else { return nil }
        let count = SSL_read(ssl, base, Int32(clamping: buffer.count))
        if count > 0 { return Int(count) }
        let error = SSL_get_error(ssl, count)
        ERR_clear_error()
        // A TCP close without close_notify ends a request stream as well as one with it: HTTP framing says
        // whether the request was complete.
        return error == SSL_ERROR_ZERO_RETURN || error == SSL_ERROR_SYSCALL ? 0 : nil
    }

    /// All of `bytes`, or false when the peer is gone.
    public func write(_ bytes: [UInt8]) -> Bool {
        guard let ssl else { return false }
        return BlockingTLSSession.writeAll(bytes, to: ssl)
    }

    /// Sends close_notify (RFC 8446 §6.1) and frees the session; the caller closes the socket afterwards.
    public func close() {
        guard let ssl else { return }
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        SSL_free(ssl)
        self.ssl = nil
    }
}

extension BlockingTLSSession {
    /// SSL_write until every byte is taken (a blocking socket: each call writes whole records); false on an error.
    /// The server and client sessions' one write loop.
    static func writeAll(_ bytes: [UInt8], to ssl: OpaquePointer) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let count = SSL_write(ssl, buffer.baseAddress! + offset, Int32(clamping: buffer.count - offset))
                guard count > 0 else {
                    ERR_clear_error()
                    return false
                }
                offset += Int(count)
            }
            return true
        }
    }
}
