// Control layer: one replica's session with the etcd store — which of a change's records it writes and at what
// revision (leader or follower), the watch that replays the other replicas' writes into the plane, the lease that
// carries its membership and its bid for leadership, and the list of replicas.
import Foundation
import SluiceBlockingHTTP
import SluiceIO
import Synchronization

/// Records read from etcd, to install in the plane as they are there.
struct StoreBatch: Sendable {
    /// By `namespace/name`: the record at its mod revision, or nil where the key is absent (deleted).
    var records: [String: ServiceRecord?]
    /// etcd's revision when these were read: an absence is true as of this revision.
    var revision: UInt64
    /// A whole listing: every record not in it is gone.
    var isFull = false
}

final class StoreSession: @unchecked Sendable {  // `plane` is set once, before start; the rest is behind `state`
    let store: EtcdStateStore
    let events: EventLog
    weak var plane: ControlPlane?
    private let running = Atomic<Bool>(false)
    private let leading = Atomic<Bool>(false)
    private let state = Mutex<SessionState>(SessionState())
    private var threads: [BlockingThread] = []

    private struct SessionState {
        var watch: EtcdWatch?
        var leaderName: String?
        var listen = ""
        var admin = ""
    }

    init(store: EtcdStateStore, events: EventLog) {
        self.store = store
        self.events = events
    }

    /// Whether this replica leads: it alone writes status from readiness, decides canary analyses.
    var isLeader: Bool { leading.load(ordering: .acquiring) }
    var leaderName: String? { state.withLock { $0.leaderName } }
    var replicaName: String { store.replicaName }

    /// The addresses this replica serves on, for its membership record (known once the listeners are bound).
    func setAddresses(listen: String, admin: String) {
        state.withLock { $0.listen = listen; $0.admin = admin }
    }

    // MARK: Writes

    /// The etcd half of a change: writes what this replica owns of `next` (as read in `old`; `intended` is the state
    /// before readiness was synced) in one transaction, stamps it with the transaction's revision and returns the
    /// object changes the watches hear of: the written ones, and the records a replication installed.
    /// - An intent (apply, delete, an analysis's decision) is written by whichever replica it reached, readiness
    ///   included; readiness alone, a reload's endpoints and what follows a replication are written by the leader only.
    ///   A follower keeps them as its own view (`localOnly`), written once it leads.
    /// - Throws a ControlError with `storeConflict` when another replica wrote one of the keys since it was read.
    func commit(old: ControlPlane.Core, next: inout ControlPlane.Core, intended: RolloutState,
                cause: ControlPlane.Cause) throws(ControlError) -> [ObjectChange] {
        let replicated = next.replicated
        next.replicated = []
        let keys = Set(old.state.services.keys).union(next.state.services.keys).union(next.localOnly)
        /// The record a key's write is based on: etcd's (a replication's) or the one this replica had.
        func base(_ key: String) -> ServiceRecord? { replicated.contains(key) ? intended.services[key] : old.state.services[key] }
        var writes: [EtcdStateStore.Write] = []
        let leader = isLeader
        for key in keys.sorted() {
            let record = next.state.services[key]
            let owned: Bool
            if leader {
                owned = record != base(key) || (next.localOnly.contains(key) && record != nil)
            } else {
                owned = cause.isIntent && !replicated.contains(key) && intended.services[key] != old.state.services[key]
            }
            guard owned, record != nil || base(key) != nil else { continue }
            writes.append(.init(serviceKey: key, record: record, expected: base(key)?.metadata?.resourceVersion ?? 0))
        }
        var changes: [ObjectChange] = []
        var written = Set<String>()
        if !writes.isEmpty {
            switch try store.commit(writes) {
            case .conflict:
                var error = ControlError(status: 409, reason: "Conflict", description: "another replica changed \(writes.map(\.serviceKey).joined(separator: ", "))")
                error.storeConflict = writes.map(\.serviceKey)
                throw error
            case .committed(let revision):
                next.state.resourceVersions.advance(to: revision)
                for write in writes {
                    written.insert(write.serviceKey)
                    let previous = base(write.serviceKey)
                    if var record = next.state.services[write.serviceKey] {
                        record.metadata = record.metadata ?? StoredMetadata(resourceVersion: revision)
                        record.metadata?.resourceVersion = revision
                        next.state.services[write.serviceKey] = record
                        changes.append(ObjectChange(kind: previous == nil ? .added : .modified, namespace: record.service.namespace,
                                                    name: record.service.name, resourceVersion: revision, record: record, previous: previous))
                    } else if var gone = previous {
                        gone.metadata?.resourceVersion = revision
                        changes.append(ObjectChange(kind: .deleted, namespace: gone.service.namespace, name: gone.service.name,
                                                    resourceVersion: revision, record: gone, previous: previous))
                    }
                }
            }
        }
        next.localOnly.subtract(written)
        for key in keys.sorted() where !written.contains(key) {
            let record = next.state.services[key]
            if replicated.contains(key) {
                // As another replica wrote it; a follower's own readiness view of it stays its own.
                if record != intended.services[key] { next.localOnly.insert(key) } else { next.localOnly.remove(key) }
                let previous = old.state.services[key]
                if let installed = intended.services[key] {
                    changes.append(ObjectChange(kind: previous == nil ? .added : .modified, namespace: installed.service.namespace,
                                                name: installed.service.name, resourceVersion: installed.metadata?.resourceVersion ?? 0,
                                                record: installed, previous: previous))
                } else if var gone = previous {
                    gone.metadata?.resourceVersion = next.state.resourceVersions.current
                    changes.append(ObjectChange(kind: .deleted, namespace: gone.service.namespace, name: gone.service.name,
                                                resourceVersion: gone.metadata?.resourceVersion ?? 0, record: gone, previous: previous))
                }
            } else if record != old.state.services[key] {
                if record == nil { next.localOnly.remove(key) } else { next.localOnly.insert(key) }
            }
        }
        return changes
    }

    // MARK: Threads

    /// Watches from the revision after `revision` (the state's), keeps the lease, campaigns, registers.
    func start(after revision: UInt64) {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        threads = [
            try? BlockingThread.start(detached: false) { [self] in watchLoop(after: revision) },
            try? BlockingThread.start(detached: false) { [self] in leaseLoop() },
        ].compactMap { $0 }
    }

    func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        state.withLock { $0.watch }?.cancel()
        for thread in threads { thread.join() }
        threads = []
    }

    private var isRunning: Bool { running.load(ordering: .acquiring) }

    /// Sleeps `ms`, waking early once the session stops.
    private func pause(_ ms: Int) {
        var left = ms
        while left > 0, isRunning {
            usleep(UInt32(min(left, 50)) * 1_000)
            left -= 50
        }
    }

    /// Replays every write under the services prefix into the plane, in order. A broken stream is watched again from
    /// the revision after the last one seen; a compacted one (the replica was away too long) is listed again whole.
    private func watchLoop(after revision: UInt64) {
        var after = revision
        var needsList = false
        var backoff = 100
        while isRunning {
            do throws(EtcdError) {
                if needsList {
                    let listed: (records: [String: ServiceRecord], revision: Int64)
                    do { listed = try store.list() } catch { throw EtcdError(.unavailable, error.description) }
                    replicate(StoreBatch(records: listed.records.mapValues { Optional($0) }, revision: UInt64(listed.revision), isFull: true))
                    after = UInt64(listed.revision)
                    needsList = false
                }
                let watch = try store.client.watch(store.servicesPrefix, prefix: true, startRevision: Int64(after) + 1, progressNotify: true)
                state.withLock { $0.watch = watch }
                defer { state.withLock { $0.watch = nil }; watch.cancel() }
                guard isRunning else { return }
                while isRunning {
                    let response = try watch.next()
                    store.noteSuccess()
                    backoff = 100
                    var records: [String: ServiceRecord?] = [:]
                    var last = after
                    for event in response.events {
                        last = max(last, UInt64(event.keyValue.modRevision))
                        guard let key = store.serviceKey(of: event.keyValue.key) else { continue }
                        switch event.kind {
                        case .put:
                            do throws(ControlError) {
                                records[key] = .some(try EtcdStateStore.decode(event.keyValue))
                            } catch {
                                events.record(Event("store.record_refused", reason: "RecordRefused", level: .error,
                                                    message: "\(error.description); this replica keeps its copy of \(key)"))
                            }
                        case .delete:
                            records[key] = .some(nil)
                        }
                    }
                    // A progress notification (no events) says everything up to its revision was sent.
                    after = response.events.isEmpty ? max(after, UInt64(response.revision)) : last
                    if records.isEmpty {
                        plane?.advance(to: after)
                    } else {
                        replicate(StoreBatch(records: records, revision: after))
                    }
                }
            } catch {
                guard isRunning else { return }
                if case .compacted = error.kind {
                    events.record(Event("store.compacted", reason: "StoreCompacted", level: .warning,
                                        message: "etcd compacted the history after revision \(after): listing every InferenceService again"))
                    needsList = true
                    continue
                }
                store.noteFailure(error)
                pause(backoff)
                backoff = min(backoff * 2, 2_000)
            }
        }
    }

    private func replicate(_ batch: StoreBatch) {
        do {
            try plane?.replicate(batch)
        } catch {
            events.record(Event("store.replication_failed", reason: "ReplicationFailed", level: .error,
                                message: "applying etcd's state at revision \(batch.revision): \(error.description); the running routes stay"))
        }
    }

    /// Keeps the replica's lease (its membership record and, when it leads, the leader key go with it), campaigns for
    /// leadership while no replica holds it, and rewrites the membership record when what it serves changes.
    private func leaseLoop() {
        let ttl = store.settings.leaseTTLSeconds
        var lease: Int64 = 0
        var renewedAt: UInt64 = 0  // ms, monotonic
        var registered: [UInt8] = []
        let memberKey = store.gatewaysPrefix + replicaName
        let nowMs = { MonotonicClock.nanoseconds() / 1_000_000 }
        while isRunning {
            do throws(EtcdError) {
                if lease == 0 {
                    lease = try store.client.grantLease(ttlSeconds: ttl).id
                    renewedAt = nowMs()
                    registered = []
                } else if nowMs() - renewedAt >= UInt64(ttl) * 1_000 / 3 {
                    try store.client.keepAlive(lease: lease)
                    renewedAt = nowMs()
                }
                // Who holds the leader key: a read (no raft write, no fsync in etcd) each turn; the transaction that
                // takes it only when nobody does.
                var holder = try store.client.range(store.leaderKey).keyValues.first.map { String(decoding: $0.value, as: UTF8.self) }
                var took = false
                if holder == nil {
                    let bid = try store.client.transaction(
                        compare: [.createRevision(key: store.leaderKey, equals: 0)],
                        success: [.put(key: store.leaderKey, value: Array(replicaName.utf8), lease: lease)],
                        failure: [.range(key: store.leaderKey)])
                    took = bid.succeeded
                    holder = bid.succeeded ? replicaName : bid.ranges.first?.first.map { String(decoding: $0.value, as: UTF8.self) }
                }
                state.withLock { $0.leaderName = holder }
                setLeading(holder == replicaName, why: took ? "no replica held the leader key" : "")
                let member = memberDocument()
                if member != registered {
                    try store.client.put(memberKey, member, lease: lease)
                    registered = member
                }
                store.noteSuccess()
            } catch {
                if error.kind == .leaseNotFound {
                    lease = 0
                    setLeading(false, why: "its lease expired")
                } else {
                    store.noteFailure(error)
                    // Unrenewed for a whole TTL: etcd has let the lease go, and another replica may lead by now.
                    if lease != 0, nowMs() - renewedAt >= UInt64(ttl) * 1_000 {
                        lease = 0
                        setLeading(false, why: "etcd was unreachable for the lease's TTL (\(ttl) s)")
                    }
                }
            }
            plane?.writeSnapshotIfChanged()
            pause(min(500, Int(ttl) * 1_000 / 3))
        }
        // Leaving: membership and leadership end now rather than at the lease's end.
        if lease != 0 { try? store.client.revokeLease(lease) }
        setLeading(false, why: "the replica is stopping")
    }

    private func setLeading(_ now: Bool, why: String) {
        let was = leading.exchange(now, ordering: .acquiringAndReleasing)
        guard was != now else { return }
        if now {
            events.record(Event("leader.elected", reason: "LeaderElected",
                                message: "replica \(replicaName) leads (\(why)): it writes status and decides canary analyses",
                                fields: [("replica", .string(replicaName))]))
            // What this replica saw as a follower (readiness) is now the status to write.
            plane?.writeLocalView()
        } else {
            events.record(Event("leader.lost", reason: "LeaderLost", level: .warning,
                                message: "replica \(replicaName) no longer leads: \(why)", fields: [("replica", .string(replicaName))]))
        }
    }

    /// This replica's membership record: what an operator compares across replicas (the etcd revision its routes
    /// are built from, the route table generation, the version).
    private func memberDocument() -> [UInt8] {
        let (listen, admin) = state.withLock { ($0.listen, $0.admin) }
        let startedAt = plane?.startedAt ?? Date()
        let served = plane?.servedRevision ?? (revision: 0, generation: 0)
        let document: JSONValue = .object([
            "name": .string(replicaName), "listen": .string(listen), "admin": .string(admin),
            "version": .string(AdminAPI.sluiceVersion), "revision": .int(Int(served.revision)), "generation": .int(served.generation),
            "leader": .bool(isLeader), "startedAt": .string(RolloutState.timestamp(startedAt)),
        ])
        return document.serialized(pretty: false)
    }

    /// Every registered replica's membership record (`sluice get gateways`), by name.
    func members() throws(ControlError) -> [JSONValue] {
        let prefix = store.gatewaysPrefix
        let (keyValues, _) = try store.call { (client) throws(EtcdError) in try client.range(prefix, prefix: true) }
        return keyValues.compactMap { JSONValue.parse($0.value) }
    }
}

extension EtcdStateStore {
    /// The records at `keys` as etcd has them now (after a conflict: what the other replica wrote).
    func read(_ keys: [String]) throws(ControlError) -> StoreBatch {
        let operations = keys.map { EtcdOperation.range(key: key(forServiceKey: $0)) }
        let result = try call { (client) throws(EtcdError) in try client.transaction(compare: [], success: operations) }
        var records: [String: ServiceRecord?] = [:]
        for (key, found) in zip(keys, result.ranges) {
            records[key] = .some(try found.first.map { (keyValue) throws(ControlError) in try Self.decode(keyValue) })
        }
        return StoreBatch(records: records, revision: UInt64(result.revision))
    }
}
