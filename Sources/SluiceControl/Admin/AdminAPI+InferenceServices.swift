// Control layer: the admin API's InferenceService resources under /apis/serving.kserve.io/v1beta1 — the Kubernetes
// verbs on them (get, list, watch, create, replace, patch, delete, the status subresource) and Sluice's own
// subresources (revisions, events, rollout, top) and multi-document apply (PUT to the collection, `sluice apply`).
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting

extension AdminAPI {
    /// `parts`: the path after `/apis/serving.kserve.io/v1beta1/`, split at `/`; nil: no such resource (404).
    func inferenceServices(_ request: BlockingRequest, parts: [String]) -> BlockingResponse? {
        switch (request.method, parts.count) {
        case ("GET", 1) where parts[0] == "inferenceservices":
            return collection(request, namespace: nil)
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
            guard parts.count <= 5, subresource == nil || ["revisions", "events", "rollout", "status"].contains(subresource!) else { break }
            return handleResource(request, namespace: namespace, name: name, subresource: subresource)
        default:
            break
        }
        return nil
    }

    func handleResource(_ request: BlockingRequest, namespace: String, name: String?, subresource: String?) -> BlockingResponse {
        switch (request.method, name, subresource) {
        case ("GET", nil, nil):
            return collection(request, namespace: namespace)
        case ("GET", let name?, nil), ("GET", let name?, "status"):
            // The status subresource reads the whole object, as the API server's does.
            guard let resource = plane.resource(namespace: namespace, name: name) else { return Self.notFound(name) }
            if Self.wantsTable(request) {
                return Self.tableResponse(Self.isvcTable([resource], resourceVersion: resource["metadata"]?["resourceVersion"]?.stringValue, request: request))
            }
            return Self.json(200, resource)
        case (_, _?, "status"):
            // The status is Sluice's to write (readiness, traffic, analysis): a client's write would be overwritten
            // at the next probe, so it is refused rather than silently lost.
            return Self.status(405, "MethodNotAllowed", "\(request.method) is not allowed on inferenceservices/status: Sluice writes the status of an InferenceService")
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
                return Self.status(error)
            }
        case ("PUT", nil, nil):
            return applyDocuments(request, namespace: namespace)
        case ("POST", nil, nil):
            return write(request, .create, namespace: namespace, name: nil)
        case ("PUT", let name?, nil):
            return write(request, .replace, namespace: namespace, name: name)
        case ("PATCH", let name?, nil):
            return patch(request, namespace: namespace, name: name)
        case ("DELETE", let name?, nil):
            return delete(request, namespace: namespace, name: name)
        default:
            return Self.status(405, "MethodNotAllowed", "\(request.method) is not supported here")
        }
    }

    // MARK: Reads

    /// A list (or, with `watch`, a watch) of `namespace`'s objects, every namespace's when nil.
    func collection(_ request: BlockingRequest, namespace: String?) -> BlockingResponse {
        let selection: ObjectSelection
        do {
            selection = try ObjectSelection(request)
        } catch {
            return Self.status(400, "BadRequest", error.message)
        }
        if let watch = request.query("watch"), watch == "true" || watch == "1" {
            return self.watch(request, namespace: namespace, selection: selection)
        }
        let page: ListPage
        do {
            page = try ListPage.read(plane, namespace: namespace, selection: selection, limit: request.query("limit").flatMap(Int.init),
                                     continueToken: request.query("continue").flatMap { $0.isEmpty ? nil : $0 })
        } catch {
            return Self.status(error)
        }
        if Self.wantsTable(request) {
            var table = Self.isvcTable(page.items, resourceVersion: String(page.resourceVersion), request: request)
            if let token = page.continueToken, case .object(var members) = table {
                var metadata = members["metadata"]?.objectValue ?? [:]
                metadata["continue"] = .string(token)
                members["metadata"] = .object(metadata)
                table = .object(members)
            }
            return Self.tableResponse(table)
        }
        var metadata: [String: JSONValue] = ["resourceVersion": .string(String(page.resourceVersion))]
        if let token = page.continueToken { metadata["continue"] = .string(token) }
        if let remaining = page.remainingItemCount { metadata["remainingItemCount"] = .int(remaining) }
        return Self.json(200, .object(["apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList",
                                       "metadata": .object(metadata), "items": .array(page.items)]))
    }

    // MARK: Writes

    /// `sluice apply`'s multi-document apply (a Sluice extension: Kubernetes has no PUT on a collection): every
    /// document validated before any is applied, kubectl's one-word outcome per document in `Sluice-Apply-Result`.
    func applyDocuments(_ request: BlockingRequest, namespace: String) -> BlockingResponse {
        let text = String(decoding: request.body, as: UTF8.self)
        do {
            let results = try plane.apply(text, defaultNamespace: namespace)
            var response = Self.json(results.contains { $0.1 == .created } ? 201 : 200, Self.list(results.compactMap {
                plane.resource(namespace: $0.0.namespace, name: $0.0.name)
            }))
            response.headers.append(("Sluice-Apply-Result", results.map { "\($0.0.namespace)/\($0.0.name)=\($0.1)" }.joined(separator: ",")))
            return response
        } catch {
            return Self.status(error)
        }
    }

    func patch(_ request: BlockingRequest, namespace: String, name: String) -> BlockingResponse {
        let contentType = (request.header("Content-Type") ?? "").split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
        let force = request.query("force") == "true"
        switch contentType {
        case "application/merge-patch+json":
            guard !force else { return Self.forceOnNonApply() }
            return write(request, .mergePatch, namespace: namespace, name: name)
        case "application/json-patch+json":
            guard !force else { return Self.forceOnNonApply() }
            return write(request, .jsonPatch, namespace: namespace, name: name)
        case "application/apply-patch+yaml":
            guard let manager = request.query("fieldManager"), !manager.isEmpty else {
                return Self.status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                                   details: .object(["group": "meta.k8s.io", "kind": "PatchOptions", "causes": .array([
                                       .object(["reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"]),
                                   ])]))
            }
            return write(request, .apply(force: force), namespace: namespace, name: name)
        default:
            // Strategic merge patch is for built-in types only: custom resources refuse it too.
            return Self.status(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        }
    }

    func write(_ request: BlockingRequest, _ verb: ObjectWrite.Verb, namespace: String, name: String?) -> BlockingResponse {
        let options: WriteOptions
        do {
            options = try WriteOptions(request)
        } catch {
            return Self.status(error)
        }
        do {
            let outcome = try plane.write(ObjectWrite(verb: verb, namespace: namespace, name: name, body: request.body, manager: options.manager,
                                                      fieldValidation: options.fieldValidation, isDryRun: options.isDryRun))
            var response = Self.json(outcome.isCreated ? 201 : 200, outcome.object)
            response.headers += Self.warningHeaders(outcome.warnings)
            return response
        } catch {
            return Self.status(error)
        }
    }

    func delete(_ request: BlockingRequest, namespace: String, name: String) -> BlockingResponse {
        let options: WriteOptions
        do {
            options = try WriteOptions(request)
        } catch {
            return Self.status(error)
        }
        // DeleteOptions in the body (kubectl sends `{"propagationPolicy": …}`), with optional preconditions.
        let body = JSONValue.parse(request.body)
        let preconditions = body?["preconditions"]
        do {
            let object = try plane.deleteObject(namespace: namespace, name: name, uid: preconditions?["uid"]?.stringValue,
                                                resourceVersion: preconditions?["resourceVersion"]?.stringValue,
                                                isDryRun: options.isDryRun || body?["dryRun"]?.arrayValue?.contains("All") == true)
            // The API server answers a custom resource's delete with a Status Success naming it.
            return Self.json(200, .object(["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Success",
                                           "details": .object(["name": .string(name), "group": .string(ControlPlane.group),
                                                               "kind": .string(ControlPlane.resourceName),
                                                               "uid": object["metadata"]?["uid"] ?? .null])]))
        } catch {
            return Self.status(error)
        }
    }

    // MARK: Helpers

    static func status(_ error: ControlError) -> BlockingResponse {
        status(error.status, error.reason, error.description, details: error.details)
    }

    static func forceOnNonApply() -> BlockingResponse {
        status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch")
    }

    /// RFC 9111 §5.5-style warn-code 299 headers, as the API server sends field-validation warnings.
    static func warningHeaders(_ warnings: [String]) -> [(String, String)] {
        warnings.map { text in
            let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return ("Warning", "299 - \"\(escaped)\"")
        }
    }
}

/// The query parameters every write takes: dryRun, fieldManager, fieldValidation.
struct WriteOptions {
    var isDryRun: Bool
    var manager: String
    var fieldValidation: ManifestDecoder.FieldValidation

    init(_ request: BlockingRequest) throws(ControlError) {
        let dryRun = request.queryItems.filter { $0.name == "dryRun" }.map(\.value)
        guard dryRun.allSatisfy({ $0 == "All" }) else {
            throw ControlError(status: 400, reason: "BadRequest", description: "Invalid dry run value: \(dryRun.filter { $0 != "All" }.joined(separator: ", ")); only All is supported")
        }
        isDryRun = !dryRun.isEmpty
        // The API server's managerOrUserAgent: the fieldManager, else the User-Agent's product (before the first /).
        let agent = request.header("User-Agent").map { String($0.split(separator: "/", maxSplits: 1).first ?? "") } ?? ""
        manager = request.query("fieldManager").flatMap { $0.isEmpty ? nil : $0 } ?? String(agent.prefix(128))
        switch request.query("fieldValidation") {
        case nil, "", "Strict": fieldValidation = .strict
        case "Warn": fieldValidation = .warn
        case "Ignore": fieldValidation = .ignore
        case let other?:
            throw ControlError(status: 400, reason: "BadRequest",
                               description: "fieldValidation: Unsupported value: \"\(other)\": supported values: \"Ignore\", \"Strict\", \"Warn\"")
        }
    }
}
