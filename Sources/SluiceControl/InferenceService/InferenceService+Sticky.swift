// Control layer: Sluice's `serving.sluice.dev/sticky-key` annotation — the request key (`header:NAME`, `cookie:NAME`)
// that keeps a client on one revision while the canary grows — its validation when a manifest is decoded, and its
// reading for the route table. A route setting: changing it never creates a revision (`routeAnnotations`).
import SluiceRouting

extension InferenceService {
    /// The refusal for an invalid annotation (kubectl's words), nil when it is absent or valid.
    static func stickyKeyCause(_ annotations: [String: String]) -> ManifestError.FieldError? {
        guard let text = annotations[stickyKeyAnnotation], case .failure(let error) = StickyKey.parse(text) else { return nil }
        return .init(field: "metadata.annotations[\(stickyKeyAnnotation)]", kind: .invalid(value: "\"\(text)\""),
                     detail: error.reason)
    }

    /// The annotated sticky key; nil without one (or, never for a stored service, one that does not parse: the
    /// decoder refused those).
    public var stickyKey: StickyKey? {
        guard let text = annotations[Self.stickyKeyAnnotation] else { return nil }
        return try? StickyKey.parse(text).get()
    }
}
