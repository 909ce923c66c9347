// Routing layer: a revision as configured: its name and the endpoints serving it.

/// A revision and its ready endpoints. No endpoints is allowed: requests routed to it get 503.
public struct RevisionSpec: Hashable, Sendable {
    public var name: String
    public var endpoints: [Endpoint]
    /// The revision's own response timeout (KServe's `spec.predictor.timeout`), in ms; nil: the gateway's
    /// `timeouts.upstreamResponse`.
    public var responseTimeoutMs: Int?
    /// Knative's `containerConcurrency`: at most this many requests at once at each endpoint (0: no limit); more
    /// wait in the revision's queue.
    public var containerConcurrency: Int

    public init(name: String, endpoints: [Endpoint], responseTimeoutMs: Int? = nil, containerConcurrency: Int = 0) {
        self.name = name
        self.endpoints = endpoints
        self.responseTimeoutMs = responseTimeoutMs
        self.containerConcurrency = containerConcurrency
    }
}
