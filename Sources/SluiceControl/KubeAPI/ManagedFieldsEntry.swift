// Control layer: one managedFields entry (`metav1.ManagedFieldsEntry`) read from and written to its JSON form, in
// the order and with the identity the API server gives entries.

/// The fields one manager owns through one kind of operation.
struct ManagerEntry: Equatable {
    /// What makes two writes the same entry (managedfields.go's BuildManagerIdentifier): an applier is one entry
    /// whatever apiVersion it applied (the entry records the latest), an updater one per apiVersion.
    struct Identity: Hashable {
        var manager: String
        var operation: String
        var apiVersion: String
        var subresource: String
    }

    var fields: FieldSet
    var apiVersion: String
    /// RFC 3339; nil when the entry never changed the object (a no-op first apply).
    var time: String?

    /// Entries as stored; ones that are not FieldsV1 Apply/Update entries are dropped, as the API server drops
    /// what it cannot decode.
    static func decode(_ values: [JSONValue]) -> [Identity: ManagerEntry] {
        var entries: [Identity: ManagerEntry] = [:]
        for value in values {
            guard let manager = value["manager"]?.stringValue,
                  let operation = value["operation"]?.stringValue, operation == "Apply" || operation == "Update",
                  value["fieldsType"]?.stringValue ?? "FieldsV1" == "FieldsV1",
                  let fields = FieldSet(fieldsV1: value["fieldsV1"] ?? .object([:])) else { continue }
            let apiVersion = value["apiVersion"]?.stringValue ?? ""
            let identity = Identity(manager: manager, operation: operation,
                                    apiVersion: operation == "Apply" ? "" : apiVersion,
                                    subresource: value["subresource"]?.stringValue ?? "")
            entries[identity] = ManagerEntry(fields: fields, apiVersion: apiVersion, time: value["time"]?.stringValue)
        }
        return entries
    }

    /// The JSON entries, sorted as managedfields.go's sortEncodedManagedFields does: Apply before Update, then
    /// oldest first, then by manager, apiVersion and subresource.
    static func encode(_ entries: [Identity: ManagerEntry]) -> [JSONValue] {
        let sorted = entries.sorted { a, b in
            if a.key.operation != b.key.operation { return a.key.operation < b.key.operation }
            // Times are all RFC 3339 UTC seconds, so text order is time order; none sorts first (Go's zero time).
            if (a.value.time ?? "") != (b.value.time ?? "") { return (a.value.time ?? "") < (b.value.time ?? "") }
            if a.key.manager != b.key.manager { return a.key.manager < b.key.manager }
            if a.value.apiVersion != b.value.apiVersion { return a.value.apiVersion < b.value.apiVersion }
            return a.key.subresource < b.key.subresource
        }
        return sorted.map { identity, entry in
            var object: [String: JSONValue] = [
                "manager": .string(identity.manager), "operation": .string(identity.operation),
                "apiVersion": .string(entry.apiVersion), "fieldsType": "FieldsV1", "fieldsV1": entry.fields.fieldsV1,
            ]
            if let time = entry.time { object["time"] = .string(time) }
            if !identity.subresource.isEmpty { object["subresource"] = .string(identity.subresource) }
            return .object(object)
        }
    }

    /// capmanagers.go: beyond ten Update entries, the oldest merge into one `ancient-changes` entry per apiVersion.
    static func capped(_ entries: [Identity: ManagerEntry]) -> [Identity: ManagerEntry] {
        let updaters = entries.filter { $0.key.operation == "Update" }
        guard updaters.count > ServerSideApply.maxUpdateManagers else { return entries }
        var result = entries
        let oldestFirst = updaters.sorted { a, b in
            (a.value.time ?? "", a.key.manager) < (b.value.time ?? "", b.key.manager)
        }
        var count = updaters.count
        var firstByVersion: [String: Identity] = [:]
        for (identity, entry) in oldestFirst where count > ServerSideApply.maxUpdateManagers {
            let bucket = Identity(manager: "ancient-changes", operation: "Update", apiVersion: entry.apiVersion, subresource: "")
            guard let first = firstByVersion[entry.apiVersion] else {
                firstByVersion[entry.apiVersion] = identity
                continue
            }
            if result[bucket] == nil, let firstEntry = result.removeValue(forKey: first) { result[bucket] = firstEntry }
            let bucketFields = result[bucket]?.fields ?? FieldSet()
            result[bucket]?.fields = entry.fields.union(bucketFields)
            result[bucket]?.time = entry.time
            result[identity] = nil
            count -= 1
        }
        return result
    }

    /// internal/conflict.go's printManager for an identity: `"kubectl"`, or for an updater
    /// `"kubectl-client-side-apply" using serving.kserve.io/v1beta1` (the identity has no time, so no `at …`).
    static func ownerText(_ identity: Identity) -> String {
        var text = GoJSON.string(identity.manager)
        if !identity.subresource.isEmpty { text += " with subresource \(GoJSON.string(identity.subresource))" }
        if identity.operation == "Update" { text += " using \(identity.apiVersion)" }
        return text
    }

    /// The conflict error: fields grouped by owner (sorted, as the message lists them), each owner's in
    /// structured-merge-diff's set order (a node's own fields before the subtrees below it).
    static func conflict(_ paths: [(identity: Identity, path: [FieldPathElement])]) -> ServerSideApplyConflict {
        let ordered = paths.enumerated().sorted { a, b in
            let (ownerA, ownerB) = (ownerText(a.element.identity), ownerText(b.element.identity))
            return ownerA != ownerB ? ownerA < ownerB : a.offset < b.offset
        }.map(\.element)
        return ServerSideApplyConflict(fields: ordered.map { (FieldSet.text($0.path), $0.identity.manager) },
                                       owners: ordered.map { ownerText($0.identity) })
    }
}
