// Control layer: the admin API's `top` resource — `…/namespaces/NS/top` and `…/inferenceservices/NAME/top`.
import SluiceBlockingHTTP
import SluiceRouting

extension AdminAPI {
    /// The rows of `sluice top`, each with the split the route table gives its revision (percent and tag).
    func top(_ sampler: TopSampler, namespace: String, name: String?) -> BlockingResponse {
        let services = (gateway?.routes.services ?? []).filter { $0.namespace == namespace && (name == nil || $0.name == name) }
        if let name, services.isEmpty, plane.resource(namespace: namespace, name: name) == nil { return Self.notFound(name) }
        var split: [String: TrafficTargetSpec] = [:]
        for service in services {
            for target in service.traffic where split["\(service.name)/\(target.revisionName)"] == nil {
                split["\(service.name)/\(target.revisionName)"] = target
            }
        }
        let rows = sampler.report(namespace: namespace, name: name)
        let items: [JSONValue] = rows.map { row in
            guard case .object(var fields) = row.json else { return row.json }
            let target = split["\(row.service)/\(row.revision)"]
            fields["percent"] = target.map { .int($0.percent) } ?? .null
            fields["tag"] = target?.tag.map(JSONValue.string) ?? .null
            return .object(fields)
        }
        return Self.json(200, .object(["kind": "RevisionTopList", "windowSeconds": .double(rows.first?.windowSeconds ?? 0),
                                       "items": .array(items)]))
    }
}
