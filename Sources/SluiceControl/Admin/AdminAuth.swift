// Control layer: who may use the admin API — the bearer token a kubeconfig carries, compared in constant time.
import SluiceBlockingHTTP

enum AdminAuth {
    /// True when no token is configured, or the request carries `Authorization: Bearer <token>`.
    static func authorized(_ request: BlockingRequest, token: String?) -> Bool {
        guard let token else { return true }
        return request.header("Authorization") == "Bearer \(token)"
    }
}
