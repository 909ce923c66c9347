// Protocol layer: one TLS configuration generation — a server SSL_CTX per certificate, with the SNI table
// choosing among them. Built and validated off the hot path; immutable once built.
import COpenSSL
import CSluiceTLS

/// One certificate chain (PEM, leaf first) and its private key (PEM), as paths.
public struct TLSCertificateFiles: Hashable, Sendable {
    public var cert: String
    public var key: String
    public init(cert: String, key: String) { self.cert = cert; self.key = key }
}

/// The application protocol a handshake settled on (RFC 7301). No ALPN at all means HTTP/1.1.
public enum ApplicationProtocol: Equatable, Sendable {
    case http11
    case h2
}

/// A certificate/key pair that cannot serve: which pair, which file, and OpenSSL's or the system's reason.
public struct TLSContextError: Error, CustomStringConvertible, Sendable {
    /// Index of the pair in the list given to `TLSContext.init`.
    public let index: Int
    /// Which of the pair's two files `file` is.
    public let isKey: Bool
    public let file: String
    public let reason: String
    public var description: String { "\(file): \(reason)" }
}

public final class TLSContext: @unchecked Sendable {  // immutable after init; SSL_CTX is safe to share for SSL_new
    public let certificates: [TLSCertificateFiles]
    /// The protocols offered by ALPN, in server preference order.
    public let protocols: [ApplicationProtocol]
    /// One SSL_CTX per certificate, in configuration order; the first is the default for unknown SNI names.
    let contexts: [OpaquePointer]
    private let sni: OpaquePointer

    /// Loads and checks every pair. `offerH2` adds `h2` before `http/1.1` to ALPN; only offer it once the
    /// connection can speak it, since a client that negotiated h2 cannot fall back on the same connection.
    public init(certificates: [TLSCertificateFiles], offerH2: Bool = false) throws(TLSContextError) {
        precondition(!certificates.isEmpty, "a TLS context needs at least one certificate")
        var built: [OpaquePointer] = []
        for (index, pair) in certificates.enumerated() {
            var which: Int32 = 0
            var reason = [CChar](repeating: 0, count: 256)
            let ctx = sluice_tls_ctx_new(pair.cert, pair.key, Int32(offerH2 ? SLUICE_TLS_ALPN_H2_HTTP11 : SLUICE_TLS_ALPN_HTTP11),
                                         &which, &reason, reason.count)
            guard let ctx else {
                built.forEach { SSL_CTX_free($0) }
                let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                switch Int(which) {
                case Int(SLUICE_TLS_BAD_CERT):
                    throw TLSContextError(index: index, isKey: false, file: pair.cert, reason: text)
                case Int(SLUICE_TLS_BAD_PAIR):
                    throw TLSContextError(index: index, isKey: true, file: pair.key, reason: "does not match the certificate in \(pair.cert) (\(text))")
                case Int(SLUICE_TLS_BAD_KEY):
                    throw TLSContextError(index: index, isKey: true, file: pair.key, reason: text)
                default:
                    throw TLSContextError(index: index, isKey: false, file: pair.cert, reason: "OpenSSL refused a setting: \(text)")
                }
            }
            built.append(ctx)
        }
        let table = built.map { Optional($0) }.withUnsafeBufferPointer { sluice_tls_sni_new($0.baseAddress, Int32($0.count)) }
        guard let table else {
            built.forEach { SSL_CTX_free($0) }
            throw TLSContextError(index: 0, isKey: false, file: certificates[0].cert, reason: "out of memory")
        }
        self.certificates = certificates
        self.protocols = offerH2 ? [.h2, .http11] : [.http11]
        self.contexts = built
        self.sni = table
    }

    deinit {
        // Sessions hold a reference to their TLSContext, so no handshake can still need the SNI table here.
        contexts.forEach { SSL_CTX_free($0) }
        sluice_tls_sni_free(sni)
    }

    /// The context new connections start on (the SNI callback may switch them to another one of ours).
    var defaultContext: OpaquePointer { contexts[0] }

    /// Forces a session-ticket key rotation for the whole process (they also rotate every 12 h by themselves).
    /// Tickets under the previous two keys still resume; older ones get a full handshake.
    public static func rotateTicketKeys() { sluice_tls_rotate_ticket_keys() }
}
