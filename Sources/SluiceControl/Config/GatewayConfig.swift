// Control layer: a whole gateway configuration as values: proxy settings, host rules, services and their health checks.
import SluiceProxy
import SluiceRouting

/// What one configuration file says. `load`/`parse` have already validated it, routes included.
public struct GatewayConfig: Sendable {
    public var proxy: ProxySettings
    public var hostRules: HostRules
    public var services: [ServiceSpec]
    /// Control-plane settings (state, manifests, models, probes).
    public var control = ControlSettings()
    /// Active health checks of static services, by `serviceKey` (namespace/name); a service not here is not checked.
    public var healthChecks: [String: ProbeSettings] = [:]
    /// The file it came from, named in errors found later (a route table built after edits).
    public var file: String

    public init(proxy: ProxySettings = ProxySettings(), hostRules: HostRules = HostRules(),
                services: [ServiceSpec], file: String = "<config>") {
        self.proxy = proxy
        self.hostRules = hostRules
        self.services = services
        self.file = file
    }

    /// Builds the routing generation for these services. Paths match the file's (`routing.…` for the rules).
    public func routeTable() throws(ConfigError) -> RouteTable {
        do {
            return try RouteTable(services: services, rules: hostRules)
        } catch {
            // RouteTable names its rules argument `rules`; the file calls that section `routing`.
            let path = error.path.hasPrefix("rules.") ? "routing." + error.path.dropFirst("rules.".count) : error.path
            throw ConfigError(file: file, path: path, reason: error.reason)
        }
    }
}
