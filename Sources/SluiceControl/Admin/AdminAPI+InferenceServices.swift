// Control layer: the admin API's InferenceService resources under /apis/serving.kserve.io/v1beta1 — the Kubernetes
// verbs on them and Sluice's subresources (revisions, events, rollout, top).
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting

extension AdminAPI {
    /// `parts`: the path after `/apis/serving.kserve.io/v1beta1/`, split at `/`; nil: no such resource (404).
    func inferenceServices(_ request: BlockingRequest, parts: [String]) -> BlockingResponse? {
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
        return nil
    }

    func handleResource(_ request: BlockingRequest, namespace: String, name: String?, subresource: String?) -> BlockingResponse {
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

}
