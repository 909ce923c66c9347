// Control layer: the Kubernetes verbs on one InferenceService — create, replace, the three patches, delete — with
// the API server's preconditions (AlreadyExists, NotFound, a stale resourceVersion's Conflict), managedFields,
// fieldValidation and dryRun. Whatever the verb, the new object is decoded and applied like any manifest.
import Foundation
import SluiceRouting
import Yams

/// One write by a Kubernetes verb, as the admin API parsed it from the request.
public struct ObjectWrite: Sendable {
    public enum Verb: Sendable {
        /// POST to the collection: the body is the new object.
        case create
        /// PUT to the object's URL: the body is the whole object.
        case replace
        /// PATCH with `application/merge-patch+json`.
        case mergePatch
        /// PATCH with `application/json-patch+json`.
        case jsonPatch
        /// PATCH with `application/apply-patch+yaml`: server-side apply (creates a missing object).
        case apply(force: Bool)
    }

    public var verb: Verb
    public var namespace: String
    /// From the URL; nil for a create (the body names the object).
    public var name: String?
    public var body: [UInt8]
    /// `fieldManager`, else the User-Agent's product, as the API server chooses the manager.
    public var manager: String
    public var fieldValidation: ManifestDecoder.FieldValidation
    public var isDryRun: Bool

    public init(verb: Verb, namespace: String, name: String?, body: [UInt8], manager: String,
                fieldValidation: ManifestDecoder.FieldValidation = .strict, isDryRun: Bool = false) {
        self.verb = verb
        self.namespace = namespace
        self.name = name
        self.body = body
        self.manager = manager
        self.fieldValidation = fieldValidation
        self.isDryRun = isDryRun
    }
}

/// What a write answers: the object as GET would then show it (the would-be object for a dry run).
public struct WriteOutcome: Sendable {
    public var object: JSONValue
    public var isCreated: Bool
    /// The decoder's `fieldValidation=Warn` findings, sent as `Warning` headers.
    public var warnings: [String]
}

extension ControlPlane {
    static let group = "serving.kserve.io"
    static let resourceName = "inferenceservices"

    /// Metadata the API server owns: a body's values are preconditions at most, never stored as written.
    static let systemMetadata = ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                                 "deletionTimestamp", "deletionGracePeriodSeconds"]

    public func write(_ write: ObjectWrite) throws(ControlError) -> WriteOutcome {
        let body = try Self.parseBody(write)
        if case .replace = write.verb { try Self.checkNames(body, name: write.name ?? "", namespace: write.namespace) }
        if case .create = write.verb { try Self.checkNames(body, name: nil, namespace: write.namespace) }
        var warnings: [String] = []
        var createdName = write.name ?? ""
        do throws(ControlError) {
            let ((isCreated, name), state) = try change(.apply, dryRun: write.isDryRun) { core throws(ControlError) -> (Bool, String) in
                let now = Date()
                let rules = core.config.hostRules
                let name = write.name ?? body["metadata"]?["name"]?.stringValue ?? ""
                createdName = name
                let current = core.state.record(namespace: write.namespace, name: name)
                let live = current.map { Self.userObject(RolloutState.resource(of: $0, rules: rules, tagRoutingDefault: false)) }
                var managedFields = current?.metadata?.managedFields ?? []
                var object: JSONValue
                switch write.verb {
                case .create:
                    guard current == nil else { throw Self.alreadyExists(name) }
                    object = body
                case .replace:
                    guard let current else { throw Self.notFound(name) }
                    try Self.checkPreconditions(body, current: current, name: name)
                    object = body
                case .mergePatch:
                    guard let current, let live else { throw Self.notFound(name) }
                    object = MergePatch.apply(body, to: Self.withVersion(live, current))
                    try Self.checkPreconditions(object, current: current, name: name)
                case .jsonPatch:
                    guard let current, let live else { throw Self.notFound(name) }
                    do throws(JSONPatch.Failure) {
                        object = try JSONPatch.apply(body, to: Self.withVersion(live, current))
                    } catch {
                        throw error.isMalformed
                            ? ControlError(status: 400, reason: "BadRequest", description: error.description)
                            : ControlError(status: 422, reason: "Invalid", description: "the server rejected our request due to an error in our request",
                                           details: .object(["causes": .array([.object(["reason": "UnexpectedServerResponse",
                                                                                        "message": .string(error.description)])])]))
                    }
                    try Self.checkPreconditions(object, current: current, name: name)
                case .apply(let force):
                    if let current { try Self.checkPreconditions(body, current: current, name: name) }
                    do throws(ServerSideApplyConflict) {
                        (object, managedFields) = try ServerSideApply.apply(live: live, managedFields: managedFields, applied: Self.userObject(body),
                                                                            manager: write.manager, force: force, now: now)
                    } catch {
                        throw Self.applyConflict(error, name: name)
                    }
                }
                let decoded = try Self.decode(Self.userObject(object), write: write, componentSuffix: core.state.componentSuffix)
                warnings = decoded.warnings
                var isvc = decoded.isvc
                try Self.check([isvc], name: name, namespace: write.namespace)
                isvc.manifest = Self.userObject(isvc.manifest)
                let result = core.state.apply(isvc, now: now, resolveEndpoints: Self.resolver(core.config))
                if case .apply = write.verb {} else {
                    managedFields = ServerSideApply.recordUpdate(old: live, new: Self.userObject(object), managedFields: managedFields,
                                                                 manager: write.manager, now: now)
                }
                let uid = current?.metadata?.uid ?? StoredMetadata.newUID()
                core.state.setMetadata(namespace: isvc.namespace, name: isvc.name,
                                       StoredMetadata(uid: uid, resourceVersion: current?.metadata?.resourceVersion ?? 0, managedFields: managedFields))
                if !write.isDryRun { core.applied[result.rawValue, default: 0] += 1 }
                return (current == nil, isvc.name)
            } events: { old, new, result in
                guard let record = new.state.record(namespace: write.namespace, name: result.1) else { return [] }
                let outcome: ApplyResult = result.0 ? .created : (old.state.record(namespace: write.namespace, name: result.1) == record ? .unchanged : .configured)
                return [Self.appliedEvent(record.service, outcome, old: old.state, new: new.state, source: write.manager)].compactMap { $0 }
            }
            guard let record = state.record(namespace: write.namespace, name: name) else { throw Self.notFound(name) }
            return WriteOutcome(object: RolloutState.resource(of: record, rules: core.withLock { $0.config.hostRules }, tagRoutingDefault: false),
                                isCreated: isCreated, warnings: warnings)
        } catch {
            if !write.isDryRun {
                core.withLock { $0.applied["refused", default: 0] += 1 }
                events.record(Event("manifests.refused", reason: "ApplyRefused", level: .warning,
                                    message: "\(write.manager): \(createdName.isEmpty ? "" : "\(write.namespace)/\(createdName) ")refused, nothing applied: \(error.description)",
                                    fields: [("source", .string(write.manager)), ("status", .int(error.status))]))
            }
            throw error
        }
    }

    /// `kubectl delete isvc NAME`: the object as it was, stamped with the deletion's version. `uid` and
    /// `resourceVersion` are DeleteOptions' preconditions (409 when they do not match).
    public func deleteObject(namespace: String, name: String, uid: String? = nil, resourceVersion: String? = nil,
                             isDryRun: Bool = false) throws(ControlError) -> JSONValue {
        let (object, _) = try change(.delete, dryRun: isDryRun) { core throws(ControlError) -> JSONValue in
            guard let current = core.state.record(namespace: namespace, name: name) else { throw Self.notFound(name) }
            if let uid, !uid.isEmpty, uid != current.metadata?.uid {
                throw Self.conflict(name, "Precondition failed: UID in precondition: \(uid), UID in object meta: \(current.metadata?.uid ?? "")")
            }
            if let resourceVersion, !resourceVersion.isEmpty, resourceVersion != current.metadata.map({ String($0.resourceVersion) }) {
                throw Self.conflict(name, "Precondition failed: ResourceVersion in precondition: \(resourceVersion), ResourceVersion in object meta: \(current.metadata.map { String($0.resourceVersion) } ?? "")")
            }
            let object = RolloutState.resource(of: current, rules: core.config.hostRules, tagRoutingDefault: false)
            _ = core.state.delete(namespace: namespace, name: name)
            return object
        }
        if !isDryRun {
            events.forget(namespace: namespace, name: name)
            events.record(Event("isvc.deleted", reason: "Deleted", message: "InferenceService \(namespace)/\(name) and its revisions deleted",
                                fields: [("namespace", .string(namespace)), ("inferenceservice", .string(name))]))
        }
        return object
    }

    /// Objects of `namespace` (every namespace when nil) and the store's version they were read at, in one lock.
    public func snapshot(namespace: String?) -> (objects: [JSONValue], resourceVersion: UInt64) {
        core.withLock { ($0.state.resources(namespace: namespace, rules: $0.config.hostRules), $0.state.resourceVersions.current) }
    }

    /// As `snapshot`, with a subscription to later changes taken in the same lock (so none is missed or doubled).
    func snapshotAndSubscribe(namespace: String?) -> (objects: [JSONValue], resourceVersion: UInt64, subscription: (id: Int, fd: Int32)?) {
        core.withLock { core in
            (core.state.resources(namespace: namespace, rules: core.config.hostRules), core.state.resourceVersions.current, watchHub.subscribe())
        }
    }

    /// The subscription alone, for a watch from a given version (its history comes from the hub).
    func subscribe() -> (current: UInt64, subscription: (id: Int, fd: Int32)?) {
        core.withLock { core in (core.state.resourceVersions.current, watchHub.subscribe()) }
    }

    // MARK: Pieces

    /// The body as JSON (kubectl sends JSON; YAML is read too, as for `application/apply-patch+yaml`).
    static func parseBody(_ write: ObjectWrite) throws(ControlError) -> JSONValue {
        if let json = JSONValue.parse(write.body) { return json }
        let text = String(decoding: write.body, as: UTF8.self)
        if let node = try? Yams.compose(yaml: text), let yaml = try? JSONValue.fromYAML(node), yaml.objectValue != nil { return yaml }
        let what: String
        switch write.verb {
        case .apply: what = "error decoding YAML: the body is not a YAML or JSON object"
        case .mergePatch, .jsonPatch: what = "error decoding patch: the body is not valid JSON"
        case .create, .replace: what = "the body of the request was in an unknown format: it is not valid JSON or YAML"
        }
        throw ControlError(status: 400, reason: "BadRequest", description: what)
    }

    /// The object without what the API server owns (status, system metadata): what the user wrote.
    static func userObject(_ object: JSONValue) -> JSONValue {
        guard case .object(var members) = object else { return object }
        members["status"] = nil
        if case .object(var metadata)? = members["metadata"] {
            for key in systemMetadata { metadata[key] = nil }
            members["metadata"] = .object(metadata)
        }
        return .object(members)
    }

    /// The live object a patch applies to carries its resourceVersion, so that a patch naming another one conflicts.
    private static func withVersion(_ live: JSONValue, _ record: ServiceRecord) -> JSONValue {
        guard case .object(var members) = live, case .object(var metadata)? = members["metadata"], let stored = record.metadata else { return live }
        metadata["resourceVersion"] = .string(String(stored.resourceVersion))
        metadata["uid"] = .string(stored.uid)
        members["metadata"] = .object(metadata)
        return .object(members)
    }

    /// The API server's checkName, before anything else: a body names the URL's object (empty fields take the URL's).
    private static func checkNames(_ body: JSONValue, name: String?, namespace: String) throws(ControlError) {
        if let name, let bodyName = body["metadata"]?["name"]?.stringValue, !bodyName.isEmpty, bodyName != name {
            throw ControlError(status: 400, reason: "BadRequest", description: "the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        if let bodyNamespace = body["metadata"]?["namespace"]?.stringValue, !bodyNamespace.isEmpty, bodyNamespace != namespace {
            throw ControlError(status: 400, reason: "BadRequest", description: "the namespace of the provided object does not match the namespace sent on the request")
        }
    }

    /// A body's `metadata.resourceVersion` (and uid), when set, must be the stored object's: optimistic concurrency.
    private static func checkPreconditions(_ body: JSONValue, current: ServiceRecord, name: String) throws(ControlError) {
        if let version = body["metadata"]?["resourceVersion"]?.stringValue, !version.isEmpty,
           version != current.metadata.map({ String($0.resourceVersion) }) {
            throw conflict(name, "the object has been modified; please apply your changes to the latest version and try again")
        }
        if let uid = body["metadata"]?["uid"]?.stringValue, !uid.isEmpty, uid != current.metadata?.uid {
            throw conflict(name, "Precondition failed: UID in precondition: \(uid), UID in object meta: \(current.metadata?.uid ?? "")")
        }
    }

    private static func decode(_ object: JSONValue, write: ObjectWrite, componentSuffix: String) throws(ControlError) -> (isvc: InferenceService, warnings: [String]) {
        let decoded: ManifestDecoder.DecodedManifests
        do {
            decoded = try ManifestDecoder.decode(object.jsonText, defaultNamespace: write.namespace, source: write.manager,
                                                 componentSuffix: componentSuffix, fieldValidation: write.fieldValidation)
        } catch {
            throw ControlError(status: error.isValidationError ? 422 : 400, reason: error.isValidationError ? "Invalid" : "BadRequest",
                               description: error.description, details: error.isValidationError ? invalidDetails(error, object: object) : nil)
        }
        guard decoded.services.count == 1, let isvc = decoded.services.first else {
            throw ControlError(status: 400, reason: "BadRequest", description: "the request body must be one InferenceService object")
        }
        return (isvc, decoded.warnings)
    }

    /// StatusDetails of a 422: the object's name, group and kind, and one cause per field.
    private static func invalidDetails(_ error: ManifestError, object: JSONValue) -> JSONValue {
        .object([
            "name": .string(object["metadata"]?["name"]?.stringValue ?? ""), "group": .string(group), "kind": .string(InferenceService.kind),
            "causes": .array(error.causes.map { cause in
                let reason: String
                switch cause.kind {
                case .invalid: reason = "FieldValueInvalid"
                case .required: reason = "FieldValueRequired"
                case .forbidden: reason = "FieldValueForbidden"
                }
                return .object(["reason": .string(reason), "message": .string(cause.description), "field": .string(cause.field)])
            }),
        ])
    }

    static func details(_ name: String) -> JSONValue {
        .object(["name": .string(name), "group": .string(group), "kind": .string(resourceName)])
    }

    static func notFound(_ name: String) -> ControlError {
        ControlError(status: 404, reason: "NotFound", description: "\(resourceName).\(group) \"\(name)\" not found", details: details(name))
    }

    static func alreadyExists(_ name: String) -> ControlError {
        ControlError(status: 409, reason: "AlreadyExists", description: "\(resourceName).\(group) \"\(name)\" already exists", details: details(name))
    }

    /// apimachinery's NewConflict wording.
    static func conflict(_ name: String, _ why: String) -> ControlError {
        ControlError(status: 409, reason: "Conflict", description: "Operation cannot be fulfilled on \(resourceName).\(group) \"\(name)\": \(why)",
                     details: details(name))
    }

    /// Server-side apply's conflict as the API server reports it (errors.NewApplyConflict: the causes, no name).
    private static func applyConflict(_ error: ServerSideApplyConflict, name: String) -> ControlError {
        ControlError(status: 409, reason: "Conflict", description: error.message, details: error.status["details"])
    }
}
