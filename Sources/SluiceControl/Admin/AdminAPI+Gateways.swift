// Control layer: the admin API's list of gateway replicas (`sluice get gateways`): each replica's membership record,
// so that an operator sees that every replica serves the same etcd revision.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    public static let gatewaysPath = "/apis/sluice.dev/v1alpha1/gateways"

    /// A Kubernetes-style list: one `Gateway` per replica, its `status` the membership record (listen, admin,
    /// version, revision, generation, leader, startedAt).
    func gateways(_ request: BlockingRequest) -> BlockingResponse {
        guard request.method == "GET" else { return Self.status(405, "MethodNotAllowed", "gateways are read-only: use GET") }
        let (members, stale) = plane.gateways()
        let items: [JSONValue] = members.map { member in
            .object(["apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                     "metadata": .object(["name": member["name"] ?? .string("")]), "status": member])
        }
        var response = Self.json(200, .object([
            "apiVersion": "sluice.dev/v1alpha1", "kind": "GatewayList",
            "metadata": .object(["resourceVersion": .string(String(plane.servedRevision.revision))]), "items": .array(items),
        ]))
        if let stale {
            response.headers.append(("Warning", "299 - \"etcd did not answer (\(stale.replacingOccurrences(of: "\"", with: "'"))): only this replica is listed\""))
        }
        return response
    }
}
