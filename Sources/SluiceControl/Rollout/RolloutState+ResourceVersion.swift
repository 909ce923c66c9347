// Control layer: stamping each changed object with the store's next resource version (and a new object with its
// uid), and telling what changed — the watch's events.
import Foundation

/// One object's change between two states: what a watch sends as ADDED, MODIFIED or DELETED.
public struct ObjectChange: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case added = "ADDED"
        case modified = "MODIFIED"
        case deleted = "DELETED"
    }

    public var kind: Kind
    public var namespace: String
    public var name: String
    public var resourceVersion: UInt64
    /// The record after the change; for a deletion, the record as it was, stamped with the deletion's version.
    public var record: ServiceRecord
    /// The record before the change; nil when it was created.
    public var previous: ServiceRecord?
}

extension RolloutState {
    /// Stamps every record that differs from `old` (added, or changed in anything: spec, metadata, status) with
    /// the next resource version, a new record with a uid too, and takes a version for each deleted one. Returns
    /// the changes in version order.
    mutating func stampChanges(since old: RolloutState) -> [ObjectChange] {
        var changes: [ObjectChange] = []
        for key in services.keys.sorted() {
            guard var record = services[key] else { continue }
            let before = old.services[key]
            guard record != before else { continue }
            let version = resourceVersions.next()
            var metadata = record.metadata ?? StoredMetadata(resourceVersion: version)
            // A record recreated under the same key after a delete in this same change keeps no old identity:
            // only the uid the writer set (the verbs set it at create) or a new one.
            metadata.resourceVersion = version
            record.metadata = metadata
            services[key] = record
            changes.append(ObjectChange(kind: before == nil ? .added : .modified, namespace: record.service.namespace,
                                        name: record.service.name, resourceVersion: version, record: record, previous: before))
        }
        for key in old.services.keys.sorted() where services[key] == nil {
            guard var record = old.services[key] else { continue }
            let version = resourceVersions.next()
            let previous = record
            record.metadata = StoredMetadata(uid: record.metadata?.uid ?? StoredMetadata.newUID(), resourceVersion: version,
                                             managedFields: record.metadata?.managedFields ?? [])
            changes.append(ObjectChange(kind: .deleted, namespace: record.service.namespace, name: record.service.name,
                                        resourceVersion: version, record: record, previous: previous))
        }
        return changes
    }

    /// Records from a state file written before uids and resource versions get both; true when any did (the
    /// caller saves them, so that the uid stays the same across the next restart).
    mutating func stampLegacyRecords() -> Bool {
        var stamped = false
        for key in services.keys.sorted() where services[key]?.metadata == nil {
            services[key]?.metadata = StoredMetadata(resourceVersion: resourceVersions.next())
            stamped = true
        }
        return stamped
    }
}

extension RolloutState {
    /// Sets the API server's metadata of one record (a verb's uid and managedFields); the version is stamped later.
    mutating func setMetadata(namespace: String, name: String, _ metadata: StoredMetadata) {
        services[Self.key(namespace: namespace, name: name)]?.metadata = metadata
    }
}
