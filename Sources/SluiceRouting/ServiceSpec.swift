// Routing layer: an InferenceService as configured: revisions plus the traffic split over them.

/// One inference service (its predictor component), the input from which a `ServiceRoute` is built.
public struct ServiceSpec: Hashable, Sendable {
    public var name: String
    public var namespace: String
    /// Registers `{tag}-{component}` hosts for tagged traffic targets (KServe's tag-routing annotation).
    public var tagRouting: Bool
    public var revisions: [RevisionSpec]
    public var traffic: [TrafficTargetSpec]
    /// This service's retry policy; nil: the gateway's `retries:`.
    public var retries: RetryPolicy?
    /// The request key that keeps a client on one revision (`serving.sluice.dev/sticky-key`); nil: none.
    public var stickyKey: StickyKey?
    /// Traffic mirroring (MirrorSpec.swift): a share of the default host's requests copied to one revision.
    public var mirror: MirrorSpec?

    public init(name: String, namespace: String, tagRouting: Bool = false,
                revisions: [RevisionSpec], traffic: [TrafficTargetSpec], retries: RetryPolicy? = nil,
                stickyKey: StickyKey? = nil, mirror: MirrorSpec? = nil) {
        self.name = name
        self.namespace = namespace
        self.tagRouting = tagRouting
        self.revisions = revisions
        self.traffic = traffic
        self.retries = retries
        self.stickyKey = stickyKey
        self.mirror = mirror
    }
}
