// Routing layer: a revision ready for the hot path: endpoint indices and pre-rendered header bytes.

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

    init(name: String, serviceName: String, namespace: String, endpointIndices: [Int], grpcEndpointIndices: [Int] = []) {
        self.name = name
        self.serviceName = serviceName
        self.namespace = namespace
        self.endpointIndices = endpointIndices
        self.grpcEndpointIndices = grpcEndpointIndices
        let headers = "Knative-Serving-Revision: \(name)\r\n"
            + "Knative-Serving-Namespace: \(namespace)\r\n"
            + "KServe-Isvc-Name: \(serviceName)\r\n"
            + "KServe-Isvc-Namespace: \(namespace)\r\n"
        upstreamHeaders = Array(headers.utf8)
        responseHeader = Array("Sluice-Revision: \(name)\r\n".utf8)
    }
}
