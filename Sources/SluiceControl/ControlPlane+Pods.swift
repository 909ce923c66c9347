// Control layer: what the core/v1 pods of the admin API are made from — every endpoint of every InferenceService
// revision with the prober's verdict on it and whether the revision still has a traffic target — read from the plane.
import Foundation
import SluiceRouting

/// One endpoint of one revision: Knative would run a pod there; Sluice routes to the address it was given.
public struct EndpointPod: Equatable, Sendable {
    public var namespace: String
    /// The InferenceService.
    public var service: String
    /// `<isvc><componentSuffix>`: Knative's service and configuration name.
    public var component: String
    public var revision: String
    /// The revision's number (Knative's configurationGeneration label).
    public var generation: Int
    public var endpoint: Endpoint
    /// The revision's creation: when Sluice was given this endpoint for it.
    public var created: Date
    /// The endpoint's own readiness probe passes (a revision is ready when any of its endpoints is).
    public var isReady: Bool
    /// Why it is not ready, as the prober saw it (nil when ready or not probed yet).
    public var probeError: String?
    /// Set when the revision has no traffic target any more (superseded, or promoted past) and is not the latest
    /// created: the gateway sends it nothing new and lets what it had finish, where Knative would scale its pods down.
    /// Sluice keeps no time of that traffic move; the date is the creation of the revision that took its place,
    /// the earliest it can have been.
    public var retiredSince: Date?
}

extension ControlPlane {
    /// Every manifest revision's endpoints in `namespace` (all when nil), services in `namespace/name` order,
    /// revisions oldest first, endpoints in their given order.
    public func endpointPods(namespace: String?) -> [EndpointPod] {
        let records = telemetry.records.filter { namespace == nil || $0.service.namespace == namespace }
        // The checks in force for each endpoint (read in a second lock: an endpoint applied in between has none yet
        // and counts as not probed, as it is until its first round).
        var targets: [String: ProbeTarget] = [:]
        for checked in checkedEndpoints where !checked.isStatic {
            targets["\(checked.namespace)/\(checked.service)/\(checked.revision)/\(checked.endpoint)"] = checked.target
        }
        var pods: [EndpointPod] = []
        for record in records {
            let inTraffic = Set(record.traffic.compactMap(\.revisionName))
            for (index, revision) in record.revisions.enumerated() {
                var retiredSince: Date?
                if !inTraffic.contains(revision.name), index < record.revisions.count - 1 {
                    let successor = record.revisions[(index + 1)...].first { inTraffic.contains($0.name) } ?? record.revisions.last!
                    retiredSince = successor.creationTimestamp
                }
                for endpoint in revision.endpoints {
                    let key = "\(record.service.namespace)/\(record.service.name)/\(revision.name)/\(endpoint)"
                    let result = targets[key].map(probeResult)
                    let isReady = result?.isReady ?? false
                    pods.append(EndpointPod(namespace: record.service.namespace, service: record.service.name, component: record.componentName,
                                            revision: revision.name, generation: Self.revisionNumber(revision.name), endpoint: endpoint,
                                            created: revision.creationTimestamp, isReady: isReady,
                                            probeError: isReady || result?.isProbed != true ? nil : result?.lastError,
                                            retiredSince: retiredSince))
                }
            }
        }
        return pods
    }

    /// `sklearn-iris-predictor-default-00002` → 2.
    static func revisionNumber(_ name: String) -> Int {
        name.split(separator: "-").last.flatMap { Int($0) } ?? 0
    }
}
