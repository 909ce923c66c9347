// Control layer: who may use the admin API — the bearer token a kubeconfig carries, compared in constant time, the
// API server's 401 for everyone else, and which addresses need a token at all (any but loopback).
import Glibc
import SluiceBlockingHTTP
import SluiceProxy

public enum AdminAuth {
    /// True when no token is configured, or the request carries `Authorization: Bearer <token>`.
    static func authorized(_ request: BlockingRequest, token: String?) -> Bool {
        guard let token else { return true }
        return presents(request.header("Authorization") ?? "", token: token)
    }

    /// Whether an `Authorization` value is `Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1, as the
    /// API server reads it); the credentials are compared in constant time, so that how long a refusal takes says
    /// nothing about how many leading bytes of a guess were right.
    static func presents(_ authorization: String, token: String) -> Bool {
        let value = Array(authorization.utf8)
        let scheme = "bearer "
        guard String(decoding: value.prefix(scheme.utf8.count), as: UTF8.self).lowercased() == scheme else { return false }
        return constantTimeEqual(value[scheme.utf8.count...], Array(token.utf8))
    }

    /// Compares every byte of `presented` whatever the earlier ones were, and folds the length difference into the
    /// same result instead of returning early on it: the time depends on the presented length (the client's, known
    /// to it) only. The secret is indexed modulo its length, so a longer guess reads no byte past it.
    static func constantTimeEqual(_ presented: ArraySlice<UInt8>, _ secret: [UInt8]) -> Bool {
        guard !secret.isEmpty else { return presented.isEmpty }
        var difference = UInt64(truncatingIfNeeded: presented.count ^ secret.count)
        var index = 0
        for byte in presented {
            difference |= UInt64(byte ^ secret[index % secret.count])
            index &+= 1
        }
        return difference == 0
    }

    /// The API server's answer to a request without valid credentials: a Status with reason Unauthorized and
    /// message "Unauthorized" (apimachinery's NewUnauthorized), and the challenge RFC 9110 §11.6.1 requires on
    /// every 401 — the Bearer scheme of RFC 6750 §3, the only one this API takes.
    static var unauthorized: BlockingResponse {
        var response = AdminAPI.status(401, "Unauthorized", "Unauthorized")
        response.headers.append(("WWW-Authenticate", #"Bearer realm="sluice""#))
        return response
    }

    /// 127.0.0.0/8, ::1 (and "localhost", which the admin listener binds as 127.0.0.1): the addresses only this
    /// host can reach, the only ones on which the admin API may run without a token. Anything that does not parse
    /// as one of them counts as reachable from elsewhere.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        return withUnsafeBytes(of: &v6) { bytes in bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1 }
    }

    /// Why an admin API on `address` may not start: nil when it is loopback or a token is configured.
    public static func exposureRefusal(_ address: SocketAddressSpec, hasToken: Bool) -> String? {
        guard !isLoopback(address.host), !hasToken else { return nil }
        return "admin address \(address) is not a loopback address (127.0.0.0/8 or ::1): the admin API changes routes, so it needs a bearer token there (set adminTokenFile in the configuration, or --admin-token-file)"
    }
}
