// Control layer: the predictor part of an InferenceService: model, storage, canary percent.

/// `spec.predictor`, as far as Sluice reads it. Everything else stays in `template` untouched.
public struct PredictorSpec: Codable, Equatable, Sendable {
    /// `model` (the v1beta1 form with `modelFormat`) or a framework key of the older form (`sklearn`, ...).
    public var implementation: String
    /// `spec.predictor.model.modelFormat.name`; nil in the older framework form.
    public var modelFormat: String?
    public var storageUri: String
    public var runtime: String?
    public var protocolVersion: String?
    public var resources: JSONValue?
    /// nil when absent: KServe tells "not set" (promote) from 0 (pin the previous revision).
    public var canaryTrafficPercent: Int?
    /// The predictor object without `canaryTrafficPercent`: the part of the revision template it owns.
    public var template: JSONValue
}
