// Control layer: Sluice's `serving.sluice.dev/readiness-path` annotation — the path a revision's pods are checked on
// (KServe's pod readinessProbe.httpGet.path) — its validation when a manifest is decoded, and its reading back from
// a revision's template (an annotation is part of the template, so a new path is a new revision, as in Knative).

extension InferenceService {
    public static let readinessPathAnnotation = "serving.sluice.dev/readiness-path"

    /// The refusal for an invalid annotation (kubectl's words), nil when it is absent or valid.
    static func readinessPathCause(_ annotations: [String: String]) -> ManifestError.FieldError? {
        guard let path = annotations[readinessPathAnnotation], !ReadinessPath.isValid(path) else { return nil }
        return .init(field: "metadata.annotations[\(readinessPathAnnotation)]", kind: .invalid(value: "\"\(path)\""),
                     detail: "must be an absolute path like /v2/health/ready or /v1/models/{name} ({name} is the model's name), without spaces, control characters or '#'")
    }

    /// The annotated readiness path of the revision with this template; nil when it has none.
    static func readinessPath(template: JSONValue) -> String? {
        template["metadata"]?["annotations"]?[readinessPathAnnotation]?.stringValue
    }
}

/// What a readiness path may be: a request target in origin form (RFC 9112 §3.2.1), of visible ASCII.
enum ReadinessPath {
    static func isValid(_ path: String) -> Bool {
        path.hasPrefix("/") && path.utf8.count <= 1024
            && path.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }
}
