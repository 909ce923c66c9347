// Control layer: traffic mirroring in the configuration file — the gateway-wide `mirror:` bounds (in flight per
// worker and revision, timeout, copied size) and a static service's own `mirror: {percent, revision}`.
import SluiceProxy
import SluiceRouting

extension GatewayConfig {
    /// `mirror: {maxInFlight: 64, timeout: 10s, maxRequestBytes: 64KiB}` at the top level.
    static func decodeMirrorSettings(_ node: ConfigNode) throws(ConfigError) -> MirrorSettings {
        let mapping = try node.mapping(keys: ["maxInFlight", "timeout", "maxRequestBytes"])
        var settings = MirrorSettings()
        if let value = mapping["maxInFlight"] { settings.maxInFlight = try value.int(in: 1...100_000) }
        if let value = mapping["timeout"] { settings.timeoutMs = try value.milliseconds() }  // 0: the revision's own
        if let value = mapping["maxRequestBytes"] {
            settings.maxRequestBytes = try value.bytes()
            guard settings.maxRequestBytes > 0 else { throw value.error("must be greater than 0") }
        }
        return settings
    }

    /// A static service's `mirror: {percent: 2.5, revision: NAME}`: that share of its default host's requests also
    /// goes to the revision (one of its `revisions:`; RouteTable checks which).
    static func decodeServiceMirror(_ node: ConfigNode) throws(ConfigError) -> MirrorSpec {
        let mapping = try node.mapping(keys: ["percent", "revision"])
        let percentNode = try mapping.required("percent")
        let percent = try percentNode.double(in: 0...100)
        guard percent > 0 else { throw percentNode.error("must be greater than 0 (leave mirror: out for none)") }
        return MirrorSpec(revisionName: try mapping.required("revision").string(), percent: percent)
    }
}
