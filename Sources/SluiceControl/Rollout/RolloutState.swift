// Control layer: every InferenceService's revision history and traffic; the operations that change them.
import Foundation
import SluiceRouting

/// The whole control-plane state: pure values, no I/O. The caller persists it (Codable, with
/// `formatVersion`), probes endpoints and reports readiness, and hands `serviceSpecs()` to the data plane.
public struct RolloutState: Equatable, Sendable {
    /// Bumped whenever the encoded shape changes incompatibly; newer files are refused, not overwritten.
    public static let currentFormatVersion = 1

    /// Appended to the service name to name the component and its revisions (`-predictor` on newer KServe).
    public let componentSuffix: String
    /// Keyed by `namespace/name`.
    public internal(set) var services: [String: ServiceRecord]
    /// The store's resource version: every changed object is stamped with its next value (`stampChanges`).
    public internal(set) var resourceVersions = ResourceVersionClock()

    public init(componentSuffix: String = "-predictor-default") {
        self.componentSuffix = componentSuffix
        services = [:]
    }

    static func key(namespace: String, name: String) -> String { "\(namespace)/\(name)" }

    public func record(namespace: String, name: String) -> ServiceRecord? {
        services[Self.key(namespace: namespace, name: name)]
    }

    /// Records in `namespace/name` order (kubectl lists by namespace, then name).
    public func records(namespace: String? = nil) -> [ServiceRecord] {
        services.values
            .filter { namespace == nil || $0.service.namespace == namespace }
            .sorted { ($0.service.namespace, $0.service.name) < ($1.service.namespace, $1.service.name) }
    }

    /// `kubectl apply` of one InferenceService. A revision is created only when the revision template
    /// (predictor spec without `canaryTrafficPercent`, plus annotations and labels) differs from the
    /// latest created revision's, as Knative creates one per configuration generation.
    /// Endpoints: the `serving.sluice.dev/endpoints` annotation wins, else `resolveEndpoints`.
    public mutating func apply(_ isvc: InferenceService, now: Date,
                               resolveEndpoints: (InferenceService) -> Result<[Endpoint], EndpointLookupError>) -> ApplyResult {
        let key = Self.key(namespace: isvc.namespace, name: isvc.name)
        guard var record = services[key] else {
            var record = ServiceRecord(componentName: isvc.name + componentSuffix, service: isvc, revisions: [],
                                       configurationGeneration: 0, writtenTraffic: [], traffic: [], conditions: [],
                                       creationTimestamp: now, generation: 1)
            record.addRevision(for: isvc, now: now, resolveEndpoints: resolveEndpoints)
            record.reconcile(now: now)
            services[key] = record
            return .created
        }
        if record.service == isvc { return .unchanged }
        if record.service.manifest["spec"] != isvc.manifest["spec"] { record.generation += 1 }
        let templateChanged = record.revisions.last?.template != isvc.revisionTemplate
        let old = record.service
        record.service = isvc
        if templateChanged { record.addRevision(for: isvc, now: now, resolveEndpoints: resolveEndpoints) }
        record.updateAnalysis(old: old, revisionCreated: templateChanged)
        record.reconcile(now: now)
        services[key] = record
        return .configured
    }

    /// `kubectl delete isvc`: the record and its revisions go; a later create starts again at 00001,
    /// as a recreated Knative configuration does.
    public mutating func delete(namespace: String, name: String) -> Bool {
        services.removeValue(forKey: Self.key(namespace: namespace, name: name)) != nil
    }

    /// The prober's verdict on one revision. Readiness gates traffic: the latest revision gets its share
    /// only once ready. A revision without endpoints cannot become ready (nothing was probed).
    /// Returns true when anything changed.
    public mutating func setReadiness(namespace: String, name: String, revision: String, isReady: Bool,
                                      reason: String? = nil, message: String? = nil, now: Date) -> Bool {
        let key = Self.key(namespace: namespace, name: name)
        guard var record = services[key], let index = record.index(ofRevision: revision) else { return false }
        var updated = record.revisions[index]
        guard !(isReady && updated.endpoints.isEmpty) else { return false }
        let newReason = isReady ? nil : reason
        let newMessage = isReady ? nil : message
        guard updated.isReady != isReady || updated.reason != newReason || updated.message != newMessage else { return false }
        if updated.isReady != isReady { updated.lastTransitionTime = now }
        updated.isReady = isReady
        updated.reason = newReason
        updated.message = newMessage
        record.revisions[index] = updated
        record.reconcile(now: now)
        services[key] = record
        return true
    }

    /// After the gateway's storageUri → endpoints mapping changed: re-resolves lookup-sourced revisions.
    /// A revision whose endpoints changed starts over (not ready until probed again). Returns true when anything changed.
    public mutating func refreshEndpoints(now: Date,
                                          resolveEndpoints: (InferenceService) -> Result<[Endpoint], EndpointLookupError>) -> Bool {
        var changed = false
        for key in services.keys.sorted() {
            guard var record = services[key] else { continue }
            var recordChanged = false
            for index in record.revisions.indices where record.revisions[index].endpointSource == .storageUri {
                var lookup = record.service
                lookup.predictor.storageUri = record.revisions[index].storageUri
                let before = record.revisions[index]
                record.revisions[index].assign(resolveEndpoints(lookup), now: now)
                if record.revisions[index] != before { recordChanged = true }
            }
            if recordChanged {
                record.reconcile(now: now)
                services[key] = record
                changed = true
            }
        }
        return changed
    }
}

extension ServiceRecord {
    mutating func addRevision(for isvc: InferenceService, now: Date,
                              resolveEndpoints: (InferenceService) -> Result<[Endpoint], EndpointLookupError>) {
        configurationGeneration += 1
        let number = String(configurationGeneration)
        let name = componentName + "-" + String(repeating: "0", count: max(0, 5 - number.count)) + number
        var revision = RevisionRecord(name: name, template: isvc.revisionTemplate, storageUri: isvc.predictor.storageUri,
                                      endpoints: [], endpointSource: .storageUri, isReady: false,
                                      reason: nil, message: nil, now: now)
        if let annotated = isvc.annotatedEndpoints {
            revision.endpointSource = .annotation
            revision.assign(.success(annotated), now: now)
        } else {
            revision.assign(resolveEndpoints(isvc), now: now)
        }
        revisions.append(revision)
    }
}

extension RevisionRecord {
    /// New endpoints mean new pods: not ready until the prober says so. Same endpoints change nothing.
    mutating func assign(_ lookup: Result<[Endpoint], EndpointLookupError>, now: Date) {
        switch lookup {
        case .success(let found) where !found.isEmpty:
            if found == endpoints { return }
            endpoints = found
            if isReady { lastTransitionTime = now }
            isReady = false
            reason = RevisionRecord.deployingReason
            message = "waiting for a readiness probe of \(found.map(\.description).joined(separator: ", ")) to succeed"
        case .success:
            assign(.failure(EndpointLookupError(message: "no endpoints are configured for storageUri \"\(storageUri)\"")), now: now)
        case .failure(let error):
            if isReady { lastTransitionTime = now }
            endpoints = []
            isReady = false
            reason = error.reason
            message = error.message
        }
    }
}
