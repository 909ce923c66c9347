// Control layer: one entry of a component's traffic, as KServe writes it and Knative reports it.

/// Knative's `TrafficTarget`. In what the controller writes, the `latestRevision: true` entry has no
/// `revisionName` (Knative fills in the latest ready revision); in status every entry has one.
public struct TrafficTarget: Codable, Equatable, Sendable {
    public var revisionName: String?
    public var percent: Int
    /// `prev` always on the previous rolled-out target; `latest` only with tag routing.
    public var tag: String?
    public var latestRevision: Bool

    public init(revisionName: String?, percent: Int, tag: String? = nil, latestRevision: Bool) {
        self.revisionName = revisionName
        self.percent = percent
        self.tag = tag
        self.latestRevision = latestRevision
    }
}
