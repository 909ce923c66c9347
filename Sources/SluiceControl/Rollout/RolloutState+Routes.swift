// Control layer: what the data plane should route right now, compiled from status traffic and live readiness.
import SluiceRouting

extension RolloutState {
    /// One `ServiceSpec` per InferenceService that has a revision, in `namespace/name` order.
    ///
    /// Starts from status traffic (KServe's split resolved by Knative) and applies live readiness:
    /// a target whose revision is not ready (probe failing, no endpoints) keeps its entry and tag at
    /// 0 % with `endpoints: []`, and its share goes to the `latestRevision` target if that one is ready,
    /// else to the ready target with the largest share. So percents add up to 100 and no request is
    /// sent to a revision without a ready endpoint (kserve#2882, #5983: the 400/503 storms while a
    /// revision starts). A tag host of a not-ready revision answers 503, which is what it is.
    ///
    /// A service with no routable target stays in the table (issue 9, item 6): its split is kept as
    /// status has it, every revision with `endpoints: []`, so its hosts answer 503 "no ready endpoint"
    /// (gRPC UNAVAILABLE) rather than the 404 of a host nobody serves, while `get isvc` shows it not
    /// Ready with the reason. A service with no status traffic yet (its first revision never became
    /// ready) gets its latest created revision at 100 %, likewise without endpoints.
    ///
    /// `tagRoutingDefault` decides tag hosts when the manifest has no
    /// `serving.kserve.io/enable-tag-routing` annotation; the annotation, when present, wins
    /// (`ServiceRecord.servesTagHosts`). It does not add the `latest` tag: which tags exist is
    /// KServe's rule (annotation only).
    /// `retries` is the gateway's policy, the base of a service's `serving.sluice.dev/retries` annotation.
    public func serviceSpecs(tagRoutingDefault: Bool = false, retries: RetryPolicy = RetryPolicy()) -> [ServiceSpec] {
        records().compactMap { record in
            guard record.hasRoutableTarget else { return Self.unservedSpec(record, tagRoutingDefault: tagRoutingDefault) }
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
                                    responseTimeoutMs: revision?.responseTimeoutMs,
                                    containerConcurrency: revision?.containerConcurrency ?? 0)
            }
            var spec = ServiceSpec(name: record.service.name, namespace: record.service.namespace,
                                   tagRouting: record.servesTagHosts(default: tagRoutingDefault),
                                   revisions: revisions, traffic: targets, retries: record.service.retryPolicy(base: retries),
                                   stickyKey: record.service.stickyKey)
            Self.addMirror(of: record, to: &spec)  // serving.sluice.dev/mirror-percent: InferenceService+Mirror.swift
            return spec
        }
    }

    /// A service that exists but has nothing ready: the status split (or its latest created revision at 100 %
    /// before it has one), every revision without endpoints. nil only for a service without revisions.
    private static func unservedSpec(_ record: ServiceRecord, tagRoutingDefault: Bool) -> ServiceSpec? {
        var targets = record.traffic.compactMap { target in
            target.revisionName.map { TrafficTargetSpec(revisionName: $0, percent: target.percent, tag: target.tag, latestRevision: target.latestRevision) }
        }
        if targets.reduce(0, { $0 + $1.percent }) != 100 {
            guard let latest = record.revisions.last else { return nil }
            targets = [TrafficTargetSpec(revisionName: latest.name, percent: 100, latestRevision: true)]
        }
        var names: [String] = []
        for target in targets where !names.contains(target.revisionName) { names.append(target.revisionName) }
        return ServiceSpec(name: record.service.name, namespace: record.service.namespace,
                           tagRouting: record.servesTagHosts(default: tagRoutingDefault),
                           revisions: names.map { RevisionSpec(name: $0, endpoints: []) }, traffic: targets,
                           stickyKey: record.service.stickyKey)
    }

    /// The percent each revision of one service gets from the data plane right now (0 when none; none at all while
    /// nothing is routable: those requests are answered 503 by the gateway, no revision serves them).
    public func routedPercents(namespace: String, name: String, tagRoutingDefault: Bool = false) -> [String: Int] {
        guard record(namespace: namespace, name: name)?.hasRoutableTarget == true, let spec = serviceSpecs(tagRoutingDefault: tagRoutingDefault)
            .first(where: { $0.namespace == namespace && $0.name == name }) else { return [:] }
        var percents: [String: Int] = [:]
        for target in spec.traffic { percents[target.revisionName, default: 0] += target.percent }
        return percents
    }
}
