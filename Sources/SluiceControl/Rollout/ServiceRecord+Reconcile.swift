// Control layer: KServe's traffic rules and status bookkeeping, replayed until they settle.
import Foundation

extension ServiceRecord {
    /// One controller pass, as KServe's reconcile loop and Knative's route would run it: write traffic
    /// from the bookkeeping, let "latest" resolve to the latest ready revision, propagate the status,
    /// and repeat while the bookkeeping moves (a rollback needs two passes: see `propagateStatus`).
    mutating func reconcile(now: Date) {
        advanceLatestReady()
        for _ in 0..<4 {
            let before = (latestRolledoutRevision, previousRolledoutRevision)
            writtenTraffic = controllerTraffic()
            traffic = resolved(writtenTraffic)
            propagateStatus()
            if before == (latestRolledoutRevision, previousRolledoutRevision) { break }
        }
        writtenTraffic = controllerTraffic()
        traffic = resolved(writtenTraffic)
        updateConditions(now: now)
    }

    /// Knative's `LatestReadyRevisionName` only moves forward, to the newest revision that became ready.
    /// A later probe failure does not move it back: that would rewrite the rollout history
    /// (`PropagateStatus` would record a "rollout" of the older revision). Probe failures are
    /// handled where requests are routed instead (`RolloutState.serviceSpecs`).
    private mutating func advanceLatestReady() {
        guard let newest = revisions.lastIndex(where: \.isReady) else { return }
        if let current = index(ofRevision: latestReadyRevision), current >= newest { return }
        latestReadyRevision = revisions[newest].name
    }

    /// `createKnativeService` in kserve `pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go`
    /// (the version after kserve#2130: no rollback special case here any more, it moved into `PropagateStatus`).
    /// The percent is the manifest's, or a running analysis's step in its place (`effectiveCanaryTrafficPercent`).
    func controllerTraffic() -> [TrafficTarget] {
        let latestTag: String? = service.isTagRoutingEnabled ? "latest" : nil
        if let canary = effectiveCanaryTrafficPercent, let rolledOut = latestRolledoutRevision {
            var targets = [TrafficTarget(revisionName: nil, percent: canary, tag: latestTag, latestRevision: true)]
            if canary < 100 {
                targets.append(TrafficTarget(revisionName: rolledOut, percent: 100 - canary, tag: "prev", latestRevision: false))
            }
            return targets
        }
        // First deploy, or the field removed (promote): blue-green to the latest ready revision.
        return [TrafficTarget(revisionName: nil, percent: 100, tag: latestTag, latestRevision: true)]
    }

    /// Knative's route: `latestRevision: true` names the latest ready revision. With none ready the
    /// route has nothing to point at (Knative: `RevisionMissing`) and status traffic is empty.
    func resolved(_ written: [TrafficTarget]) -> [TrafficTarget] {
        guard let latestReady = latestReadyRevision else { return [] }
        return written.map { target in
            var target = target
            if target.latestRevision { target.revisionName = latestReady }
            return target
        }
    }

    /// kserve `pkg/apis/serving/v1beta1/inference_service_status.go`, `PropagateStatus`, line by line:
    /// - the latest ready revision reaching 100 % is a rollout: the old LRR becomes previous, it becomes LRR;
    /// - rollback after a full rollout (`canaryTrafficPercent < 100` while LRR == latest ready == latest
    ///   created): the controller wrote `prev` on LRR itself, so the same revision holds 100 % over two
    ///   targets; then LRR goes back to `previousRolledoutRevision` and the next pass moves `prev` there.
    ///   Requiring latest ready == latest created is the kserve#2130 fix: during a second canary whose
    ///   revision is not ready yet, the split over one revision is not a rollback.
    private mutating func propagateStatus() {
        var revisionTraffic: [String: Int] = [:]
        for target in traffic {
            if let name = target.revisionName { revisionTraffic[name, default: 0] += target.percent }
        }
        guard let latestReady = latestReadyRevision else { return }
        for target in traffic where target.revisionName == latestReady && target.latestRevision {
            if latestRolledoutRevision != latestReady {
                if target.percent == 100 {
                    previousRolledoutRevision = latestRolledoutRevision
                    latestRolledoutRevision = latestReady
                }
            } else if latestReady == latestCreatedRevision, target.percent < 100,
                      revisionTraffic[latestReady] == 100, let previous = previousRolledoutRevision {
                latestRolledoutRevision = previous
            }
        }
    }
}
