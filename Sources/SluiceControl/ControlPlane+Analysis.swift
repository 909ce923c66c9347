// Control layer: the control plane's canary-analysis entry points — a check's verdict from the runner, the manual
// gate of `sluice rollout` — and the events every analysis decision is told by, with its figures.
import Foundation

extension ControlPlane {
    /// Records a check of `target`'s analysis (the runner's figures) through the normal change path.
    /// With the etcd store only the leader decides: a follower's check is dropped (the leader's lands in etcd).
    public func recordCanaryCheck(_ target: AnalysisTarget, figures: CanaryCheckFigures, now: Date = Date()) throws(ControlError) {
        guard isLeader else { return }
        _ = try changeState(.analysis) { state in state.recordCheck(target, figures: figures, now: now) }
    }

    /// `sluice rollout pause|resume|abort isvc NAME`: 404 without the service, 409 without a running analysis.
    /// Returns the resource as it is afterwards.
    public func rollout(namespace: String, name: String, gate: RolloutGate, now: Date = Date()) throws(ControlError) -> JSONValue {
        guard resource(namespace: namespace, name: name) != nil else {
            throw ControlError(status: 404, reason: "NotFound", description: "inferenceservices.serving.kserve.io \"\(name)\" not found")
        }
        let outcome = try changeState(.analysis) { state in state.rolloutAction(namespace: namespace, name: name, gate: gate, now: now) }
        switch outcome {
        case .success:
            return resource(namespace: namespace, name: name) ?? .null
        case .failure(.notFound):
            throw ControlError(status: 404, reason: "NotFound", description: "inferenceservices.serving.kserve.io \"\(name)\" not found")
        case .failure(.notRunning(let why)):
            throw ControlError(status: 409, reason: "Conflict", description: why)
        }
    }

    /// One event per analysis decision between two states: the new decision of the same analysis, or, when an apply
    /// replaced a running analysis with a new revision's, the old one's end and the new one's start.
    static func analysisEvents(old: RolloutState, new: RolloutState) -> [Event] {
        var events: [Event] = []
        for record in new.records() {
            let involved = Event.Involved(namespace: record.service.namespace, name: record.service.name)
            let before = old.record(namespace: involved.namespace, name: involved.name)?.analysis
            if let before, before.phase.isRunning, record.analysis?.revision != before.revision {
                var ended = before
                ended.supersede("an apply created revision \(record.latestCreatedRevision)")
                events.append(analysisEvent(ended, record: record, involved: involved))
            }
            guard let analysis = record.analysis else { continue }
            if analysis.revision != before?.revision || analysis.decisionCount != before?.decisionCount {
                events.append(analysisEvent(analysis, record: record, involved: involved))
            }
        }
        return events
    }

    private static func analysisEvent(_ analysis: CanaryAnalysis, record: ServiceRecord, involved: Event.Involved) -> Event {
        let decision = analysis.lastDecision ?? CanaryAnalysis.Decision(reason: "CanaryAnalysis", message: analysis.phase.rawValue, isWarning: false)
        var fields: [(String, JSONValue)] = [
            ("revision", .string(analysis.revision)), ("previousRevision", .string(analysis.previousRevision)),
            ("phase", .string(analysis.phase.rawValue)), ("failedChecks", .int(analysis.failedChecks)),
        ]
        if let percent = analysis.canaryTrafficPercent { fields.append(("weight", .int(percent))) }
        if let settings = record.service.canaryAnalysisSettings { fields.append(("failureLimit", .int(settings.failureLimit))) }
        if let figures = analysis.lastCheck, decision.isCheck {
            // In the units of the annotation and of `status.canaryAnalysis.lastCheck`: percent and milliseconds.
            let check = ServiceRecord.checkJSON(figures)
            for key in ["canaryRequests", "successRate", "p99Ms", "previousRequests", "previousP99Ms"] {
                if let value = check[key] { fields.append((key, value)) }
            }
        }
        fields.append(("traffic", trafficJSON(record.traffic)))
        return Event("canary." + eventName(decision.reason), reason: decision.reason, level: decision.isWarning ? .warning : .info,
                     involved: involved, message: decision.message + "; traffic: \(trafficText(record.traffic))", fields: fields)
    }

    /// `CanaryStepAdvanced` → `step_advanced`: the dotted event names are snake case.
    private static func eventName(_ reason: String) -> String {
        var name = ""
        for character in reason.dropFirst("Canary".count) {
            if character.isUppercase, !name.isEmpty { name += "_" }
            name += character.lowercased()
        }
        return name
    }
}
