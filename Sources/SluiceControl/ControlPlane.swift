// Control layer: the running control plane — applies manifests to the rollout state, persists it before answering,
// turns probe results into readiness, hands every resulting route table to the data plane, stamps each changed
// object with the store's next resource version for the watches, and records an event for each of those steps
// (apply, readiness, endpoint health, route table generation).
import Foundation
import SluiceProxy
import SluiceRouting
import Synchronization

/// Why an admin operation was refused; `status` is the HTTP code the admin API answers with.
public struct ControlError: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var reason: String  // Kubernetes Status reason: Invalid, NotFound, BadRequest, InternalError
    public var description: String
    /// The Status's `details` (name, group, kind, causes) where the API server sends them.
    public var details: JSONValue? = nil
    /// With the etcd store: another replica wrote a key this change read (the transaction compared its revision and
    /// wrote nothing); the keys to read again before the change is retried.
    var storeConflict: [String]? = nil
}

public final class ControlPlane: Sendable {
    struct Core {
        var state: RolloutState
        var config: GatewayConfig
        var lastPublished: RouteTable?
        /// What `lastPublished` was built from, to tell whether a change moved any route.
        var lastSpecs: [ServiceSpec] = []
        /// The number of the table in force: 1 for the first, one more for each table handed to the data plane.
        var generation = 1
        /// Tables handed over, by what caused them (`Cause`).
        var publications: [Cause: UInt64] = [:]
        /// Applied InferenceServices by kubectl's result word, and `refused` requests.
        var applied: [String: UInt64] = [:]
        /// With the etcd store: the records this replica changed without writing them (a follower's readiness
        /// verdicts), which it writes once it leads.
        var localOnly: Set<String> = []
        /// With the etcd store, set by a replication's body only: the records it installed as etcd holds them.
        var replicated: Set<String> = []
        /// Changes kept so far (the etcd store's snapshot is written when this moved).
        var changesKept: UInt64 = 0
    }

    /// Why a new route table was built; `sluice_route_table_publications_total`'s label.
    enum Cause: String, CaseIterable {
        case apply
        case delete
        case probe
        case reload
        /// A canary analysis's decision (a check, `sluice rollout pause|resume|abort`).
        case analysis
        /// With the etcd store: what another replica wrote, seen through the watch.
        case replication

        /// A change a user or an analysis asked for: written to etcd by whichever replica it reached. The others
        /// (readiness, reload, replication) are this replica's view: written by the leader only.
        var isIntent: Bool { self == .apply || self == .delete || self == .analysis }
    }

    let core: Mutex<Core>
    /// state.json in the state directory: the truth with the file store, this replica's snapshot with etcd.
    private let store: StateStore?
    /// The etcd store, its watch, lease and election; nil with the file store.
    let session: StoreSession?
    /// When this plane started (a replica's age in `sluice get gateways`).
    let startedAt = Date()
    /// Where this replica listens and serves the admin API (`sluice get gateways`).
    let servingAddresses = Mutex<(listen: String, admin: String)>(("", ""))
    /// state.json's bytes, re-encoding only what changed (under the plane's lock, or `snapshotLock` with etcd).
    private let stateEncoder = StateDocumentEncoder()
    /// With etcd: serialises snapshot writes; holds the `changesKept` count the last one was taken at.
    private let snapshotLock = Mutex<UInt64>(0)
    private let prober: ReadinessProber
    private let publish: @Sendable (RouteTable) -> Void
    /// Where the plane's events go (and the reloader's, and `serve`'s): stderr lines plus the per-service history.
    public let events: EventLog
    /// Every object change since start (bounded), for watches and continued lists.
    public let watchHub: WatchHub

    /// Loads the saved state (refusing a corrupt or newer-format file rather than overwriting it), computes the
    /// first route table and starts probing. `publish` receives every new table (the gateway's hand-over).
    public init(config: GatewayConfig, store: StateStore?, events: EventLog = EventLog(),
                publish: @escaping @Sendable (RouteTable) -> Void) throws(ControlError) {
        var state = RolloutState(componentSuffix: config.hostRules.componentSuffix)
        if let store {
            do {
                if let data = try store.load() {
                    do {
                        state = try JSONDecoder().decode(RolloutState.self, from: data)
                    } catch let error as RolloutStateFormatError {
                        throw ControlError(status: 500, reason: "InternalError", description: "\(store.directory)/state.json: \(error.description); refusing to start rather than overwrite it")
                    } catch {
                        throw ControlError(status: 500, reason: "InternalError", description: "\(store.directory)/state.json is corrupt (\(error)); refusing to start rather than overwrite it. Move it away to start empty.")
                    }
                }
            } catch let error as StateStoreError {
                throw ControlError(status: 500, reason: "InternalError", description: error.description)
            } catch let error as ControlError {
                throw error
            } catch {
                throw ControlError(status: 500, reason: "InternalError", description: "\(error)")
            }
        }
        if case .etcd(let settings) = config.control.stateStore {
            let shared = try EtcdStateStore(settings: settings, replicaName: settings.replicaName ?? Self.defaultReplicaName(config))
            state = try Self.sharedState(shared, snapshot: store?.hasDocument == true ? state : nil, componentSuffix: config.hostRules.componentSuffix,
                                         events: events)
            session = StoreSession(store: shared, events: events)
            // The copy to start from if etcd is down at the next start.
            if let store {
                do { try Self.save(state, to: store, encoder: stateEncoder) } catch {
                    events.record(Event("state.snapshot_failed", reason: "SnapshotFailed", level: .warning,
                                        message: "writing this replica's snapshot of the etcd state: \(error.description)"))
                }
            }
        } else {
            session = nil
            // Records from before uids and resource versions get them now, saved at once so that a uid never changes.
            if state.stampLegacyRecords(), let store { try Self.save(state, to: store, encoder: stateEncoder) }
        }
        self.store = store
        self.publish = publish
        self.events = events
        self.watchHub = WatchHub(floor: state.resourceVersions.current)
        self.core = Mutex(Core(state: state, config: config, lastPublished: nil))
        let holder = WeakHolder()
        self.prober = ReadinessProber(upstreamTLS: config.proxy.upstreamTLS) { holder.plane?.probesChanged($0) }
        holder.plane = self
        session?.plane = self
        try core.withLock { core throws(ControlError) in
            _ = core.state.refreshEndpoints(now: Date(), resolveEndpoints: Self.resolver(core.config))
            core.lastSpecs = routeSpecs(for: core)
            core.lastPublished = try routeTable(core.lastSpecs, rules: core.config.hostRules)
            updateProbeTargets(core)
        }
    }

    /// The route table in force (for `serve` to start the gateway with).
    public var routes: RouteTable { core.withLock { $0.lastPublished! } }

    public func start() {
        prober.start()
        session?.start(after: core.withLock { $0.state.resourceVersions.current })
    }

    /// Stops probing, leaves etcd (membership and leadership go at once, not at the lease's end) and releases the
    /// state directory (the last step of a shutdown).
    public func stop() {
        prober.stop()
        session?.stop()
        core.withLock { _ in store?.unlock() }
    }

    // MARK: Operations (admin API, manifest directory)

    /// `kubectl apply` of every document in `text`: all are validated before any is applied; the state is on disk
    /// before this returns. `resourceName` is set for a PUT to one resource's URL (`…/namespaces/NS/…/NAME`): the
    /// body must then be that one resource, checked before anything is applied, as the Kubernetes API server does.
    public func apply(_ text: String, defaultNamespace: String, source: String = "STDIN",
                      resourceName: String? = nil) throws(ControlError) -> [(InferenceService, ApplyResult)] {
        let results: [(InferenceService, ApplyResult)]
        do throws(ControlError) {
            let services: [InferenceService]
            do {
                let suffix = core.withLock { $0.config.hostRules.componentSuffix }
                services = try ManifestDecoder.decode(text, defaultNamespace: defaultNamespace, source: source, componentSuffix: suffix)
            } catch {
                throw ControlError(status: error.isValidationError ? 422 : 400, reason: error.isValidationError ? "Invalid" : "BadRequest",
                                   description: error.description)
            }
            if let resourceName { try Self.check(services, name: resourceName, namespace: defaultNamespace) }
            results = try change(.apply) { core in
                let now = Date()
                return services.map { isvc in
                    (isvc, core.state.apply(isvc, now: now, resolveEndpoints: Self.resolver(core.config)))
                }
            } events: { old, new, results in
                results.compactMap { isvc, result in Self.appliedEvent(isvc, result, old: old.state, new: new.state, source: source) }
            }
        } catch {
            core.withLock { $0.applied["refused", default: 0] += 1 }
            events.record(Event("manifests.refused", reason: "ApplyRefused", level: .warning,
                                message: "\(source): refused, nothing applied: \(error.description)",
                                fields: [("source", .string(source)), ("status", .int(error.status))]))
            throw error
        }
        core.withLock { core in
            for (_, result) in results { core.applied[result.rawValue, default: 0] += 1 }
        }
        return results
    }

    /// `kubectl delete isvc`; false when there was no such service.
    public func delete(namespace: String, name: String) throws(ControlError) -> Bool {
        let deleted = try change(.delete) { core in core.state.delete(namespace: namespace, name: name) }
        if deleted {
            // Logged, not kept: the deleted service's history goes with it (memory stays bounded by live services).
            events.forget(namespace: namespace, name: name)
            events.record(Event("isvc.deleted", reason: "Deleted", message: "InferenceService \(namespace)/\(name) and its revisions deleted",
                                fields: [("namespace", .string(namespace)), ("inferenceservice", .string(name))]))
        }
        return deleted
    }

    /// The service's kept events, least recent first; nil when there is no such InferenceService.
    public func events(namespace: String, name: String) -> [StoredEvent]? {
        guard core.withLock({ $0.state.record(namespace: namespace, name: name) }) != nil else { return nil }
        return events.events(namespace: namespace, name: name)
    }

    public func resource(namespace: String, name: String) -> JSONValue? {
        core.withLock { $0.state.resource(namespace: namespace, name: name, rules: $0.config.hostRules) }
    }

    public func resources(namespace: String?) -> [JSONValue] {
        core.withLock { $0.state.resources(namespace: namespace, rules: $0.config.hostRules) }
    }

    public func revisionRows(namespace: String, name: String) -> [RevisionRow]? {
        core.withLock { $0.state.revisionRows(namespace: namespace, name: name) }
    }

    /// A new configuration file (SIGHUP): static services, models and host rules; the rollout state stays.
    /// The new routes are built and the state saved before anything applies; then `install`, when given, receives
    /// the table instead of the usual hand-over, still under the plane's lock, so that it can apply it together
    /// with the rest of the generation (certificates, settings) and no probe-driven table can come in between.
    /// Throws, with nothing applied or installed, when the routes are invalid or the state cannot be saved.
    public func reconfigure(_ config: GatewayConfig, install: ((RouteTable) -> Void)? = nil) throws(ControlError) {
        _ = try change(.reload, install: install) { core in
            core.config = config
            _ = core.state.refreshEndpoints(now: Date(), resolveEndpoints: Self.resolver(config))
            return ()
        }
    }

    /// What /metrics reports of the plane, read in one lock.
    var telemetry: (generation: Int, publications: [Cause: UInt64], applied: [String: UInt64], records: [ServiceRecord]) {
        core.withLock { ($0.generation, $0.publications, $0.applied, $0.state.records()) }
    }

    /// The prober's verdict and counts, for /metrics.
    var probeCounts: [ProbeCounts] { prober.counts() }
    func probeResult(_ target: ProbeTarget) -> ProbeResult { prober.result(for: target) }
    /// Every endpoint with an active check (manifest revisions' and checked static services'), for /metrics.
    var checkedEndpoints: [CheckedEndpoint] { core.withLock { CheckedEndpoint.all(state: $0.state, config: $0.config) } }

    /// A change of the rollout state alone (a canary analysis's decision), on the same path as an apply: persisted,
    /// reconciled, published, told. `ControlPlane+Analysis.swift` holds the callers.
    func changeState<T>(_ cause: Cause, _ body: (inout RolloutState) -> T) throws(ControlError) -> T {
        try change(cause) { core in body(&core.state) }
    }

    /// The running analyses, read in one lock.
    public var analysisTargets: [AnalysisTarget] { core.withLock { $0.state.analysisTargets() } }

    // MARK: Internals

    /// A PUT to one resource's URL carries exactly that resource (the API server's words for each mismatch).
    static func check(_ services: [InferenceService], name: String, namespace: String) throws(ControlError) {
        guard services.count == 1, let isvc = services.first else {
            throw ControlError(status: 400, reason: "BadRequest", description: "a PUT to inferenceservices/\(name) takes one object, got \(services.count)")
        }
        guard isvc.name == name else {
            throw ControlError(status: 400, reason: "BadRequest", description: "the name of the object (\(isvc.name)) does not match the name on the URL (\(name))")
        }
        // The decoder gave a body without metadata.namespace the URL's, so a difference was written in the body.
        guard isvc.namespace == namespace else {
            throw ControlError(status: 400, reason: "BadRequest", description: "the namespace of the provided object does not match the namespace sent on the request")
        }
    }

    /// Runs `body` on a copy of the state; keeps the result only when it routes and is on disk, then publishes
    /// (through `install` when given, else the plane's hand-over). Once it is kept, records what `events` says
    /// happened, then each revision's readiness change, then the new table's generation, in that order.
    private func change<T>(_ cause: Cause, install: ((RouteTable) -> Void)? = nil, _ body: (inout Core) throws(ControlError) -> T,
                           events describe: (_ old: Core, _ new: Core, T) -> [Event] = { _, _, _ in [] }) throws(ControlError) -> T {
        try change(cause, install: install, dryRun: false, body, events: describe).result
    }

    /// As above, also giving the state after the change. `dryRun`: everything is computed and validated (the body,
    /// readiness, the routes) and the would-be state returned, but nothing is kept, saved, published or told.
    /// With the etcd store, a change whose transaction lost to another replica's write is run again on what that
    /// replica wrote (read back first), as the API server retries an update on a conflict; `body` runs each time.
    func change<T>(_ cause: Cause, install: ((RouteTable) -> Void)? = nil, dryRun: Bool, _ body: (inout Core) throws(ControlError) -> T,
                   events describe: (_ old: Core, _ new: Core, T) -> [Event] = { _, _, _ in [] }) throws(ControlError) -> (result: T, state: RolloutState) {
        var attempts = 0
        while true {
            do {
                return try changeOnce(cause, install: install, dryRun: dryRun, body, events: describe)
            } catch {
                guard let keys = error.storeConflict, let session else { throw error }
                attempts += 1
                guard attempts < Self.conflictAttempts else {
                    throw ControlError(status: 409, reason: "Conflict",
                                       description: "Operation cannot be fulfilled on inferenceservices.serving.kserve.io \"\(keys.first?.split(separator: "/").last ?? "")\": the object has been modified; please apply your changes to the latest version and try again")
                }
                try replicate(try session.store.read(keys))
            }
        }
    }

    /// How many times a change meets another replica's write before it answers 409 Conflict.
    static let conflictAttempts = 8

    private func changeOnce<T>(_ cause: Cause, install: ((RouteTable) -> Void)?, dryRun: Bool, _ body: (inout Core) throws(ControlError) -> T,
                               events describe: (_ old: Core, _ new: Core, T) -> [Event]) throws(ControlError) -> (result: T, state: RolloutState) {
        let (result, kept) = try core.withLock { core throws(ControlError) -> (T, Core) in
            var next = core
            let result = try body(&next)
            let intended = next.state
            // A new revision on endpoints already probed (another revision's pods) is ready at once.
            syncReadiness(&next.state, config: next.config)
            let specs = routeSpecs(for: next)
            if dryRun {
                _ = try routeTable(specs, rules: next.config.hostRules)
                return (result, next)
            }
            // A change that moves no route (a canary check that moved no traffic, a pause, a label or bookkeeping
            // annotation, a status-only write) is kept and told, but hands the workers no new table: rebuilding every
            // worker's table of 1 000 services for a kubectl annotation would be churn on the data plane. A reload
            // always publishes: its table goes out with the generation's settings and certificates.
            let sameRoutes = cause != .reload && specs == core.lastSpecs
            // Built before anything is written: a change whose routes are invalid is refused with nothing kept.
            let table = sameRoutes ? core.lastPublished : try routeTable(specs, rules: next.config.hostRules)
            // Each changed object gets the store's next resource version; the watches hear of it once it is kept.
            // With etcd, that is the revision of the transaction that wrote it, or of the write another replica made.
            let changes = try session.map { session throws(ControlError) in
                try session.commit(old: core, next: &next, intended: intended, cause: cause)
            } ?? next.state.stampChanges(since: core.state)
            let rules = next.config.hostRules
            let entries = changes.map { change in
                WatchHub.Entry(kind: change.kind, namespace: change.namespace, name: change.name, resourceVersion: change.resourceVersion,
                               object: RolloutState.resource(of: change.record, rules: rules, tagRoutingDefault: false),
                               previous: change.previous.map { RolloutState.resource(of: $0, rules: core.config.hostRules, tagRoutingDefault: false) })
            }
            // With etcd the change is durable there already: the replica's snapshot follows off this path.
            if next.state != core.state, session == nil { try save(next.state) }
            next.changesKept += 1
            let happened = describe(core, next, result) + Self.readinessEvents(old: core.state, new: next.state)
                + Self.analysisEvents(old: core.state, new: next.state)
            guard let table, !sameRoutes else {
                core = next
                watchHub.record(entries)
                for event in happened { events.record(event) }
                return (result, next)
            }
            next.lastPublished = table
            next.lastSpecs = specs
            next.generation += 1
            next.publications[cause, default: 0] += 1
            core = next
            watchHub.record(entries)
            // Published under the lock so that two changes reach the workers in the order they were made; the
            // events are recorded under it too, so their lines come in that order.
            if let install { install(table) } else { publish(table) }
            for event in happened { events.record(event) }
            events.record(Event("routes.published", reason: "RoutesPublished",
                                message: "route table \(next.generation) handed to the workers (\(cause.rawValue)): \(table.services.count) services",
                                fields: [("generation", .int(next.generation)), ("cause", .string(cause.rawValue)),
                                         ("services", .int(table.services.count))]))
            return (result, next)
        }
        if dryRun { return (result, kept.state) }
        updateProbeTargets(kept)
        prober.probeSoon()
        return (result, kept.state)
    }

    private func save(_ state: RolloutState) throws(ControlError) {
        guard let store else { return }
        try Self.save(state, to: store, encoder: stateEncoder)
    }

    /// With the etcd store: writes this replica's snapshot (its last copy, to start from while etcd is down) when a
    /// change was kept since the last one — at most as often as the session calls it (every half second), off the
    /// change path and outside the plane's lock, so that a 1 000-service state file is not written per change.
    /// A failure is told, not fatal: the truth is in etcd.
    func writeSnapshotIfChanged() {
        guard let store else { return }
        snapshotLock.withLock { written in
            let (state, kept) = core.withLock { ($0.state, $0.changesKept) }
            guard kept != written else { return }
            do {
                try Self.save(state, to: store, encoder: stateEncoder)
                written = kept
            } catch {
                events.record(Event("state.snapshot_failed", reason: "SnapshotFailed", level: .warning,
                                    message: "writing this replica's snapshot of the etcd state: \(error)"))
            }
        }
    }

    private static func save(_ state: RolloutState, to store: StateStore, encoder: StateDocumentEncoder) throws(ControlError) {
        do {
            try store.save(try encoder.encode(state))
        } catch let error as StateStoreError {
            throw ControlError(status: 500, reason: "InternalError", description: "saving state: \(error.description)")
        } catch {
            throw ControlError(status: 500, reason: "InternalError", description: "saving state: \(error)")
        }
    }

    /// Static services from the file plus every InferenceService, with endpoints that failed their check left out.
    /// An endpoint not checked yet keeps its place: a manifest revision is routed only once it is ready (some endpoint
    /// passed), and a static service's endpoints are where the operator said pods are until a check says otherwise.
    private func routeTable(for core: Core) throws(ControlError) -> RouteTable {
        try routeTable(routeSpecs(for: core), rules: core.config.hostRules)
    }

    private func routeTable(_ specs: [ServiceSpec], rules: HostRules) throws(ControlError) -> RouteTable {
        do {
            return try RouteTable(services: specs, rules: rules)
        } catch {
            throw ControlError(status: 422, reason: "Invalid", description: "the resulting routes are invalid: \(error)")
        }
    }

    private func routeSpecs(for core: Core) -> [ServiceSpec] {
        let isHealthy = { (target: ProbeTarget) in
            let result = self.prober.result(for: target)
            return !result.isProbed || result.isReady
        }
        let managed = core.state.serviceSpecs(retries: core.config.proxy.retries).map { spec -> ServiceSpec in
            var spec = spec
            let record = core.state.record(namespace: spec.namespace, name: spec.name)
            spec.revisions = spec.revisions.map { revision in
                var revision = revision
                guard let revisionRecord = record?.revision(named: revision.name) else { return revision }
                revision.endpoints = revision.endpoints.filter { endpoint in
                    isHealthy(CheckedEndpoint.target(endpoint, spec.name, revisionRecord, core.config))
                }
                return revision
            }
            return spec
        }
        let statics = core.config.services.map { spec -> ServiceSpec in
            guard let settings = core.config.healthChecks[GatewayConfig.serviceKey(namespace: spec.namespace, name: spec.name)] else { return spec }
            return spec.withHealthyEndpoints { isHealthy(ProbeTarget(endpoint: $0, modelName: spec.name, settings: settings)) }
        }
        return statics + managed
    }

    private func updateProbeTargets(_ core: Core) {
        prober.setUpstreamTLS(core.config.proxy.upstreamTLS)
        prober.setTargets(Set(CheckedEndpoint.all(state: core.state, config: core.config).map(\.target)))
    }

    /// After a probe round flipped some endpoint: its events, then the routes without (or with) it.
    private func probesChanged(_ transitions: [ProbeTransition]) {
        do {
            _ = try change(.probe, { _ in () }) { old, _, _ in
                Self.endpointEvents(transitions, checked: CheckedEndpoint.all(state: old.state, config: old.config))
            }
        } catch {
            for event in Self.endpointEvents(transitions, checked: checkedEndpoints) { events.record(event) }
            events.record(Event("probe.apply_failed", reason: "ProbeApplyFailed", level: .error,
                                message: "applying probe results: \(error.description); the running routes stay"))
        }
    }

    /// Revision readiness follows its endpoints' checks: ready when any passes, not ready when all were checked and
    /// none passes; a revision whose endpoints were not checked yet keeps what it had.
    private func syncReadiness(_ state: inout RolloutState, config: GatewayConfig) {
        let now = Date()
        for record in state.records() {
            let name = record.service.name
            for revision in record.revisions where !revision.endpoints.isEmpty {
                // Every kind of endpoint is checked: HTTP GET (over TLS for https://), gRPC health for h2c:// and h2://.
                let results = revision.endpoints.map { prober.result(for: CheckedEndpoint.target($0, name, revision, config)) }
                if results.contains(where: { $0.isReady }) {
                    _ = state.setReadiness(namespace: record.service.namespace, name: name, revision: revision.name, isReady: true, now: now)
                } else if results.allSatisfy({ $0.isProbed }) {
                    let detail = results.compactMap(\.lastError).first ?? "no endpoint passed its readiness probe"
                    _ = state.setReadiness(namespace: record.service.namespace, name: name, revision: revision.name,
                                           isReady: false, reason: "ProbeFailed", message: detail, now: now)
                }
            }
        }
    }

    static func resolver(_ config: GatewayConfig) -> (InferenceService) -> Result<[Endpoint], EndpointLookupError> {
        let models = config.control.models
        return { isvc in
            if let endpoints = models[isvc.predictor.storageUri] { return .success(endpoints) }
            return .failure(EndpointLookupError(message: "no endpoints for storageUri \(isvc.predictor.storageUri): add it under models: in the gateway configuration, or annotate the InferenceService with \(InferenceService.endpointsAnnotation)"))
        }
    }
}

/// Breaks the init-time cycle between the plane and its prober's callback.
private final class WeakHolder: @unchecked Sendable {  // written once during init, before the prober starts
    weak var plane: ControlPlane?
}
