// Routing layer: one entry of a service's traffic split, as Knative writes it in `traffic[]`.

/// A share of a service's traffic going to one revision, optionally reachable by tag.
public struct TrafficTargetSpec: Hashable, Sendable {
    public var revisionName: String
    /// 0...100; targets at 0 are left out of the split but stay reachable by tag.
    public var percent: Int
    /// `latest`, `prev`, ...: names a tag host and a `Knative-Serving-Tag` value.
    public var tag: String?
    /// Knative's marker for "the latest ready revision"; kept for status, not used to route.
    public var latestRevision: Bool

    public init(revisionName: String, percent: Int, tag: String? = nil, latestRevision: Bool = false) {
        self.revisionName = revisionName
        self.percent = percent
        self.tag = tag
        self.latestRevision = latestRevision
    }
}
