// Control layer: how an InferenceService's canary analysis ties into KServe's rules — when an apply starts, steers or
// ends it, the `canaryTrafficPercent` it stands in for, its `CanaryAnalysis` condition and its `status.canaryAnalysis`.
import Foundation

extension ServiceRecord {
    static let analysisConditionType = "CanaryAnalysis"

    /// The `canaryTrafficPercent` that `controllerTraffic()` uses: the analysis's while it governs the traffic, else
    /// the manifest's. The manifest itself is never rewritten.
    var effectiveCanaryTrafficPercent: Int? {
        if let analysis, analysis.governsTraffic, analysis.revision == latestCreatedRevision { return analysis.canaryTrafficPercent }
        return service.predictor.canaryTrafficPercent
    }

    /// After an apply replaced the manifest (`old` is the one before; `revisionCreated` when it made a new revision):
    /// - a spec change or the annotation's removal ends a running analysis (Superseded); after a finished one
    ///   (Promoted, RolledBack) it hands the traffic back to the manifest (the analysis object goes);
    /// - a new revision with the annotation, no `canaryTrafficPercent` and a rolled-out previous revision starts one;
    /// - a changed gate annotation pauses, resumes or aborts (the most recent action, this or `sluice rollout`, wins);
    ///   a new analysis starts paused under a `paused` gate.
    /// Other annotation changes leave it running; changed thresholds apply from the next check.
    mutating func updateAnalysis(old: InferenceService, revisionCreated: Bool) {
        let specChanged = old.manifest["spec"] != service.manifest["spec"]
        let settings = service.canaryAnalysisSettings
        if var running = analysis {
            if running.phase.isRunning {
                if revisionCreated {
                    running.supersede("an apply created revision \(latestCreatedRevision)")
                } else if specChanged {
                    running.supersede("an apply changed the spec" + (service.predictor.canaryTrafficPercent.map { " (canaryTrafficPercent: \($0))" } ?? ""))
                } else if settings == nil {
                    running.supersede("an apply removed the \(InferenceService.canaryAnalysisAnnotation) annotation")
                } else if old.rolloutGate != service.rolloutGate {
                    running.apply(gate: service.rolloutGate, by: "the rollout-gate annotation")
                }
                analysis = running
            } else if running.phase != .superseded, specChanged || revisionCreated {
                analysis = nil
            }
        }
        guard revisionCreated, let settings, service.predictor.canaryTrafficPercent == nil,
              let previous = latestRolledoutRevision else { return }
        // Superseded by this very apply: its end is recorded from the old state; the new analysis replaces it.
        // `paused` holds a new analysis at its first step; `aborted` left over from an earlier analysis does not kill
        // the next one (the gate acts when it changes), only an `aborted` written by this very apply does.
        let gate = service.rolloutGate == .aborted && old.rolloutGate == .aborted ? .running : service.rolloutGate
        analysis = CanaryAnalysis(revision: latestCreatedRevision, previousRevision: previous, settings: settings, gate: gate)
    }

    /// The `CanaryAnalysis` condition: True while Progressing or Paused, False once finished, reason the phase and the
    /// last check's figures in the message; or False with `CanaryTrafficPercentSet` when a new revision was not
    /// analysed because the manifest chose its traffic. nil when there is nothing to say (no annotation, first deploy).
    func analysisCondition(previous: StatusCondition?, now: Date) -> StatusCondition? {
        let status: StatusCondition.Status
        let reason: String
        let message: String
        if let analysis {
            status = analysis.phase.isRunning ? .isTrue : .isFalse
            reason = analysis.phase.rawValue
            message = analysisMessage(analysis)
        } else if service.canaryAnalysisSettings != nil, let percent = service.predictor.canaryTrafficPercent, revisions.count > 1 {
            status = .isFalse
            reason = "CanaryTrafficPercentSet"
            message = "no automatic analysis: spec.predictor.canaryTrafficPercent is \(percent), so the manifest sets the canary's traffic; apply without the field to have the next revision analysed"
        } else {
            return nil
        }
        let since = previous?.status == status ? previous?.lastTransitionTime ?? now : now
        return StatusCondition(type: Self.analysisConditionType, status: status, reason: reason, message: message, lastTransitionTime: since)
    }

    private func analysisMessage(_ analysis: CanaryAnalysis) -> String {
        let settings = service.canaryAnalysisSettings
        var text = "\(analysis.revision) vs \(analysis.previousRevision)" + (analysis.phase.isRunning ? ": " : "")
        if analysis.phase.isRunning { text += "step \(analysis.weight)%" + (analysis.phase == .paused ? " (paused)" : "") }
        if let decision = analysis.lastDecision { text += "; \(decision.reason): \(decision.message)" }
        // A decision that is not a check's (started, paused, resumed, aborted) still shows the count and the last figures.
        if !(analysis.lastDecision?.isCheck ?? false) {
            text += "; failed checks \(analysis.failedChecks)/\(settings.map { String($0.failureLimit) } ?? "?")"
            if let figures = analysis.lastCheck { text += "; last check: " + CanaryAnalysis.describe(figures) }
        }
        if analysis.lastCheck == nil, analysis.phase == .progressing {
            text += "; first check one interval after the revision is ready"
        }
        return text
    }

    /// A check's figures in the annotation's units: success rate in percent, p99 in milliseconds (one decimal).
    static func checkJSON(_ figures: CanaryCheckFigures) -> [String: JSONValue] {
        var check: [String: JSONValue] = [
            "canaryRequests": .int(Int(figures.canaryRequests)),
            "previousRequests": .int(Int(figures.previousRequests)),
            "windowSeconds": .double((figures.windowSeconds * 1000).rounded() / 1000),
        ]
        if let rate = figures.successRate { check["successRate"] = .double((rate * 1000).rounded() / 10) }
        if let p99 = figures.p99 { check["p99Ms"] = .double((p99 * 10_000).rounded() / 10) }
        if let p99 = figures.previousP99 { check["previousP99Ms"] = .double((p99 * 10_000).rounded() / 10) }
        return check
    }

    /// `status.canaryAnalysis` of `get isvc -o json`.
    var analysisStatusJSON: JSONValue? {
        guard let analysis else { return nil }
        var object: [String: JSONValue] = [
            "phase": .string(analysis.phase.rawValue),
            "revision": .string(analysis.revision),
            "previousRevision": .string(analysis.previousRevision),
            "failedChecks": .int(analysis.failedChecks),
        ]
        if let settings = service.canaryAnalysisSettings {
            object["failureLimit"] = .int(settings.failureLimit)
            object["steps"] = .array(settings.steps.map(JSONValue.int))
            if let index = settings.steps.firstIndex(of: analysis.weight) { object["step"] = .int(index + 1) }
        }
        if let percent = analysis.canaryTrafficPercent { object["weight"] = .int(percent) }
        if let figures = analysis.lastCheck {
            var check = Self.checkJSON(figures)
            if let time = analysis.lastCheckTime { check["time"] = .string(RolloutState.timestamp(time)) }
            object["lastCheck"] = .object(check)
        }
        if let decision = analysis.lastDecision {
            object["reason"] = .string(decision.reason)
            object["message"] = .string(decision.message)
        }
        return .object(object)
    }
}
