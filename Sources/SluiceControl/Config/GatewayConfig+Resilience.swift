// Control layer: the `retries`, `outlierDetection` and `revisionQueue` sections of the configuration file (and of a static service, and
// the `serving.sluice.dev/retries` annotation of a manifest), checked into the data plane's retry and ejection settings.
import SluiceProxy
import SluiceRouting
import Yams

extension GatewayConfig {
    static let retriesKeys = ["attempts", "perTryTimeout", "retryOn", "retriableStatusCodes", "maxReplayBytes", "budget"]

    /// `retries: {attempts: 2, perTryTimeout: 0s, retryOn: [connect-failure, ...], retriableStatusCodes: [503],
    /// maxReplayBytes: 64KiB, budget: {percent: 20, minConcurrency: 3}}`; what is left out keeps `base`'s value.
    static func decodeRetries(_ node: ConfigNode, base: RetryPolicy = RetryPolicy()) throws(ConfigError) -> RetryPolicy {
        let mapping = try node.mapping(keys: retriesKeys)
        var policy = base
        if let value = mapping["attempts"] { policy.attempts = try value.int(in: 0...10) }
        if let value = mapping["perTryTimeout"] { policy.perTryTimeoutMs = try value.milliseconds() }
        if let value = mapping["retryOn"] {
            var conditions: RetryConditions = []
            for item in try value.list() {
                let name = try item.string()
                guard let condition = RetryConditions.names.first(where: { $0.0 == name })?.1 else {
                    throw item.error("unknown retry condition \"\(name)\", expected one of \(RetryConditions.names.map(\.0).joined(separator: ", "))")
                }
                conditions.insert(condition)
            }
            policy.retryOn = conditions
        }
        if let value = mapping["retriableStatusCodes"] {
            var codes: [Int] = []
            for item in try value.list() {
                let code = try item.int()
                guard RetryPolicy.retriableStatusRange.contains(code) else {
                    throw item.error("\(code) is not a status a retry can be made for (400...599)")
                }
                codes.append(code)
            }
            policy.retriableStatusCodes = codes
        }
        if let value = mapping["maxReplayBytes"] { policy.maxReplayBytes = try value.bytes() }
        if let value = mapping["budget"] {
            let budget = try value.mapping(keys: ["percent", "minConcurrency"])
            if let percent = budget["percent"] { policy.budgetPercent = try percent.int(in: 0...100) }
            if let floor = budget["minConcurrency"] { policy.budgetMinConcurrency = try floor.int(in: 0...100_000) }
        }
        return policy
    }

    /// `outlierDetection: {consecutiveGatewayFailures: 5, consecutive5xx: 5, baseEjectionTime: 30s,
    /// maxEjectionTime: 300s, maxEjectionPercent: 50}`.
    static func decodeOutlierDetection(_ node: ConfigNode) throws(ConfigError) -> OutlierDetection {
        let mapping = try node.mapping(keys: ["consecutiveGatewayFailures", "consecutive5xx", "baseEjectionTime", "maxEjectionTime", "maxEjectionPercent"])
        var settings = OutlierDetection()
        if let value = mapping["consecutiveGatewayFailures"] { settings.consecutiveGatewayFailures = try value.int(in: 0...1_000_000) }
        if let value = mapping["consecutive5xx"] { settings.consecutive5xx = try value.int(in: 0...1_000_000) }
        if let value = mapping["baseEjectionTime"] {
            settings.baseEjectionMs = try value.milliseconds()
            guard settings.baseEjectionMs > 0 else { throw value.error("must be greater than 0") }
        }
        if let value = mapping["maxEjectionTime"] { settings.maxEjectionMs = try value.milliseconds() }
        if settings.maxEjectionMs < settings.baseEjectionMs, let value = mapping["maxEjectionTime"] ?? mapping["baseEjectionTime"] {
            throw value.error("maxEjectionTime (\(settings.maxEjectionMs) ms) is below baseEjectionTime (\(settings.baseEjectionMs) ms)")
        }
        if let value = mapping["maxEjectionPercent"] { settings.maxEjectionPercent = try value.int(in: 0...100) }
        return settings
    }

    /// `revisionQueue: {depthPerSlot: 10, timeout: 10s}`: where requests beyond a revision's containerConcurrency wait.
    static func decodeRevisionQueue(_ node: ConfigNode) throws(ConfigError) -> RevisionQueueSettings {
        let mapping = try node.mapping(keys: ["depthPerSlot", "timeout"])
        var settings = RevisionQueueSettings()
        if let value = mapping["depthPerSlot"] { settings.depthPerSlot = try value.int(in: 0...10_000) }
        if let value = mapping["timeout"] {
            settings.timeoutMs = try value.milliseconds()
            guard settings.timeoutMs > 0 else { throw value.error("must be greater than 0") }
        }
        return settings
    }

    /// The `serving.sluice.dev/retries` annotation's value: the `retries:` mapping as JSON or flow YAML
    /// (`{"attempts": 3, "perTryTimeout": "3s"}`), over the gateway's policy. The error names the key inside it.
    public static func decodeRetriesAnnotation(_ text: String, base: RetryPolicy) -> Result<RetryPolicy, ConfigError> {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            return .failure(ConfigError(file: "", path: "", reason: "not a JSON or YAML mapping: \(error)"))
        }
        guard let root else { return .failure(ConfigError(file: "", path: "", reason: "empty, expected a mapping with keys \(retriesKeys.joined(separator: ", "))")) }
        do { return .success(try decodeRetries(ConfigNode(node: root, path: ""), base: base)) } catch { return .failure(error) }
    }
}
