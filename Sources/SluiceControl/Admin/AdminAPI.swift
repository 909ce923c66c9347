// Control layer: the admin HTTP API — Kubernetes-shaped InferenceService resources (GET/PUT/POST/DELETE),
// revisions, events, the rollout gate (POST …/NAME/rollout), /metrics, /healthz and /readyz — over the blocking server; bearer-token protected when configured.
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
        if let token, request.header("Authorization") != "Bearer \(token)" {
            return Self.status(401, "Unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
        }
        if path == "/metrics", let metrics { return metrics.respond(to: request) }
        guard path.hasPrefix(Self.prefix + "/") else { return Self.status(404, "NotFound", "the server could not find the requested resource") }
        let parts = path.dropFirst(Self.prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch (request.method, parts.count) {
        case ("GET", 1) where parts[0] == "inferenceservices":
            return Self.json(200, Self.list(plane.resources(namespace: nil)))
        case ("GET", 3) where parts[0] == "namespaces" && parts[2] == "top":
            guard let topSampler else { break }
            return top(topSampler, namespace: parts[1], name: nil)
        case ("GET", 5) where parts[0] == "namespaces" && parts[2] == "inferenceservices" && parts[4] == "top":
            guard let topSampler else { break }
            return top(topSampler, namespace: parts[1], name: parts[3])
        case (_, _) where parts.count >= 3 && parts[0] == "namespaces" && parts[2] == "inferenceservices":
            let namespace = parts[1]
            let name = parts.count >= 4 ? parts[3] : nil
            let subresource = parts.count >= 5 ? parts[4] : nil
            guard parts.count <= 5, subresource == nil || ["revisions", "events", "rollout"].contains(subresource!) else { break }
            return handleResource(request, namespace: namespace, name: name, subresource: subresource)
        default:
            break
        }
        return Self.status(404, "NotFound", "the server could not find the requested resource")
    }

    private func handleResource(_ request: BlockingRequest, namespace: String, name: String?, subresource: String?) -> BlockingResponse {
        switch (request.method, name, subresource) {
        case ("GET", nil, nil):
            return Self.json(200, Self.list(plane.resources(namespace: namespace)))
        case ("GET", let name?, nil):
            guard let resource = plane.resource(namespace: namespace, name: name) else { return Self.notFound(name) }
            return Self.json(200, resource)
        case ("GET", let name?, "revisions"):
            guard let rows = plane.revisionRows(namespace: namespace, name: name) else { return Self.notFound(name) }
            return Self.json(200, .array(rows.map(\.json)))
        case ("GET", let name?, "events"):
            // A core/v1 EventList of what happened to this service, least recent first (the last 50, repeats folded).
            guard let events = plane.events(namespace: namespace, name: name) else { return Self.notFound(name) }
            return Self.json(200, .object(["apiVersion": "v1", "kind": "EventList", "metadata": .object([:]),
                                           "items": .array(events.map(\.json))]))
        case ("POST", let name?, "rollout"):
            // `sluice rollout pause|resume|abort`: `{"action": "pause"}` on the service's running canary analysis.
            let action = JSONValue.parse(request.body)?["action"]?.stringValue
            let gates: [String: RolloutGate] = ["pause": .paused, "resume": .running, "abort": .aborted]
            guard let action, let gate = gates[action] else {
                return Self.status(400, "BadRequest", "expected a body like {\"action\": \"pause\"}, with action pause, resume or abort")
            }
            do {
                return Self.json(200, try plane.rollout(namespace: namespace, name: name, gate: gate))
            } catch {
                return Self.status(error.status, error.reason, error.description)
            }
        case ("PUT", _, nil), ("POST", _, nil):
            let text = String(decoding: request.body, as: UTF8.self)
            do {
                // With a name in the URL, the plane checks that the body is that resource before applying it.
                let results = try plane.apply(text, defaultNamespace: namespace, resourceName: name)
                var response = Self.json(results.contains { $0.1 == .created } ? 201 : 200, Self.list(results.compactMap {
                    plane.resource(namespace: $0.0.namespace, name: $0.0.name)
                }))
                // kubectl's one-word outcome per document, in order, for `sluice apply`.
                response.headers.append(("Sluice-Apply-Result", results.map { "\($0.0.namespace)/\($0.0.name)=\($0.1)" }.joined(separator: ",")))
                return response
            } catch {
                return Self.status(error.status, error.reason, error.description)
            }
        case ("DELETE", let name?, nil):
            do {
                guard try plane.delete(namespace: namespace, name: name) else { return Self.notFound(name) }
                return Self.json(200, .object(["kind": "Status", "apiVersion": "v1", "status": "Success",
                                               "details": .object(["name": .string(name), "kind": "inferenceservices"])]))
            } catch {
                return Self.status(error.status, error.reason, error.description)
            }
        default:
            return Self.status(405, "MethodNotAllowed", "\(request.method) is not supported here")
        }
    }

    static func list(_ items: [JSONValue]) -> JSONValue {
        .object(["apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList", "items": .array(items)])
    }

    static func notFound(_ name: String) -> BlockingResponse {
        status(404, "NotFound", "inferenceservices.serving.kserve.io \"\(name)\" not found")
    }

    /// A Kubernetes `Status` object, the shape kubectl understands for failures.
    static func status(_ code: Int, _ reason: String, _ message: String) -> BlockingResponse {
        json(code, .object(["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
                            "message": .string(message), "reason": .string(reason), "code": .int(code)]))
    }

    static func json(_ code: Int, _ value: JSONValue) -> BlockingResponse {
        BlockingResponse.json(status: code, value.jsonText)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSONValue {
    /// Pretty JSON with sorted keys, as `kubectl get -o json` prints.
    public var jsonText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding a JSONValue cannot fail: every case maps to a JSON value.
        return String(decoding: (try? encoder.encode(self)) ?? Data("null".utf8), as: UTF8.self)
    }

    /// One line of JSON with sorted keys, for fields of an event line.
    public var compactJSONText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // As above: encoding a JSONValue cannot fail.
        return String(decoding: (try? encoder.encode(self)) ?? Data("null".utf8), as: UTF8.self)
    }

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
