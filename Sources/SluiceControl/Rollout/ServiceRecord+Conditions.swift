// Control layer: the InferenceService conditions KServe shows in serverless mode, derived from revisions and traffic.
import Foundation

extension ServiceRecord {
    /// Condition types in the order Knative sorts them (alphabetical), as `kubectl get -o json` lists them.
    static let conditionTypes = ["IngressReady", "LatestDeploymentReady", "PredictorConfigurationReady",
                                 "PredictorReady", "PredictorRouteReady", "Ready", "RoutesReady"]

    /// Some traffic target points at a revision that is ready and has endpoints: the gateway sends this
    /// service's requests to pods (otherwise `RolloutState.serviceSpecs` keeps it without endpoints: 503).
    var hasRoutableTarget: Bool {
        traffic.contains { target in revisions.contains { $0.name == target.revisionName && $0.isRoutable } }
    }

    /// Recomputes every condition; `lastTransitionTime` moves only when a condition's status changes.
    mutating func updateConditions(now: Date) {
        typealias Verdict = (status: StatusCondition.Status, reason: String?, message: String?)
        let previousAnalysis = condition(Self.analysisConditionType)
        let configuration = configurationVerdict()
        let route = routeVerdict()
        // Knative's service Ready: ConfigurationsReady and RoutesReady, the first unhappy one explaining.
        let predictor = combine([configuration, route])
        // Sluice's ingress is the route table: ready exactly when the gateway routes this service.
        // While the first revision is still starting this is Unknown, not False, as Knative's route is.
        let ingress: Verdict = hasRoutableTarget
            ? (.isTrue, nil, nil)
            : (configuration.status == .unknown ? .unknown : .isFalse, "PredictorNotReady",
               "no ready revision to route to: the gateway answers 503 on this InferenceService's hosts")
        // KServe's `PropagateCrossComponentStatus` words the aggregated conditions this way.
        func aggregate(_ verdict: Verdict, component: String) -> Verdict {
            verdict.status == .isTrue ? verdict : (verdict.status, "\(component) not ready", nil)
        }
        // KServe's InferenceService condition set: Ready = PredictorReady ∧ IngressReady.
        let ready = combine([predictor, ingress])
        let verdicts: [String: Verdict] = [
            "IngressReady": ingress,
            "LatestDeploymentReady": aggregate(configuration, component: "PredictorConfigurationReady"),
            "PredictorConfigurationReady": configuration,
            "PredictorReady": predictor,
            "PredictorRouteReady": route,
            "Ready": ready,
            "RoutesReady": aggregate(route, component: "PredictorRouteReady"),
        ]
        conditions = Self.conditionTypes.map { type in
            let verdict = verdicts[type] ?? (.unknown, nil, nil)
            let previous = condition(type)
            let since = previous?.status == verdict.status ? previous?.lastTransitionTime ?? now : now
            // Knative's MarkTrue clears reason and message.
            return verdict.status == .isTrue
                ? StatusCondition(type: type, status: .isTrue, lastTransitionTime: since)
                : StatusCondition(type: type, status: verdict.status, reason: verdict.reason, message: verdict.message,
                                  lastTransitionTime: since)
        }
        // The analysis's condition does not count towards Ready; it sorts first, as Knative sorts condition types.
        if let analysisCondition = analysisCondition(previous: previousAnalysis, now: now) { conditions.insert(analysisCondition, at: 0) }
    }

    /// Knative's ConfigurationsReady: is the latest created revision ready? Still starting is Unknown,
    /// a known failure (no endpoints, failing probe) is False with the revision's reason.
    private func configurationVerdict() -> (status: StatusCondition.Status, reason: String?, message: String?) {
        guard let latest = revisions.last else { return (.unknown, nil, nil) }
        if latest.isReady { return (.isTrue, nil, nil) }
        let message = "Revision \"\(latest.name)\": \(latest.message ?? "not ready")"
        if latest.reason == RevisionRecord.deployingReason || latest.reason == nil {
            return (.unknown, latest.reason ?? RevisionRecord.deployingReason, message)
        }
        return (.isFalse, latest.reason, message)
    }

    /// Knative's RoutesReady: every target with a share points at a ready revision.
    private func routeVerdict() -> (status: StatusCondition.Status, reason: String?, message: String?) {
        guard !traffic.isEmpty else {
            // Knative's words when "latest ready" cannot be resolved.
            // Knative's route: `MarkConfigurationNotReady` while the revision starts, `MarkConfigurationFailed` once it failed.
            if configurationVerdict().status == .unknown {
                return (.unknown, "RevisionMissing", "Configuration \"\(componentName)\" is waiting for a Revision to become ready.")
            }
            return (.isFalse, "RevisionMissing", "Configuration \"\(componentName)\" does not have any ready Revision.")
        }
        for target in traffic where target.percent > 0 {
            guard let name = target.revisionName, let revision = revisions.first(where: { $0.name == name }) else { continue }
            if !revision.isRoutable {
                return (.isFalse, revision.reason ?? "RevisionNotReady",
                        "Revision \"\(name)\" has \(target.percent)% of the traffic but is not ready; its share goes to ready revisions")
            }
        }
        return (.isTrue, nil, nil)
    }

    /// A living condition set: False if any is False (first one explains), else Unknown if any is, else True.
    private func combine(_ verdicts: [(status: StatusCondition.Status, reason: String?, message: String?)])
        -> (status: StatusCondition.Status, reason: String?, message: String?) {
        if let failed = verdicts.first(where: { $0.status == .isFalse }) { return failed }
        if let unknown = verdicts.first(where: { $0.status == .unknown }) { return unknown }
        return (.isTrue, nil, nil)
    }
}
