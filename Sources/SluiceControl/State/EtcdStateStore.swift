// Control layer: the rollout state in etcd — one key per InferenceService (its record: spec, revision history,
// status), written by transactions that compare the mod revision each key was read at, so that two replicas never
// overwrite each other; plus the keys of the replicas' membership and of the leader.
import Foundation
import Synchronization

/// The layout under the prefix (`/sluice/` by default):
/// - `inferenceservices/NAMESPACE/NAME` → `{"formatVersion":1,"record":{…}}` (the record's resourceVersion is the key's
///   mod revision, so it is not stored);
/// - `gateways/REPLICA` → the replica's `GatewayMember`, under its lease;
/// - `leader` → the leading replica's name, under its lease.
final class EtcdStateStore: Sendable {
    let client: EtcdClient
    let settings: EtcdStoreSettings
    let replicaName: String
    private let health = Mutex<Health>(Health())

    struct Health {
        /// Why the last call to etcd failed, and since when it has been failing; nil while etcd answers.
        var failure: (reason: String, since: Date)?
    }

    init(settings: EtcdStoreSettings, replicaName: String) throws(ControlError) {
        do {
            client = try EtcdClient(settings: settings.client)
        } catch {
            throw ControlError(status: 500, reason: "InternalError", description: "stateStore: \(error.description)")
        }
        self.settings = settings
        self.replicaName = replicaName
    }

    var prefix: String { settings.client.prefix }
    var servicesPrefix: String { prefix + "inferenceservices/" }
    var gatewaysPrefix: String { prefix + "gateways/" }
    var leaderKey: String { prefix + "leader" }

    /// The etcd key of the state's `namespace/name` key.
    func key(forServiceKey serviceKey: String) -> String { servicesPrefix + serviceKey }

    /// The state's `namespace/name` key of an etcd key under `servicesPrefix`, nil for any other key.
    func serviceKey(of key: String) -> String? {
        guard key.hasPrefix(servicesPrefix) else { return nil }
        return String(key.dropFirst(servicesPrefix.count))
    }

    // MARK: Records

    static func encode(_ record: ServiceRecord) throws(ControlError) -> [UInt8] {
        var record = record
        record.metadata?.resourceVersion = 0  // the key's mod revision is the version
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return Array("{\"formatVersion\":\(RolloutState.currentFormatVersion),\"record\":".utf8) + (try encoder.encode(record)) + [UInt8(ascii: "}")]
        } catch {
            throw ControlError(status: 500, reason: "InternalError", description: "encoding \(record.service.namespace)/\(record.service.name): \(error)")
        }
    }

    private struct StoredRecord: Decodable {
        var formatVersion: Int
        var record: ServiceRecord?
    }

    /// The record a key holds, stamped with the key's mod revision. A record of a newer format is refused (as a newer
    /// state.json is): reading it with older code would drop what this version does not know.
    static func decode(_ keyValue: EtcdKeyValue) throws(ControlError) -> ServiceRecord {
        let stored: StoredRecord
        do {
            stored = try JSONDecoder().decode(StoredRecord.self, from: Data(keyValue.value))
        } catch {
            throw ControlError(status: 500, reason: "InternalError", description: "etcd key \(keyValue.key) is not a Sluice record: \(error)")
        }
        guard stored.formatVersion <= RolloutState.currentFormatVersion, var record = stored.record else {
            throw ControlError(status: 500, reason: "InternalError",
                               description: "etcd key \(keyValue.key) has formatVersion \(stored.formatVersion), newer than this sluice's \(RolloutState.currentFormatVersion): upgrade this replica")
        }
        let version = UInt64(keyValue.modRevision)
        if record.metadata == nil { record.metadata = StoredMetadata(resourceVersion: version) }
        record.metadata?.resourceVersion = version
        return record
    }

    /// Every record under the prefix, by `namespace/name`, and the revision they were read at.
    func list() throws(ControlError) -> (records: [String: ServiceRecord], revision: Int64) {
        let (keyValues, revision) = try call { (client) throws(EtcdError) in try client.range(servicesPrefix, prefix: true) }
        var records: [String: ServiceRecord] = [:]
        for keyValue in keyValues {
            guard let serviceKey = serviceKey(of: keyValue.key) else { continue }
            records[serviceKey] = try Self.decode(keyValue)
        }
        return (records, revision)
    }

    /// One record write: put (`record`) or delete (nil), valid only while the key is at `expected` (its mod revision
    /// when this replica read it; 0: absent).
    struct Write {
        var serviceKey: String
        var record: ServiceRecord?
        var expected: UInt64
    }

    enum CommitOutcome {
        /// Every write is in; this is their mod revision.
        case committed(revision: UInt64)
        /// Some key moved since it was read (another replica wrote it): nothing was written. `revision` is etcd's
        /// at the refusal: once this replica has seen it, it has the winner's write.
        case conflict(revision: UInt64)
    }

    /// All the writes in one transaction, or none.
    func commit(_ writes: [Write]) throws(ControlError) -> CommitOutcome {
        var compare: [EtcdCompare] = []
        var operations: [EtcdOperation] = []
        for write in writes {
            let key = key(forServiceKey: write.serviceKey)
            compare.append(.modRevision(key: key, equals: Int64(write.expected)))
            if let record = write.record {
                operations.append(.put(key: key, value: try Self.encode(record)))
            } else {
                operations.append(.delete(key: key))
            }
        }
        let result = try call { (client) throws(EtcdError) in try client.transaction(compare: compare, success: operations) }
        return result.succeeded ? .committed(revision: UInt64(result.revision)) : .conflict(revision: UInt64(result.revision))
    }

    // MARK: Health

    /// Runs one etcd call, noting whether etcd answered; an unreachable etcd is a 503 naming why.
    func call<T>(_ body: (EtcdClient) throws(EtcdError) -> T) throws(ControlError) -> T {
        do {
            let value = try body(client)
            health.withLock { $0.failure = nil }
            return value
        } catch {
            noteFailure(error)
            switch error.kind {
            case .unavailable:
                throw ControlError(status: 503, reason: "ServiceUnavailable",
                                   description: "etcd is unreachable (\(error.description)); nothing was changed, and the gateway keeps serving the routes it has")
            default:
                throw ControlError(status: 500, reason: "InternalError", description: "etcd: \(error.description)")
            }
        }
    }

    func noteFailure(_ error: EtcdError) {
        guard case .unavailable = error.kind else { return }
        health.withLock { health in
            // One line: it travels in a Warning header.
            let reason = error.description.split(whereSeparator: \.isNewline).joined(separator: " ")
            if health.failure == nil { health.failure = (reason, Date()) } else { health.failure?.reason = reason }
        }
    }

    func noteSuccess() { health.withLock { $0.failure = nil } }

    /// Why reads answer from this replica's copy: nil while etcd answers.
    var staleness: (reason: String, since: Date)? { health.withLock { $0.failure } }
}
