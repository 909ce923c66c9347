// Control layer: what the data plane should route right now, compiled from status traffic and live readiness.
import SluiceRouting

extension RolloutState {
    /// One `ServiceSpec` per InferenceService that has something routable, in `namespace/name` order.
    ///
    /// Starts from status traffic (KServe's split resolved by Knative) and applies live readiness:
    /// a target whose revision is not ready (probe failing, no endpoints) keeps its entry and tag at
    /// 0 % with `endpoints: []`, and its share goes to the `latestRevision` target if that one is ready,
    /// else to the ready target with the largest share. So percents add up to 100 and no request is
    /// sent to a revision without a ready endpoint (kserve#2882, #5983: the 400/503 storms while a
    /// revision starts). A tag host of a not-ready revision answers 503, which is what it is.
    ///
    /// A service with no routable target is left out: its hosts are then unknown to the route table
    /// and the gateway answers 404 ("no InferenceService serves this host"). A RouteTable service must
    /// have traffic adding up to 100 over known revisions, and there is no revision to put it on;
    /// `get isvc` still lists the service with READY False and the reason.
    ///
    /// `tagRoutingDefault` decides tag hosts when the manifest has no
    /// `serving.kserve.io/enable-tag-routing` annotation; the annotation, when present, wins
    /// (`ServiceRecord.servesTagHosts`). It does not add the `latest` tag: which tags exist is
    /// KServe's rule (annotation only).
    /// `retries` is the gateway's policy, the base of a service's `serving.sluice.dev/retries` annotation.
    public func serviceSpecs(tagRoutingDefault: Bool = false, retries: RetryPolicy = RetryPolicy()) -> [ServiceSpec] {
        records().compactMap { record in
            guard record.hasRoutableTarget else { return nil }
            var targets: [TrafficTargetSpec] = []
            var revisionNames: [String] = []
            var orphaned = 0
            var isRoutable: [Bool] = []
            for target in record.traffic {
                guard let name = target.revisionName else { continue }
                let routable = record.revision(named: name)?.isRoutable ?? false
                if !revisionNames.contains(name) { revisionNames.append(name) }
                if !routable { orphaned += target.percent }
                isRoutable.append(routable)
                targets.append(TrafficTargetSpec(revisionName: name, percent: routable ? target.percent : 0,
                                                 tag: target.tag, latestRevision: target.latestRevision))
            }
            if orphaned > 0 {
                let latest = targets.indices.first { targets[$0].latestRevision && isRoutable[$0] }
                let largest = targets.indices.filter { isRoutable[$0] }.max { targets[$0].percent < targets[$1].percent }
                if let receiver = latest ?? largest { targets[receiver].percent += orphaned }
            }
            let revisions = revisionNames.map { name in
                let revision = record.revision(named: name)
                return RevisionSpec(name: name, endpoints: revision?.isRoutable == true ? revision?.endpoints ?? [] : [],
                                    responseTimeoutMs: revision?.responseTimeoutMs)
            }
            return ServiceSpec(name: record.service.name, namespace: record.service.namespace,
                               tagRouting: record.servesTagHosts(default: tagRoutingDefault),
                               revisions: revisions, traffic: targets, retries: record.service.retryPolicy(base: retries))
        }
    }

    /// The percent each revision of one service gets from the data plane right now (0 when none).
    public func routedPercents(namespace: String, name: String, tagRoutingDefault: Bool = false) -> [String: Int] {
        guard let spec = serviceSpecs(tagRoutingDefault: tagRoutingDefault)
            .first(where: { $0.namespace == namespace && $0.name == name }) else { return [:] }
        var percents: [String: Int] = [:]
        for target in spec.traffic { percents[target.revisionName, default: 0] += target.percent }
        return percents
    }
}
