// Control layer: the health-check sections of a configuration file — the top-level `readiness:` (manifest revisions'
// checks, and the default shape of a static service's) and each static service's `healthCheck:`.
import SluiceRouting

extension GatewayConfig {
    /// `namespace/name`, the key of `healthChecks`.
    public static func serviceKey(namespace: String, name: String) -> String { "\(namespace)/\(name)" }

    /// A `period`/`timeout`/`path`/thresholds mapping over `defaults`: the top-level `readiness:`, or a service's
    /// `healthCheck:` (whose unset fields are `readiness:`'s).
    static func decodeProbe(_ node: ConfigNode, defaults: ProbeSettings) throws(ConfigError) -> ProbeSettings {
        var probe = defaults
        let mapping = try node.mapping(keys: ["path", "period", "timeout", "successThreshold", "failureThreshold"])
        if let value = mapping["path"] {
            let path = try value.string()
            guard path.hasPrefix("/") else { throw value.error("must start with /") }
            guard ReadinessPath.isValid(path) else { throw value.error("must be an origin-form path: no spaces, control bytes or '#'") }
            probe.path = path
        }
        if let value = mapping["period"] {
            probe.periodMs = try value.milliseconds()
            guard probe.periodMs > 0 else { throw value.error("must be greater than 0") }
        }
        if let value = mapping["timeout"] {
            probe.timeoutMs = try value.milliseconds()
            guard probe.timeoutMs > 0 else { throw value.error("must be greater than 0") }
        }
        if let value = mapping["successThreshold"] { probe.successThreshold = try value.int(in: 1...100) }
        if let value = mapping["failureThreshold"] { probe.failureThreshold = try value.int(in: 1...100) }
        return probe
    }

    /// Each static service's `healthCheck:` — `true` (the `readiness:` shape as is), `false` or absent (no check,
    /// the default), or a mapping overriding some of `readiness:`'s fields — by `serviceKey`.
    ///
    /// Off by default, as Envoy and HAProxy check only when asked: a static table is the operator's own statement of
    /// where pods are, its pods need not serve KServe's readiness path (`{name}` is the service's name, which need
    /// not be the model's), and passive outlier ejection already takes a failing pod out of rotation. Manifest
    /// revisions are always checked, as KServe always gives its pods a readiness probe.
    static func decodeHealthChecks(_ services: [ConfigNode], defaults: ProbeSettings) throws(ConfigError) -> [String: ProbeSettings] {
        var checks: [String: ProbeSettings] = [:]
        for node in services {
            // decodeService has checked the mapping's keys and its name and namespace.
            let mapping = try node.mapping(keys: serviceKeys)
            guard let value = mapping["healthCheck"] else { continue }
            let key = serviceKey(namespace: try mapping.required("namespace").string(), name: try mapping.required("name").string())
            if case .mapping = value.node {
                checks[key] = try decodeProbe(value, defaults: defaults)
            } else if try value.bool() {
                checks[key] = defaults
            }
        }
        return checks
    }
}
