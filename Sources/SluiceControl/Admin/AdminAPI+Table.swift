// Control layer: meta.k8s.io/v1 Table responses (`kubectl get` asks for them in its Accept header) — KServe's printer
// columns for InferenceServices, kubectl's for pods, namespaces and events.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// Whether the Accept header asks for a Table (`application/json;as=Table;v=v1;g=meta.k8s.io`, among others).
    static func wantsTable(_ request: BlockingRequest) -> Bool {
        false
    }

    /// InferenceService objects (as `resource(…)` gives them) as a Table with KServe's printer columns; `resourceVersion`
    /// is the list's.
    static func isvcTable(_ objects: [JSONValue], resourceVersion: String?, request: BlockingRequest) -> JSONValue {
        .object(["kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": .array([])])
    }
}
