// Control layer: one applied `serving.kserve.io/v1beta1` InferenceService, decoded and validated.
import SluiceRouting

/// An InferenceService as the user applied it: the fields Sluice acts on, plus the whole manifest
/// in canonical form (`manifest`) for `get -o json` and for the state file.
public struct InferenceService: Codable, Equatable, Sendable {
    public static let apiVersion = "serving.kserve.io/v1beta1"
    public static let kind = "InferenceService"
    /// KServe's switch for the `latest` tag and its host (`constants.EnableRoutingTagAnnotationKey`).
    public static let tagRoutingAnnotation = "serving.kserve.io/enable-tag-routing"
    /// Sluice's own: where the revision's pods are, when the gateway config does not map the storageUri.
    public static let endpointsAnnotation = "serving.sluice.dev/endpoints"

    /// Sluice's own: the service's retry policy, the config's `retries:` mapping as JSON or flow YAML.
    public static let retriesAnnotation = "serving.sluice.dev/retries"

    public var name: String
    /// From `metadata.namespace`, else the namespace the caller gave (`-n`, else `default`).
    public var namespace: String
    public var annotations: [String: String]
    public var labels: [String: String]
    public var predictor: PredictorSpec
    /// The manifest with `metadata.namespace` filled in, as stored and shown back.
    public var manifest: JSONValue

    /// The annotation is compared with `"true"` exactly, as KServe's reconciler does.
    public var isTagRoutingEnabled: Bool { annotations[Self.tagRoutingAnnotation] == "true" }

    /// Endpoints listed by the annotation; nil when it is absent. Validated by the decoder.
    public var annotatedEndpoints: [Endpoint]? {
        guard let text = annotations[Self.endpointsAnnotation] else { return nil }
        switch EndpointList.parse(text) {
        case .success(let endpoints): return endpoints
        case .failure: return nil
        }
    }

    /// The retry policy of the `serving.sluice.dev/retries` annotation over `base`; nil without one (or, never for a
    /// stored service, one that does not decode: the decoder refused those).
    public func retryPolicy(base: RetryPolicy) -> RetryPolicy? {
        guard let text = annotations[Self.retriesAnnotation] else { return nil }
        return try? GatewayConfig.decodeRetriesAnnotation(text, base: base).get()
    }

    /// What Knative's revision template holds for this component: the predictor spec without
    /// `canaryTrafficPercent` (a route setting, not a pod setting), plus metadata annotations (but the route
    /// annotations, `routeAnnotations`) and labels. A change here is a new revision (kserve-rollout.md, "A new revision").
    public var revisionTemplate: JSONValue {
        .object([
            "metadata": .object([
                "annotations": .object(annotations.filter { !Self.routeAnnotations.contains($0.key) }.mapValues(JSONValue.string)),
                "labels": .object(labels.filter { !Self.revisionDisallowedLabels.contains($0.key) }.mapValues(JSONValue.string)),
            ]),
            "spec": predictor.template,
        ])
    }
}
