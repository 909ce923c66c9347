// Control layer: the `serving.sluice.dev/canary-analysis` and `serving.sluice.dev/rollout-gate` annotations — their
// settings, their validation when a manifest is decoded (kubectl-worded refusals) and their reading back.
import Yams

/// How a new revision is analysed: the canary's traffic steps and what each check demands of it.
public struct CanaryAnalysisSettings: Codable, Equatable, Sendable {
    /// Canary percents, strictly increasing in 0...99 (a first 0: a dark launch on mirrored requests); promotion after the last step's check is the implicit 100.
    public var steps: [Int]
    /// Time between checks, at least 1 s.
    public var intervalMs: Int = 30_000
    /// A check with fewer canary requests in its interval neither passes nor fails.
    public var minRequests: Int = 50
    /// Percent of canary requests that must succeed (non-5xx, gRPC OK), 0...100.
    public var successRate: Double = 99
    /// The canary's p99 must not exceed this, when set.
    public var maxP99Ms: Int?
    /// The canary's p99 must not exceed this many times the previous revision's p99 of the same interval, when set
    /// (skipped when the previous revision had no requests in it).
    public var maxP99Ratio: Double?
    /// Failed checks, counted over the whole analysis (Flagger's threshold), that roll the canary back.
    public var failureLimit: Int = 2

    public init(steps: [Int], intervalMs: Int = 30_000, minRequests: Int = 50, successRate: Double = 99,
                maxP99Ms: Int? = nil, maxP99Ratio: Double? = nil, failureLimit: Int = 2) {
        self.steps = steps
        self.intervalMs = intervalMs
        self.minRequests = minRequests
        self.successRate = successRate
        self.maxP99Ms = maxP99Ms
        self.maxP99Ratio = maxP99Ratio
        self.failureLimit = failureLimit
    }
}

/// The manual gate of a running analysis.
public enum RolloutGate: String, Codable, Sendable, CaseIterable {
    case running
    case paused
    case aborted
}

extension InferenceService {
    static let canaryAnalysisKeys = ["steps", "interval", "minRequests", "successRate", "maxP99", "maxP99Ratio", "failureLimit"]

    /// The annotation's value: a mapping as JSON or flow YAML, e.g.
    /// `{steps: [10, 25, 50], interval: 30s, minRequests: 50, successRate: 99, maxP99: 500ms, maxP99Ratio: 1.5, failureLimit: 2}`.
    /// `steps` is required; the rest default as `CanaryAnalysisSettings` says. The error names the key inside it.
    public static func decodeCanaryAnalysis(_ text: String) -> Result<CanaryAnalysisSettings, ConfigError> {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            return .failure(ConfigError(file: "", path: "", reason: "not a JSON or YAML mapping: \(error)"))
        }
        guard let root else {
            return .failure(ConfigError(file: "", path: "", reason: "empty, expected a mapping with keys \(canaryAnalysisKeys.joined(separator: ", "))"))
        }
        do { return .success(try decodeCanaryAnalysis(ConfigNode(node: root, path: ""))) } catch { return .failure(error) }
    }

    static func decodeCanaryAnalysis(_ node: ConfigNode) throws(ConfigError) -> CanaryAnalysisSettings {
        let mapping = try node.mapping(keys: canaryAnalysisKeys)
        let stepsNode = try mapping.required("steps")
        var steps: [Int] = []
        for item in try stepsNode.list() {
            // 0 can only come first (strictly increasing): a dark launch, checked on mirrored requests alone.
            let step = try item.int(in: 0...99)
            if let last = steps.last, step <= last { throw item.error("steps must be strictly increasing: \(step) follows \(last)") }
            steps.append(step)
        }
        guard !steps.isEmpty else { throw stepsNode.error("must list at least one canary percent, e.g. [10, 50]") }
        var settings = CanaryAnalysisSettings(steps: steps)
        if let value = mapping["interval"] {
            settings.intervalMs = try value.milliseconds()
            guard settings.intervalMs >= 1_000 else { throw value.error("must be at least 1s") }
        }
        if let value = mapping["minRequests"] { settings.minRequests = try value.int(in: 1...1_000_000_000) }
        if let value = mapping["successRate"] { settings.successRate = try value.double(in: 0...100) }
        if let value = mapping["maxP99"] {
            settings.maxP99Ms = try value.milliseconds()
            guard settings.maxP99Ms! > 0 else { throw value.error("must be greater than 0") }
        }
        if let value = mapping["maxP99Ratio"] {
            let ratio = try value.double(in: 0...1_000_000)
            guard ratio > 1 else { throw value.error("must be greater than 1.0 (the canary's p99 may be this many times the previous revision's)") }
            settings.maxP99Ratio = ratio
        }
        if let value = mapping["failureLimit"] { settings.failureLimit = try value.int(in: 1...1_000_000) }
        return settings
    }

    /// The analysis settings; nil without the annotation (a stored service's annotation always decodes: the decoder
    /// refused those that do not).
    public var canaryAnalysisSettings: CanaryAnalysisSettings? {
        guard let text = annotations[Self.canaryAnalysisAnnotation] else { return nil }
        return try? Self.decodeCanaryAnalysis(text).get()
    }

    /// The gate annotation's value; `running` when absent.
    public var rolloutGate: RolloutGate {
        annotations[Self.rolloutGateAnnotation].flatMap(RolloutGate.init(rawValue:)) ?? .running
    }

    /// The refusals for invalid analysis or gate annotations (kubectl's words); empty when absent or valid.
    static func analysisCauses(_ annotations: [String: String]) -> [ManifestError.FieldError] {
        var causes: [ManifestError.FieldError] = []
        if let text = annotations[canaryAnalysisAnnotation] {
            switch decodeCanaryAnalysis(text) {
            case .failure(let error):
                let at = error.path.isEmpty ? "" : "\(error.path): "
                causes.append(.init(field: "metadata.annotations[\(canaryAnalysisAnnotation)]", kind: .invalid(value: "\"\(text)\""),
                                    detail: at + error.reason))
            case .success(let settings) where settings.steps.first == 0 && annotations[mirrorAnnotation] == nil:
                causes.append(.init(field: "metadata.annotations[\(canaryAnalysisAnnotation)]", kind: .invalid(value: "\"\(text)\""),
                                    detail: "steps[0]: a 0% step (a dark launch) needs the \(mirrorAnnotation) annotation: without mirrored requests the canary would never be checked"))
            case .success:
                break
            }
        }
        if let text = annotations[rolloutGateAnnotation], RolloutGate(rawValue: text) == nil {
            // apimachinery's `NotSupported` wording for an enum field.
            causes.append(.init(field: "metadata.annotations[\(rolloutGateAnnotation)]", kind: .invalid(value: "\"\(text)\""),
                                detail: "supported values: " + RolloutGate.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")))
        }
        return causes
    }
}
