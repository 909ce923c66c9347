// Control layer: the annotations that steer traffic rather than describe pods (progressive delivery's analysis and
// its gate, mirroring, sticky keys; kubectl's last-applied copy): they are left out of the revision template, so
// changing one never creates a revision.

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

    /// Annotations that are route settings, not part of a revision: a change of one reconfigures the routes only.
    public static let routeAnnotations: Set<String> = [
        canaryAnalysisAnnotation, rolloutGateAnnotation, mirrorAnnotation, stickyKeyAnnotation, lastAppliedAnnotation,
    ]
}
