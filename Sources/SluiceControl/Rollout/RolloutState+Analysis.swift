// Control layer: the rollout state's canary-analysis operations — the running analyses the runner checks, a check's
// verdict and a manual gate action — each followed by KServe's reconcile, as an apply is.
import Foundation

/// A running analysis as the runner sees it: which revisions to sample and how often.
public struct AnalysisTarget: Equatable, Sendable {
    public var namespace: String
    public var name: String
    public var revision: String
    public var previousRevision: String
    public var epoch: Int
    public var phase: CanaryAnalysis.Phase
    /// Whether the canary revision is ready: its interval clock starts only then.
    public var isCanaryReady: Bool
    public var intervalSeconds: Double
}

extension RolloutState {
    /// Every Progressing or Paused analysis, in `namespace/name` order.
    public func analysisTargets() -> [AnalysisTarget] {
        records().compactMap { record in
            guard let analysis = record.analysis, analysis.phase.isRunning, let settings = record.service.canaryAnalysisSettings else { return nil }
            return AnalysisTarget(namespace: record.service.namespace, name: record.service.name, revision: analysis.revision,
                                  previousRevision: analysis.previousRevision, epoch: analysis.epoch, phase: analysis.phase,
                                  isCanaryReady: record.revision(named: analysis.revision)?.isReady == true,
                                  intervalSeconds: Double(settings.intervalMs) / 1000)
        }
    }

    /// A check's figures for the analysis of `target` (still the same revision and epoch, still Progressing: a
    /// decision taken meanwhile wins). Returns true when the state changed.
    public mutating func recordCheck(_ target: AnalysisTarget, figures: CanaryCheckFigures, now: Date) -> Bool {
        let key = Self.key(namespace: target.namespace, name: target.name)
        guard var record = services[key], var analysis = record.analysis, analysis.revision == target.revision,
              analysis.epoch == target.epoch, analysis.phase == .progressing,
              let settings = record.service.canaryAnalysisSettings else { return false }
        analysis.check(figures, settings: settings, now: now)
        record.analysis = analysis
        record.reconcile(now: now)
        services[key] = record
        return true
    }

    /// `sluice rollout pause|resume|abort`: the gate as an action on the running analysis. Fails (with the reason)
    /// when there is no such service or no running analysis; true when the state changed.
    public mutating func rolloutAction(namespace: String, name: String, gate: RolloutGate, now: Date) -> Result<Bool, RolloutActionError> {
        let key = Self.key(namespace: namespace, name: name)
        guard var record = services[key] else { return .failure(.notFound) }
        guard var analysis = record.analysis, analysis.phase.isRunning else {
            let phase = record.analysis.map { "its analysis of \($0.revision) is \($0.phase.rawValue)" } ?? "it has no canary analysis"
            return .failure(.notRunning("InferenceService \"\(name)\" has no running canary analysis: \(phase)"))
        }
        let before = analysis
        analysis.apply(gate: gate, by: "sluice rollout")
        guard analysis != before else { return .success(false) }
        record.analysis = analysis
        record.reconcile(now: now)
        services[key] = record
        return .success(true)
    }
}

public enum RolloutActionError: Error, Equatable, Sendable {
    case notFound
    case notRunning(String)
}
