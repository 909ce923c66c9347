// Control layer: the control plane over the etcd store — the state it starts from (etcd's, else its last snapshot,
// else it waits), the other replicas' writes replayed through the normal change path, and what it reports of the
// store: staleness, leadership, the replicas.
import Foundation
import SluiceRouting

extension ControlPlane {
    /// etcd's state at start. While etcd is unreachable: this replica's last snapshot when it has one (said in an
    /// event: the routes may be old until etcd is back), else a retry every second until etcd answers.
    static func sharedState(_ shared: EtcdStateStore, snapshot: RolloutState?, componentSuffix: String,
                            events: EventLog) throws(ControlError) -> RolloutState {
        var told = false
        while true {
            do {
                let (records, revision) = try shared.list()
                var state = RolloutState(componentSuffix: componentSuffix)
                state.services = records
                state.resourceVersions = ResourceVersionClock(current: UInt64(revision))
                events.record(Event("store.listed", reason: "StoreListed",
                                    message: "etcd (\(shared.settings.client.endpoints.joined(separator: ", "))): \(records.count) InferenceServices at revision \(revision) under \(shared.prefix)",
                                    fields: [("revision", .int(Int(revision))), ("services", .int(records.count))]))
                return state
            } catch {
                guard error.status == 503 else { throw error }
                if let snapshot {
                    events.record(Event("store.snapshot", reason: "StartedFromSnapshot", level: .warning,
                                        message: "\(error.description); starting from this replica's snapshot (revision \(snapshot.resourceVersions.current), \(snapshot.services.count) InferenceServices) and catching up once etcd answers",
                                        fields: [("revision", .int(Int(snapshot.resourceVersions.current)))]))
                    return snapshot
                }
                if !told {
                    events.record(Event("store.waiting", reason: "WaitingForStore", level: .warning,
                                        message: "\(error.description); no snapshot in the state directory to start from: waiting for etcd"))
                    told = true
                }
                usleep(1_000_000)
            }
        }
    }

    /// The host's name and the admin port: distinct for replicas on one host, stable across restarts.
    static func defaultReplicaName(_ config: GatewayConfig) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let named = buffer.withUnsafeMutableBufferPointer { gethostname(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count - 1) } == 0
        let host = named ? String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self) : "sluice"
        return "\(host):\(config.proxy.admin.port)"
    }

    /// Installs records as etcd has them (the watch's events, a listing, a read after a conflict) through the
    /// normal change path: routes rebuilt and published, watches told. A record this replica already has at that
    /// revision or later is left as it is (its own write coming back, or an older event).
    func replicate(_ batch: StoreBatch) throws(ControlError) {
        _ = try change(.replication, dryRun: false) { core in
            var keys = Set(batch.records.keys)
            if batch.isFull { keys.formUnion(core.state.services.keys) }
            for key in keys {
                let local = core.state.services[key]
                let localVersion = local?.metadata?.resourceVersion ?? 0
                switch batch.records[key] {
                case .some(.some(let record)):
                    guard localVersion < record.metadata?.resourceVersion ?? 0 else { continue }
                    core.state.services[key] = record
                case .some(.none), .none:
                    guard local != nil, localVersion <= batch.revision else { continue }
                    core.state.services[key] = nil
                }
                core.replicated.insert(key)
                core.localOnly.remove(key)
            }
            core.state.resourceVersions.advance(to: batch.revision)
        } events: { old, new, _ in
            new.replicated.sorted().compactMap { key in
                guard let record = new.state.services[key] ?? old.state.services[key] else { return nil }
                let gone = new.state.services[key] == nil
                return Event("isvc.synced", reason: "Synced", involved: Event.Involved(namespace: record.service.namespace, name: record.service.name),
                             message: gone ? "InferenceService \(key) deleted in etcd"
                                 : "InferenceService \(key) at revision \(record.metadata?.resourceVersion ?? 0) from etcd (written by another replica)",
                             fields: [("namespace", .string(record.service.namespace)), ("inferenceservice", .string(record.service.name))])
            }
        }
    }

    /// A watch's progress: etcd is at `revision` and nothing under the prefix changed (lists carry it).
    func advance(to revision: UInt64) {
        core.withLock { $0.state.resourceVersions.advance(to: revision) }
    }

    /// Once leading: writes the readiness this replica saw as a follower (its local-only records).
    func writeLocalView() {
        do {
            _ = try change(.probe, dryRun: false) { _ in () }
        } catch {
            events.record(Event("store.status_write_failed", reason: "StatusWriteFailed", level: .warning,
                                message: "writing the new leader's view of readiness: \(error.description)"))
        }
    }

    /// The etcd revision the routes in force reflect, and their table generation (a replica's membership record).
    var servedRevision: (revision: UInt64, generation: Int) {
        core.withLock { ($0.state.resourceVersions.current, $0.generation) }
    }

    /// Why reads answer from this replica's copy (etcd unreachable, since when); nil with the file store or while
    /// etcd answers.
    public var storeStaleness: (reason: String, since: Date)? { session?.store.staleness }

    /// Whether this replica may make the decisions that are made once (the file store: always).
    public var isLeader: Bool { session?.isLeader ?? true }

    /// The addresses this replica serves on (known once its listeners are bound), for its membership record.
    public func setServingAddresses(listen: String, admin: String) {
        servingAddresses.withLock { $0 = (listen, admin) }
        session?.setAddresses(listen: listen, admin: admin)
    }

    /// The gateway replicas (`sluice get gateways`): etcd's membership records, or this replica alone with the file
    /// store. `stale`: etcd did not answer, so only this replica is listed.
    public func gateways() -> (items: [JSONValue], stale: String?) {
        let (listen, admin) = servingAddresses.withLock { $0 }
        let (revision, generation) = servedRevision
        let me: JSONValue = .object([
            "name": .string(session?.replicaName ?? Self.defaultReplicaName(core.withLock { $0.config })), "listen": .string(listen),
            "admin": .string(admin), "version": .string(AdminAPI.sluiceVersion), "revision": .int(Int(revision)),
            "generation": .int(generation), "leader": .bool(isLeader), "startedAt": .string(RolloutState.timestamp(startedAt)),
        ])
        guard let session else { return ([me], nil) }
        do {
            return (try session.members().sorted { ($0["name"]?.stringValue ?? "") < ($1["name"]?.stringValue ?? "") }, nil)
        } catch {
            return ([me], error.description)
        }
    }
}
