// Control layer: everything kept about one InferenceService: manifest, revisions, status bookkeeping.
import Foundation

/// One InferenceService's record. Field names are KServe's (`ComponentStatusSpec`) where KServe has one.
public struct ServiceRecord: Codable, Equatable, Sendable {
    /// `<isvc><componentSuffix>`: Knative's service, configuration and route name for the predictor.
    public internal(set) var componentName: String
    /// The manifest as last applied.
    public internal(set) var service: InferenceService
    /// In creation order; the last one is `latestCreatedRevision`.
    public internal(set) var revisions: [RevisionRecord]
    /// Knative's configuration generation: the number of the next revision minus one.
    public internal(set) var configurationGeneration: Int
    public internal(set) var latestReadyRevision: String?
    public internal(set) var latestRolledoutRevision: String?
    public internal(set) var previousRolledoutRevision: String?
    /// What the controller wrote into the Knative service's route (`latestRevision: true` unresolved).
    public internal(set) var writtenTraffic: [TrafficTarget]
    /// The same, resolved against the latest ready revision: `.status.components.predictor.traffic`.
    public internal(set) var traffic: [TrafficTarget]
    public internal(set) var conditions: [StatusCondition]
    public internal(set) var creationTimestamp: Date
    /// `metadata.generation`: bumped by spec changes only, as for any CRD with a status subresource.
    public internal(set) var generation: Int
    /// The automatic canary analysis of the latest revision, if one was started (absent from older state files).
    public internal(set) var analysis: CanaryAnalysis?
    /// uid, resourceVersion and managedFields: the API server's part of the metadata (absent from older state
    /// files until the plane stamps them at load, and from a record not yet stored).
    public internal(set) var metadata: StoredMetadata?

    public var latestCreatedRevision: String { revisions.last?.name ?? "" }

    public func revision(named name: String) -> RevisionRecord? {
        revisions.first { $0.name == name }
    }

    func index(ofRevision name: String?) -> Int? {
        guard let name else { return nil }
        return revisions.firstIndex { $0.name == name }
    }

    /// Whether the gateway registers `{tag}-{component}` hosts for this service: the tag-routing
    /// annotation when present (`"true"` exactly, as KServe compares it), else the gateway's default.
    /// Off when a tag host label would exceed 63 bytes (kserve#2428: `latest-` overflows long names);
    /// a RouteTable refuses such hosts, and the tags stay reachable by the `Knative-Serving-Tag` header.
    public func servesTagHosts(default tagRoutingDefault: Bool) -> Bool {
        let isOn = service.annotations[InferenceService.tagRoutingAnnotation].map { $0 == "true" } ?? tagRoutingDefault
        guard isOn else { return false }
        return traffic.allSatisfy { target in
            guard let tag = target.tag else { return true }
            return "\(tag)-\(componentName)".utf8.count <= 63
        }
    }

    public func condition(_ type: String) -> StatusCondition? {
        conditions.first { $0.type == type }
    }
}
