// Control layer: Sluice's `serving.sluice.dev/mirror-percent` annotation — traffic mirroring (shadow) of an
// InferenceService's default host to its latest ready revision — its validation when a manifest is decoded, and the
// mirror it gives the data plane's routes (RolloutState+Routes.swift).
import Foundation
import SluiceRouting

extension InferenceService {
    /// The share of the default host's requests mirrored, when the annotation is set (and valid: the decoder refused
    /// the manifest otherwise).
    public var mirrorPercent: Double? {
        annotations[Self.mirrorAnnotation].flatMap(Self.parseMirrorPercent)
    }

    /// A percent as the annotation writes it: a plain decimal (`25`, `2.5`), above 0 and at most 100.
    static func parseMirrorPercent(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }),
              trimmed.utf8.filter({ $0 == 0x2E }).count <= 1, let value = Double(trimmed), value > 0, value <= 100 else { return nil }
        return value
    }

    /// The refusal for an invalid annotation (kubectl's words), nil when it is absent or valid.
    static func mirrorCause(_ annotations: [String: String]) -> ManifestError.FieldError? {
        guard let text = annotations[mirrorAnnotation], parseMirrorPercent(text) == nil else { return nil }
        return .init(field: "metadata.annotations[\(mirrorAnnotation)]", kind: .invalid(value: "\"\(text)\""),
                     detail: "must be a percent greater than 0 and at most 100, decimals allowed (e.g. 100, 25 or 2.5)")
    }
}

extension RolloutState {
    /// Adds the service's mirror to `spec` (the routes the data plane gets): its latest ready revision, while that
    /// revision is routable and not the one the split gives 100 % (mirroring a revision's requests to itself would
    /// double its load for nothing: then there is no mirror, until the next revision is ready). The target joins
    /// the spec's revisions when the split does not name it (a latest ready revision outside status traffic).
    static func addMirror(of record: ServiceRecord, to spec: inout ServiceSpec) {
        guard let percent = record.service.mirrorPercent, let name = record.latestReadyRevision,
              let revision = record.revision(named: name), revision.isRoutable else { return }
        let share = spec.traffic.filter { $0.revisionName == name }.reduce(0) { $0 + $1.percent }
        guard share < 100 else { return }
        if !spec.revisions.contains(where: { $0.name == name }) {
            spec.revisions.append(RevisionSpec(name: name, endpoints: revision.endpoints, responseTimeoutMs: revision.responseTimeoutMs,
                                               containerConcurrency: revision.containerConcurrency))
        }
        spec.mirror = MirrorSpec(revisionName: name, percent: percent)
    }
}
