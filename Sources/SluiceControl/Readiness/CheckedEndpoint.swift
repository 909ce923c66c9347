// Control layer: which endpoints get an active health check and how — every endpoint of every manifest revision
// (the revision's readiness-path annotation, else `readiness:`), and those of static services with a `healthCheck:`
// — and the static services' routes with failing endpoints left out.
import SluiceRouting

/// One endpoint of one revision of one service, with the check that decides whether it gets traffic.
struct CheckedEndpoint {
    var namespace: String
    var service: String
    var revision: String
    var endpoint: Endpoint
    var target: ProbeTarget
    /// From the configuration file's `services:`, not from a manifest.
    var isStatic: Bool

    /// Every checked endpoint, manifest services first (in `namespace/name` order), then static ones in file order.
    static func all(state: RolloutState, config: GatewayConfig) -> [CheckedEndpoint] {
        var checked: [CheckedEndpoint] = []
        for record in state.records() {
            for revision in record.revisions {
                for endpoint in revision.endpoints {
                    checked.append(CheckedEndpoint(namespace: record.service.namespace, service: record.service.name, revision: revision.name,
                                                   endpoint: endpoint, target: target(endpoint, record.service.name, revision, config), isStatic: false))
                }
            }
        }
        for spec in config.services {
            guard let settings = config.healthChecks[GatewayConfig.serviceKey(namespace: spec.namespace, name: spec.name)] else { continue }
            for revision in spec.revisions {
                for endpoint in revision.endpoints {
                    checked.append(CheckedEndpoint(namespace: spec.namespace, service: spec.name, revision: revision.name, endpoint: endpoint,
                                                   target: ProbeTarget(endpoint: endpoint, modelName: spec.name, settings: settings), isStatic: true))
                }
            }
        }
        return checked
    }

    /// The check of a manifest revision's endpoint: `readiness:`, with the revision's annotated path when it has one.
    static func target(_ endpoint: Endpoint, _ service: String, _ revision: RevisionRecord, _ config: GatewayConfig) -> ProbeTarget {
        var settings = config.control.readiness
        if let path = InferenceService.readinessPath(template: revision.template) { settings.path = path }
        return ProbeTarget(endpoint: endpoint, modelName: service, settings: settings)
    }
}

extension ServiceSpec {
    /// This static service with the endpoints that failed their check (`isHealthy` false) left out. A revision that
    /// lost all its endpoints that way gives its share to the `latestRevision` target if that one still has
    /// endpoints, else to the one with the largest share, as a manifest's not-ready revision does; when no revision
    /// has any left, the split stays and the hosts answer 503 (no ready endpoint), never 404.
    func withHealthyEndpoints(_ isHealthy: (Endpoint) -> Bool) -> ServiceSpec {
        var spec = self
        var emptied: Set<String> = []
        for index in spec.revisions.indices {
            let before = spec.revisions[index].endpoints
            spec.revisions[index].endpoints = before.filter(isHealthy)
            if !before.isEmpty && spec.revisions[index].endpoints.isEmpty { emptied.insert(spec.revisions[index].name) }
        }
        guard !emptied.isEmpty else { return spec }
        let hasEndpoints = { (name: String) in spec.revisions.contains { $0.name == name && !$0.endpoints.isEmpty } }
        let receiver = spec.traffic.indices.first { spec.traffic[$0].latestRevision && hasEndpoints(spec.traffic[$0].revisionName) }
            ?? spec.traffic.indices.filter { hasEndpoints(spec.traffic[$0].revisionName) }.max { spec.traffic[$0].percent < spec.traffic[$1].percent }
        guard let receiver else { return spec }
        for index in spec.traffic.indices where emptied.contains(spec.traffic[index].revisionName) {
            spec.traffic[receiver].percent += spec.traffic[index].percent
            spec.traffic[index].percent = 0
        }
        return spec
    }
}
