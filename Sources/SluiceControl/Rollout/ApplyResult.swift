// Control layer: what an apply did to one InferenceService, in kubectl's words.

/// Printed as `inferenceservice.serving.kserve.io/sklearn-iris created|configured|unchanged`.
public enum ApplyResult: String, Equatable, Sendable, CustomStringConvertible {
    case created
    case configured
    case unchanged

    public var description: String { rawValue }
}
