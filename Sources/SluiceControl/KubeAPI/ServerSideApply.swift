// Control layer: server-side apply (`kubectl apply --server-side`, `application/apply-patch+yaml`) and the
// managedFields bookkeeping every write does, as the Kubernetes API server's structured-merge-diff does them.
import Foundation

/// A conflict of an apply with fields another manager owns (a 409 `Conflict` Status with one cause per field).
public struct ServerSideApplyConflict: Error, Sendable {
    /// Each conflicting field: its path as Kubernetes prints it (`.spec.predictor.canaryTrafficPercent`) and the
    /// manager that owns it.
    public var fields: [(path: String, manager: String)]
    /// The owner of each field in `fields` as the API server names it in messages: `"kubectl"` for an applier,
    /// `"kubectl-client-side-apply" using serving.kserve.io/v1beta1` for an updater (internal/conflict.go's
    /// printManager).
    public var owners: [String]

    /// `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using serving.kserve.io/v1beta1:
    /// .spec.predictor.canaryTrafficPercent`; with more, one `conflicts with OWNER:` line per owner (sorted) and a
    /// `- PATH` line per field.
    public var message: String {
        if fields.count == 1 { return "Apply failed with 1 conflict: conflict with \(owners[0]): \(fields[0].path)" }
        var lines: [String] = []
        for owner in Set(owners).sorted() {
            lines.append("conflicts with \(owner):")
            for (index, field) in fields.enumerated() where owners[index] == owner { lines.append("- \(field.path)") }
        }
        return "Apply failed with \(fields.count) conflicts: " + lines.joined(separator: "\n")
    }

    /// The `metav1.Status` the API server answers (errors.NewApplyConflict): 409, reason `Conflict`, one
    /// `FieldManagerConflict` cause per field.
    public var status: JSONValue {
        let causes: [JSONValue] = fields.indices.map { index in
            .object(["reason": "FieldManagerConflict", "message": .string("conflict with \(owners[index])"),
                     "field": .string(fields[index].path)])
        }
        return .object(["kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
                        "message": .string(message), "reason": "Conflict", "details": .object(["causes": .array(causes)]),
                        "code": .int(409)])
    }
}

public enum ServerSideApply {
    /// kubectl's annotation for client-side apply; a server-side apply by `kubectl` keeps it current.
    static let lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"
    /// The API server keeps at most this many Update entries; older ones merge into `ancient-changes`.
    static let maxUpdateManagers = 10

    /// The manager of a non-apply write: the `fieldManager` query parameter, else the User-Agent up to its first
    /// `/` without unprintable characters, at most 128 bytes (apiserver handlers/rest.go's prefixFromUserAgent):
    /// `kubectl/v1.32.0 (linux/amd64) kubernetes/…` → `kubectl`.
    public static func manager(fieldManager: String?, userAgent: String?) -> String {
        if let fieldManager, !fieldManager.isEmpty { return fieldManager }
        let program = (userAgent ?? "").split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var result = ""
        for character in program {
            guard character.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isUnprintable }) else { continue }
            if result.utf8.count + character.utf8.count > 128 { break }
            result.append(character)
        }
        return result
    }

    /// Merges `applied` (the manager's whole intent, the patch body as JSON) into `live` (the stored object: nil when
    /// this apply creates it), with `managedFields` the live object's entries. Fields another manager owns with a
    /// different value conflict unless `force`; fields `manager` applied before and omits now are removed when no
    /// other manager owns them. Returns the merged object (no managedFields in it) and the new entries.
    ///
    /// As the API server does for a CRD with a status subresource, `status` in `applied` is ignored and the live
    /// status kept; for the manager `kubectl`, conflicts only with fields the live object still has as its
    /// `last-applied-configuration` says are allowed (the client-side → server-side upgrade), and that annotation,
    /// when present, is rewritten to the applied object.
    public static func apply(live: JSONValue?, managedFields: [JSONValue], applied: JSONValue, manager: String,
                             force: Bool, now: Date) throws(ServerSideApplyConflict) -> (object: JSONValue, managedFields: [JSONValue]) {
        let liveObject = withoutManagedFields(live ?? .object(["apiVersion": applied["apiVersion"] ?? .null,
                                                               "kind": applied["kind"] ?? .null]))
        var config = withoutManagedFields(applied)
        if case .object(var members) = config {
            members["status"] = nil
            config = .object(members)
        }
        let version = applied["apiVersion"]?.stringValue ?? ""
        var entries = ManagerEntry.decode(managedFields)
        let identity = ManagerEntry.Identity(manager: manager, operation: "Apply", apiVersion: "", subresource: "")

        var object: JSONValue
        do {
            (object, entries) = try merge(live: liveObject, config: config, entries: entries, identity: identity,
                                          version: version, force: force)
        } catch let conflict {
            let allowed = manager == "kubectl" ? allowedConflicts(live: liveObject) : FieldSet()
            let remaining = conflict.paths.filter { !allowed.contains($0.path) }
            guard remaining.isEmpty else { throw ManagerEntry.conflict(remaining) }
            (object, entries) = try! merge(live: liveObject, config: config, entries: entries, identity: identity,
                                           version: version, force: true) // force: true cannot conflict
        }
        // The live status stays: the main resource never writes it (the strategy's reset fields).
        if case .object(var members) = object {
            members["status"] = liveObject["status"]
            object = .object(members)
        }
        if manager == "kubectl", let annotation = object["metadata"]?["annotations"]?[lastAppliedAnnotation], annotation != .null {
            object = setLastApplied(object, applied: config)
        }
        if object != liveObject { entries[identity]?.time = RolloutState.timestamp(now) }
        return (object, ManagerEntry.encode(entries))
    }

    /// The entries after a non-apply write (create, PUT, merge or JSON patch) by `manager`: it owns (operation
    /// Update) the fields it set or changed; other managers lose those fields. When `new` carries its own
    /// `metadata.managedFields` (a PUT of a whole object), those replace the live entries as the API server does
    /// (`[]` or `[{}]` resets them).
    public static func recordUpdate(old: JSONValue?, new: JSONValue, managedFields: [JSONValue], manager: String,
                                    now: Date) -> [JSONValue] {
        var sent = managedFields
        if case .array(let given)? = new["metadata"]?["managedFields"] {
            if given.isEmpty || given == [.object([:])] {
                sent = []
            } else if ManagerEntry.decode(given).count == given.count {
                sent = given
            }
        }
        var entries = ManagerEntry.decode(sent)
        let oldObject = withoutManagedFields(old ?? .object(["apiVersion": new["apiVersion"] ?? .null, "kind": new["kind"] ?? .null]))
        let newObject = withoutManagedFields(new)
        let version = new["apiVersion"]?.stringValue ?? ""
        let comparison = ignoringReset(ManagedFieldsSchema.compare(oldObject, newObject))
        let taken = comparison.modified.union(comparison.added)
        // Like the API server's "current-operation" manager, every entry (this manager's own too) loses what changed.
        for (identity, entry) in entries {
            entries[identity]?.fields = entry.fields.subtracting(taken).subtracting(comparison.removed)
        }
        let operation = strippingMeta(taken)
        let identity = ManagerEntry.Identity(manager: manager, operation: "Update", apiVersion: version, subresource: "")
        if !operation.isEmpty {
            let previous = entries[identity]?.fields ?? FieldSet()
            entries[identity] = ManagerEntry(fields: previous.union(operation), apiVersion: version, time: RolloutState.timestamp(now))
        }
        entries = entries.filter { !$0.value.fields.isEmpty }
        return ManagerEntry.encode(ManagerEntry.capped(entries))
    }

    /// The fieldsV1 a manager gets for applying `object` (its field set less the fields no one owns:
    /// metadata's name, namespace, uid and the like, status): for tests and for `kubectl`-like displays.
    static func appliedFields(_ object: JSONValue) -> FieldSet {
        strippingMeta(ignoringReset(ManagedFieldsSchema.fieldSet(of: withoutManagedFields(object))))
    }

    // MARK: - structured-merge-diff's Updater.Apply

    struct Conflicts: Error {
        var paths: [(identity: ManagerEntry.Identity, path: [FieldPathElement])]
    }

    /// merge/update.go's Apply: merge, prune what this manager stopped applying, then take ownership (conflicts
    /// first, unless forced).
    private static func merge(live: JSONValue, config: JSONValue, entries: [ManagerEntry.Identity: ManagerEntry],
                              identity: ManagerEntry.Identity, version: String,
                              force: Bool) throws(Conflicts) -> (JSONValue, [ManagerEntry.Identity: ManagerEntry]) {
        var entries = entries
        var merged = ManagedFieldsSchema.merge(live, config)
        let lastSet = entries[identity]?.fields
        // The applier's set keeps metadata.name and the like until the end, as in the API server (stripMeta runs
        // after structured-merge-diff), so pruning never removes what the applied object names.
        let set = ignoringReset(ManagedFieldsSchema.fieldSet(of: config))
        entries[identity] = ManagerEntry(fields: set, apiVersion: version, time: entries[identity]?.time)
        if let lastSet, !lastSet.isEmpty {
            merged = prune(merged, entries: entries, lastSet: lastSet)
        }
        let comparison = ignoringReset(ManagedFieldsSchema.compare(live, merged))
        let changed = comparison.modified.union(comparison.added)
        var conflicts: [(ManagerEntry.Identity, [FieldPathElement])] = []
        for (other, entry) in entries where other != identity {
            for path in entry.fields.intersection(changed).paths { conflicts.append((other, path)) }
        }
        if !force && !conflicts.isEmpty { throw Conflicts(paths: conflicts) }
        for (other, entry) in entries where other != identity {
            entries[other]?.fields = entry.fields.subtracting(changed).subtracting(comparison.removed)
        }
        entries[identity]?.fields = strippingMeta(set)
        return (merged, entries.filter { !$0.value.fields.isEmpty })
    }

    /// merge/update.go's prune: a field goes when this manager applied it last time, does not now, and no one else
    /// (nor this apply) owns it; fields nobody owned that were never this manager's stay.
    private static func prune(_ merged: JSONValue, entries: [ManagerEntry.Identity: ManagerEntry], lastSet: FieldSet) -> JSONValue {
        typealias Schema = ManagedFieldsSchema
        let last = Schema.ensuringNamedFields(lastSet)
        var pruned = Schema.removing(last, from: merged)
        // addBackOwnedItems
        let managed = Schema.ensuringNamedFields(entries.values.reduce(FieldSet()) { $0.union($1.fields) })
        let mergedSet = Schema.ensuringNamedFields(Schema.fieldSet(of: merged))
        var prunedSet = Schema.ensuringNamedFields(Schema.fieldSet(of: pruned))
        pruned = Schema.removing(mergedSet.subtracting(prunedSet.union(managed)), from: merged)
        // addBackDanglingItems
        prunedSet = Schema.ensuringNamedFields(Schema.fieldSet(of: pruned))
        return Schema.removing(mergedSet.subtracting(prunedSet).intersection(last), from: merged)
    }

    /// lastappliedmanager.go: the fields of the live `last-applied-configuration` whose live values still equal it.
    private static func allowedConflicts(live: JSONValue) -> FieldSet {
        guard let text = live["metadata"]?["annotations"]?[lastAppliedAnnotation]?.stringValue, !text.isEmpty,
              let lastApplied = GoJSON.decode(text), lastApplied["apiVersion"] == live["apiVersion"] else { return FieldSet() }
        let comparison = ManagedFieldsSchema.compare(lastApplied, live)
        return ManagedFieldsSchema.fieldSet(of: lastApplied)
            .subtracting(comparison.modified).subtracting(comparison.added).subtracting(comparison.removed)
    }

    /// lastappliedupdater.go: the annotation becomes the applied object (without the annotation), as Go encodes it.
    private static func setLastApplied(_ object: JSONValue, applied: JSONValue) -> JSONValue {
        var appliedObject = applied.objectValue ?? [:]
        var appliedMetadata = appliedObject["metadata"]?.objectValue ?? [:]
        var appliedAnnotations = appliedMetadata["annotations"]?.objectValue ?? [:]
        appliedAnnotations[lastAppliedAnnotation] = nil
        appliedMetadata["annotations"] = appliedAnnotations.isEmpty ? nil : .object(appliedAnnotations)
        appliedObject["metadata"] = .object(appliedMetadata)
        guard case .object(var root) = object, case .object(var metadata)? = root["metadata"],
              case .object(var annotations)? = metadata["annotations"] else { return object }
        annotations[lastAppliedAnnotation] = .string(GoJSON.encode(.object(appliedObject)) + "\n")
        metadata["annotations"] = .object(annotations)
        root["metadata"] = .object(metadata)
        return .object(root)
    }

    // MARK: - the API server's wrappers around structured-merge-diff

    /// stripmeta.go: the paths no manager owns (exact paths: `metadata.labels` and below stay).
    private static let strippedPaths: FieldSet = {
        var set = FieldSet()
        set.insert([.field("apiVersion")])
        set.insert([.field("kind")])
        set.insert([.field("metadata")])
        for name in ["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                     "managedFields", "resourceVersion"] {
            set.insert([.field("metadata"), .field(name)])
        }
        return set
    }()

    private static func strippingMeta(_ set: FieldSet) -> FieldSet { set.subtracting(strippedPaths) }

    /// The CRD's reset fields for the main resource: `status` and everything below it (a recursive difference).
    private static func ignoringReset(_ set: FieldSet) -> FieldSet {
        var result = set
        result.members.remove(.field("status"))
        result.children[.field("status")] = nil
        return result
    }

    private static func ignoringReset(_ comparison: ManagedFieldsSchema.Comparison) -> ManagedFieldsSchema.Comparison {
        .init(added: ignoringReset(comparison.added), modified: ignoringReset(comparison.modified),
              removed: ignoringReset(comparison.removed))
    }

    private static func withoutManagedFields(_ object: JSONValue) -> JSONValue {
        guard case .object(var root) = object, case .object(var metadata)? = root["metadata"],
              metadata["managedFields"] != nil else { return object }
        metadata["managedFields"] = nil
        root["metadata"] = .object(metadata)
        return .object(root)
    }

}

private extension Unicode.GeneralCategory {
    /// Go's `unicode.IsPrint` is false for these (and for spaces other than U+0020, rare enough in a User-Agent).
    var isUnprintable: Bool {
        switch self {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }
}
