// Control layer: the rows of `sluice get revisions NAME`, from the record and the routed percents.

extension RolloutState {
    /// Every revision of one service, oldest first; nil when there is no such service.
    public func revisionRows(namespace: String, name: String, tagRoutingDefault: Bool = false) -> [RevisionRow]? {
        guard let record = record(namespace: namespace, name: name) else { return nil }
        let percents = routedPercents(namespace: namespace, name: name, tagRoutingDefault: tagRoutingDefault)
        return record.revisions.map { revision in
            RevisionRow(name: revision.name, endpoints: revision.endpoints, isReady: revision.isReady,
                        reason: revision.reason, percent: percents[revision.name] ?? 0,
                        tags: record.traffic.filter { $0.revisionName == revision.name }.compactMap(\.tag),
                        creationTimestamp: revision.creationTimestamp)
        }
    }
}
