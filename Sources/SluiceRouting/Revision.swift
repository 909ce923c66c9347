// Routing layer: a revision ready for the hot path: endpoint indices, pre-rendered header bytes and the
// process-wide number its metrics are kept under.
import Synchronization

/// A built revision. Header lines are rendered once here so the proxy copies bytes per request.
public final class Revision: Sendable {
    public let name: String
    public let serviceName: String
    public let namespace: String
    /// Indices into `RouteTable.endpoints` of its HTTP/1.1 endpoints; empty means the proxy answers 503.
    public let endpointIndices: [Int]
    /// Indices of its h2c endpoints, where gRPC requests go; empty means gRPC answers UNIMPLEMENTED.
    public let grpcEndpointIndices: [Int]
    /// `Knative-Serving-Revision`, `Knative-Serving-Namespace`, `KServe-Isvc-Name`, `KServe-Isvc-Namespace`
    /// lines, each ending in CRLF, as Knative's activator and KServe's ingress add them toward the backend.
    public let upstreamHeaders: [UInt8]
    /// `Sluice-Revision: <name>\r\n`, added to responses when `revisionHeader` is on.
    public let responseHeader: [UInt8]
    /// A number for (namespace, service, name), the same in every route table that has this revision and never
    /// given to another: the data plane keeps a revision's metrics under it, so its counts stay its own across
    /// route-table generations, and a request routed on an older table still counts where it belongs.
    public let metricsID: Int
    /// `spec.predictor.timeout` in ms, or nil for the gateway's response timeout.
    public let responseTimeoutMs: Int?
    /// `containerConcurrency`: concurrent requests per endpoint, 0 for no limit.
    public let containerConcurrency: Int

    init(name: String, serviceName: String, namespace: String, endpointIndices: [Int], grpcEndpointIndices: [Int] = [],
         responseTimeoutMs: Int? = nil, containerConcurrency: Int = 0) {
        self.name = name
        self.serviceName = serviceName
        self.namespace = namespace
        self.endpointIndices = endpointIndices
        self.grpcEndpointIndices = grpcEndpointIndices
        self.responseTimeoutMs = responseTimeoutMs
        self.containerConcurrency = containerConcurrency
        let headers = "Knative-Serving-Revision: \(name)\r\n"
            + "Knative-Serving-Namespace: \(namespace)\r\n"
            + "KServe-Isvc-Name: \(serviceName)\r\n"
            + "KServe-Isvc-Namespace: \(namespace)\r\n"
        upstreamHeaders = Array(headers.utf8)
        responseHeader = Array("Sluice-Revision: \(name)\r\n".utf8)
        metricsID = RevisionIdentities.id(namespace: namespace, service: serviceName, revision: name)
    }
}

/// The registry of `Revision.metricsID`s: append-only for the life of the process (a few bytes per revision ever
/// configured). Only route-table builds take its lock, never a request.
enum RevisionIdentities {
    private struct Key: Hashable {
        let namespace: String
        let service: String
        let revision: String
    }

    private static let ids = Mutex<[Key: Int]>([:])

    static func id(namespace: String, service: String, revision: String) -> Int {
        ids.withLock { ids in
            let key = Key(namespace: namespace, service: service, revision: revision)
            if let id = ids[key] { return id }
            let id = ids.count
            ids[key] = id
            return id
        }
    }
}
