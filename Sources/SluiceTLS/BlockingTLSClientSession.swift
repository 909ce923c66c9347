// Protocol layer: one client-side TLS connection over a blocking socket (the etcd client's control-plane calls),
// verified against a TLSClientContext; off the data plane, so plain blocking OpenSSL calls.
import COpenSSL
import CSluiceTLS
#if canImport(Glibc)
import Glibc
#endif

/// Why a client handshake failed: OpenSSL's words, or the certificate verification's.
public struct BlockingTLSClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

public final class BlockingTLSClientSession {
    private var ssl: OpaquePointer?
    /// Keeps the SSL_CTX alive while this session exists.
    private let context: TLSClientContext

    /// Runs the handshake on the connected, blocking `fd`; the peer's certificate must name `serverName` (an IP
    /// literal or a DNS name). The caller owns and closes `fd`. OpenSSL writes with write(2), without MSG_NOSIGNAL:
    /// the process must ignore SIGPIPE.
    public init(fd: Int32, context: TLSClientContext, serverName: String) throws(BlockingTLSClientError) {
        var probe = in6_addr()
        let isIP = inet_pton(AF_INET, serverName, &probe) == 1 || inet_pton(AF_INET6, serverName, &probe) == 1
        guard let ssl = sluice_tls_client_new(context.context, fd, serverName, isIP ? 1 : 0) else {
            throw BlockingTLSClientError(description: "cannot create a TLS session for \(serverName)")
        }
        let rc = SSL_connect(ssl)
        guard rc == 1 else {
            let reason: String
            if let failure = sluice_tls_verify_failure(ssl) {
                reason = "certificate verification failed: \(String(cString: failure))"
            } else {
                let code = ERR_get_error()
                if code != 0 {
                    var text = [CChar](repeating: 0, count: 256)
                    ERR_error_string_n(code, &text, text.count)
                    reason = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                } else {
                    reason = "handshake failed: \(String(cString: strerror(errno)))"
                }
            }
            ERR_clear_error()
            SSL_free(ssl)
            throw BlockingTLSClientError(description: reason)
        }
        self.ssl = ssl
        self.context = context
    }

    deinit { close() }

    /// Up to `buffer.count` decrypted bytes; 0 once the peer closed, nil on an error (a receive timeout included).
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        guard let ssl, let base = buffer.baseAddress, buffer.count > 0 else { return nil }
        let count = SSL_read(ssl, base, Int32(clamping: buffer.count))
        if count > 0 { return Int(count) }
        let error = SSL_get_error(ssl, count)
        ERR_clear_error()
        if error == SSL_ERROR_ZERO_RETURN { return 0 }
        // SSL_ERROR_SYSCALL with errno 0 is an EOF without close_notify: the HTTP framing says whether it was complete.
        if error == SSL_ERROR_SYSCALL && count == 0 && errno == 0 { return 0 }
        return nil
    }

    /// All of `bytes`, or false when the peer is gone.
    public func write(_ bytes: [UInt8]) -> Bool {
        guard let ssl else { return false }
        return BlockingTLSSession.writeAll(bytes, to: ssl)
    }

    /// Frees the session without close_notify: callers close after a complete response or after a cancel, when
    /// the socket may already be shut down. The caller closes the socket afterwards.
    public func close() {
        guard let ssl else { return }
        SSL_free(ssl)
        self.ssl = nil
    }
}
