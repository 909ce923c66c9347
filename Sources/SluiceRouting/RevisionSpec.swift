// Routing layer: a revision as configured: its name and the endpoints serving it.

/// A revision and its ready endpoints. No endpoints is allowed: requests routed to it get 503.
public struct RevisionSpec: Hashable, Sendable {
    public var name: String
    public var endpoints: [Endpoint]
    /// The revision's own response timeout (KServe's `spec.predictor.timeout`), in ms; nil: the gateway's
    /// `timeouts.upstreamResponse`.
    public var responseTimeoutMs: Int?

    public init(name: String, endpoints: [Endpoint], responseTimeoutMs: Int? = nil) {
        self.name = name
        self.endpoints = endpoints
        self.responseTimeoutMs = responseTimeoutMs
    }
}
