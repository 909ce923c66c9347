// Control layer: the annotations that steer traffic rather than describe pods (progressive delivery's analysis and
// its gate, mirroring, sticky keys) and the bookkeeping ones KServe filters out (kubectl's last-applied copy, the
// autoscaler's bounds, the storage initializer's): they are left out of the revision template, so changing one never
// creates a revision.

extension InferenceService {
    /// Sluice's own: the automatic canary analysis of every new revision (steps, interval, checks).
    public static let canaryAnalysisAnnotation = "serving.sluice.dev/canary-analysis"
    /// Sluice's own: the manual gate of a running analysis, for kubectl users (`paused`, `running`, `aborted`).
    public static let rolloutGateAnnotation = "serving.sluice.dev/rollout-gate"
    /// Sluice's own: the share of the default host's requests copied to the latest revision.
    public static let mirrorAnnotation = "serving.sluice.dev/mirror-percent"
    /// Sluice's own: the request key (`header:NAME` or `cookie:NAME`) that keeps a client on one revision.
    public static let stickyKeyAnnotation = "serving.sluice.dev/sticky-key"
    /// kubectl's client-side apply bookkeeping; KServe leaves it out of the Knative revision template too.
    public static let lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

    /// KServe's `constants.ServiceAnnotationDisallowedList`: annotations its reconciler never copies into the Knative
    /// revision template (Knative's `autoscaling.knative.dev/min-scale`/`max-scale`, which KServe derives from
    /// min/maxReplicas; its storage initializer's internal source URI; kubectl's last-applied copy).
    public static let revisionDisallowedAnnotations: Set<String> = [
        "autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
        "internal.serving.kserve.io/storage-initializer-sourceuri", lastAppliedAnnotation,
    ]

    /// KServe's `constants.RevisionTemplateLabelDisallowedList`: labels its reconciler keeps off the revision template
    /// (Knative's visibility label makes a service cluster-local; it is a route setting, never a new revision).
    public static let revisionDisallowedLabels: Set<String> = ["networking.knative.dev/visibility"]

    /// Annotations that are not part of a revision: route settings (a change of one reconfigures the routes only)
    /// and KServe's disallowed bookkeeping (a change of one changes nothing served).
    public static let routeAnnotations: Set<String> = Set([
        canaryAnalysisAnnotation, rolloutGateAnnotation, mirrorAnnotation, stickyKeyAnnotation,
    ]).union(revisionDisallowedAnnotations)
}
