// Control layer: the admin HTTP API's router — /healthz and /readyz, the bearer token, /metrics, then the Kubernetes
// API kubectl speaks (discovery, OpenAPI, core/v1, InferenceServices: one file each) over the blocking server.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting

public struct AdminAPI: Sendable {
    public static let prefix = "/apis/serving.kserve.io/v1beta1"
    let plane: ControlPlane
    let token: String?
    let gateway: Gateway?
    let metrics: MetricsEndpoint?
    let topSampler: TopSampler?

    /// `token`: when set, every request but /healthz and /readyz needs `Authorization: Bearer <token>` (/metrics
    /// included: the metrics-only listener is the tokenless way to scrape).
    /// `gateway`: the data plane whose connections /healthz reports and whose drain turns /readyz false.
    /// `metrics`: what GET /metrics writes; without it /metrics is 404.
    /// `top`: the sampler behind `sluice top` (nil: the resource answers 404).
    public init(plane: ControlPlane, token: String?, gateway: Gateway? = nil, metrics: MetricsEndpoint? = nil, top: TopSampler? = nil) {
        self.plane = plane
        self.token = token
        self.gateway = gateway
        self.metrics = metrics
        self.topSampler = top
    }

    public func handle(_ request: BlockingRequest) -> BlockingResponse {
        var response = route(request)
        // etcd unreachable: what this replica answers from its own copy may be behind the other replicas'.
        if let stale = plane.storeStaleness, request.method == "GET", response.status < 300 {
            let text = "etcd is unreachable since \(RolloutState.timestamp(stale.since)) (\(stale.reason)): this answer is this replica's own copy and may be behind the others'"
            response.headers.append(("Warning", "299 - \"\(text.replacingOccurrences(of: "\"", with: "'"))\""))
        }
        return response
    }

    private func route(_ request: BlockingRequest) -> BlockingResponse {
        let path = request.path
        if path == "/healthz" || path == "/readyz" {
            guard request.method == "GET" || request.method == "HEAD" else { return Self.status(405, "MethodNotAllowed", "use GET") }
            var body: [String: JSONValue] = ["status": "ok"]
            if let gateway { body["connections"] = .int(gateway.activeConnections) }
            // Liveness stays true while draining (the process is fine); readiness turns false the moment the drain
            // starts, before the listeners close, so that a load balancer stops sending new requests.
            if path == "/readyz", let gateway, gateway.isDraining {
                body["status"] = "draining"
                body["reason"] = "the gateway is shutting down: in-flight requests are finishing; send new requests elsewhere"
                return Self.json(503, .object(body))
            }
            return Self.json(200, .object(body))
        }
        guard AdminAuth.authorized(request, token: token) else { return AdminAuth.unauthorized }
        if path == "/metrics", let metrics { return metrics.respond(to: request) }
        if path.hasPrefix("/openapi/"), let response = openAPI(request) { return response }
        if let response = discovery(request) { return response }
        if path == Self.gatewaysPath { return gateways(request) }
        if path.hasPrefix("/api/v1/") {
            let parts = path.dropFirst("/api/v1/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            if let response = coreV1(request, parts: parts) { return response }
        }
        if path.hasPrefix(Self.prefix + "/") {
            let parts = path.dropFirst(Self.prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            if let response = inferenceServices(request, parts: parts) { return response }
        }
        return Self.status(404, "NotFound", "the server could not find the requested resource")
    }

    static func list(_ items: [JSONValue]) -> JSONValue {
        .object(["apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList", "items": .array(items)])
    }

    static func notFound(_ name: String) -> BlockingResponse {
        status(404, "NotFound", "inferenceservices.serving.kserve.io \"\(name)\" not found")
    }

    /// A Kubernetes `Status` object (metav1.Status), the shape kubectl understands for failures; `details` is
    /// StatusDetails (name, group, kind, causes) where Kubernetes sends one.
    static func status(_ code: Int, _ reason: String, _ message: String, details: JSONValue? = nil) -> BlockingResponse {
        var object: [String: JSONValue] = ["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
                                           "message": .string(message), "reason": .string(reason), "code": .int(code)]
        if let details { object["details"] = details }
        return json(code, .object(object))
    }

    static func json(_ code: Int, _ value: JSONValue) -> BlockingResponse {
        BlockingResponse(status: code, headers: [("Content-Type", "application/json")], body: value.serialized(pretty: true))
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSONValue {
    /// Pretty JSON with sorted keys, as `kubectl get -o json` prints.
    public var jsonText: String { String(decoding: serialized(pretty: true), as: UTF8.self) }

    /// One line of JSON with sorted keys, for fields of an event line.
    public var compactJSONText: String { String(decoding: serialized(pretty: false), as: UTF8.self) }

    /// Swift values Yams can represent (integers stay integers, unlike Foundation's NSNumber), for `-o yaml`.
    public var plainValue: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(\.plainValue)
        case .object(let o): return o.mapValues(\.plainValue)
        }
    }

    public static func parse(_ data: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(data))
    }
}

extension RevisionRow {
    /// The row as the admin API sends it to `sluice get revisions`.
    var json: JSONValue {
        .object([
            "name": .string(name),
            "endpoints": .array(endpoints.map { .string($0.description) }),
            "ready": .bool(isReady),
            "reason": reason.map(JSONValue.string) ?? .null,
            "percent": .int(percent),
            "tags": .array(tags.map(JSONValue.string)),
            "creationTimestamp": .string(ISO8601DateFormatter().string(from: creationTimestamp)),
        ])
    }
}

extension RevisionRow {
    /// A row as `sluice get revisions` reads it back from the admin API.
    public init?(json: JSONValue) {
        guard let name = json["name"]?.stringValue else { return nil }
        let endpoints = (json["endpoints"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Endpoint.init(text:)) }
        let created = json["creationTimestamp"]?.stringValue.flatMap { ISO8601DateFormatter().date(from: $0) } ?? Date()
        self.init(name: name, endpoints: endpoints, isReady: json["ready"]?.boolValue ?? false, reason: json["reason"]?.stringValue,
                  percent: json["percent"]?.intValue ?? 0, tags: (json["tags"]?.arrayValue ?? []).compactMap(\.stringValue), creationTimestamp: created)
    }
}

extension Endpoint {
    /// Parses `IP:port` or `[IPv6]:port`, either after an optional `h2c://`, `https://` or `h2://`.
    init?(text full: String) {
        guard let (upstreamProtocol, rest) = Endpoint.splitScheme(full) else { return nil }
        let text = String(rest)
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host, port: port, protocol: upstreamProtocol)
    }
}
