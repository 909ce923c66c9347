// Routing layer: the naming settings that turn a service into the host names the ingress answers to.

/// How host names are formed. Defaults follow the KServe release the canary workflow was written for.
public struct HostRules: Hashable, Sendable {
    public var domain = "example.com"
    /// Placeholders `{name}`, `{namespace}`, `{domain}`; KServe's newer default is `{name}-{namespace}.{domain}`.
    public var serviceHostTemplate = "{name}.{namespace}.{domain}"
    /// Appended to the service name to form the component name (`-predictor` on newer KServe).
    public var componentSuffix = "-predictor-default"
    /// A request to a default host with `Knative-Serving-Tag: <tag>` goes to that tag's revision.
    public var tagHeaderRouting = false

    public init(domain: String = "example.com",
                serviceHostTemplate: String = "{name}.{namespace}.{domain}",
                componentSuffix: String = "-predictor-default",
                tagHeaderRouting: Bool = false) {
        self.domain = domain
        self.serviceHostTemplate = serviceHostTemplate
        self.componentSuffix = componentSuffix
        self.tagHeaderRouting = tagHeaderRouting
    }
}
