// Control layer: the control plane's /metrics families — route table generation and publications, applies by
// result, readiness probes per endpoint and each probed endpoint's verdict.
import SluiceProxy
import SluiceRouting

extension ControlPlane {
    public func writeMetrics(into exposition: inout MetricsExposition) {
        let (generation, publications, applied, records) = telemetry
        exposition.family("sluice_route_table_generation", .gauge,
                          help: "The number of the route table in force: 1 at start, one more for each table handed to the workers.")
        exposition.gauge(MetricLabels(), generation)
        exposition.family("sluice_route_table_publications", .counter,
                          help: "Route tables handed to the workers, by cause: apply, delete, probe (readiness changed), reload.")
        for cause in Cause.allCases {
            exposition.counter(MetricLabels(["cause": cause.rawValue]), publications[cause] ?? 0)
        }
        exposition.family("sluice_manifests_applied", .counter,
                          help: "InferenceServices applied (admin API, sluice apply, manifest directory) by result; refused counts whole requests.")
        for result in ["created", "configured", "unchanged", "refused"] {
            exposition.counter(MetricLabels(["result": result]), applied[result] ?? 0)
        }

        exposition.family("sluice_readiness_probes", .counter, help: "Readiness probes of each endpoint for each model, by result.")
        let counts = probeCounts.sorted { ($0.target.endpoint.description, $0.target.modelName) < ($1.target.endpoint.description, $1.target.modelName) }
        for count in counts {
            let labels = MetricLabels(["endpoint": count.target.endpoint.description, "model": count.target.modelName])
            exposition.counter(labels.appending("result", "success"), count.successes)
            exposition.counter(labels.appending("result", "failure"), count.failures)
        }

        exposition.family("sluice_endpoint_ready", .gauge,
                          help: "1 when the endpoint passes its readiness probe (it gets traffic), 0 when it fails or was not probed yet; per revision.")
        for record in records {
            for revision in record.revisions {
                for endpoint in revision.endpoints where endpoint.upstreamProtocol == .http1 {
                    let result = probeResult(ProbeTarget(endpoint: endpoint, modelName: record.service.name))
                    let labels = MetricLabels(["namespace": record.service.namespace, "service": record.service.name,
                                               "revision": revision.name, "endpoint": endpoint.description])
                    exposition.gauge(labels, result.isReady ? 1 : 0)
                }
            }
        }
    }
}
