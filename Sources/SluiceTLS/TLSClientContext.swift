// Protocol layer: the client side of TLS, for upstream (gateway → pod) connections: one SSL_CTX that verifies
// pods against a CA file (or the system trust store). Built off the hot path; immutable once built.
import COpenSSL
import CSluiceTLS

/// A CA file that cannot be used to verify pods: the file and OpenSSL's or the system's reason.
public struct TLSClientContextError: Error, CustomStringConvertible, Sendable {
    /// The CA file, or nil for the system's default trust store.
    public let file: String?
    public let reason: String
    public var description: String { "\(file ?? "system trust store"): \(reason)" }
}

public final class TLSClientContext: @unchecked Sendable {  // immutable after init; SSL_CTX is safe to share for SSL_new
    /// The PEM file of trusted CA certificates; nil means the system's default trust store.
    public let caFile: String?
    let context: OpaquePointer

    /// What the client offers in ALPN: `http/1.1` (https:// pods) or `h2` only (h2:// pods).
    public enum Offer: Sendable {
        case http11
        case h2
    }
    public let offer: Offer

    /// Loads the CA file (or the default trust store). Verification is always on: TLS 1.2+, ALPN `http/1.1`, or
    /// `h2` alone for HTTP/2 pods (a pod that does not select it fails the connect).
    /// `certificateFile`/`keyFile`: a client certificate chain and its key (PEM) for servers that ask for one
    /// (etcd's `--client-cert-auth`).
    public init(caFile: String?, offer: Offer = .http11, certificateFile: String? = nil, keyFile: String? = nil) throws(TLSClientContextError) {
        var reason = [CChar](repeating: 0, count: 256)
        let alpn = offer == .h2 ? Int32(SLUICE_TLS_ALPN_H2) : Int32(SLUICE_TLS_ALPN_HTTP11)
        guard let ctx = sluice_tls_client_ctx_new(caFile, alpn, &reason, reason.count) else {
            let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TLSClientContextError(file: caFile, reason: text)
        }
        if let certificateFile {
            let key = keyFile ?? certificateFile
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
                let reason = Self.openSSLReason()
                SSL_CTX_free(ctx)
                throw TLSClientContextError(file: certificateFile, reason: "not a PEM certificate chain: \(reason)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
                let reason = Self.openSSLReason()
                SSL_CTX_free(ctx)
                throw TLSClientContextError(file: key, reason: "not the certificate's PEM private key: \(reason)")
            }
        }
        self.caFile = caFile
        self.offer = offer
        self.context = ctx
    }

    deinit { SSL_CTX_free(context) }

    /// The oldest error on the thread's OpenSSL queue, in words; empties the queue.
    private static func openSSLReason() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown error" }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
