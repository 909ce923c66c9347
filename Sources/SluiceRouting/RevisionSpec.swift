// Routing layer: a revision as configured: its name and the endpoints serving it.

/// A revision and its ready endpoints. No endpoints is allowed: requests routed to it get 503.
public struct RevisionSpec: Hashable, Sendable {
    public var name: String
    public var endpoints: [Endpoint]

    public init(name: String, endpoints: [Endpoint]) {
        self.name = name
        self.endpoints = endpoints
    }
}
