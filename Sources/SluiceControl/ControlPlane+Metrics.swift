// Control layer: the control plane's /metrics families — route table generation and publications, applies by
// result, readiness probes per endpoint and each probed endpoint's verdict.
import SluiceProxy
import SluiceRouting

extension ControlPlane {
    public func writeMetrics(into exposition: inout MetricsExposition) {
        let (generation, publications, applied, _) = telemetry
        exposition.family("sluice_route_table_generation", .gauge,
                          help: "The number of the route table in force: 1 at start, one more for each table handed to the workers.")
        exposition.gauge(MetricLabels(), generation)
        exposition.family("sluice_route_table_publications", .counter,
                          help: "Route tables handed to the workers, by cause: apply, delete, probe (readiness changed), reload, analysis (a canary analysis's decision).")
        for cause in Cause.allCases {
            exposition.counter(MetricLabels(["cause": cause.rawValue]), publications[cause] ?? 0)
        }
        exposition.family("sluice_manifests_applied", .counter,
                          help: "InferenceServices applied (admin API, sluice apply, manifest directory) by result; refused counts whole requests.")
        for result in ["created", "configured", "unchanged", "refused"] {
            exposition.counter(MetricLabels(["result": result]), applied[result] ?? 0)
        }

        exposition.family("sluice_readiness_probes", .counter,
                          help: "Health checks (readiness probes) of each endpoint for each model, by result: HTTP GET, or gRPC health for h2c:// and h2:// endpoints.")
        // Targets that differ only in their settings (two revisions' paths) add up under one endpoint and model.
        var totals: [String: (endpoint: String, model: String, successes: UInt64, failures: UInt64)] = [:]
        for count in probeCounts {
            let key = "\(count.target.endpoint) \(count.target.modelName)"
            var total = totals[key] ?? (count.target.endpoint.description, count.target.modelName, 0, 0)
            total.successes += count.successes
            total.failures += count.failures
            totals[key] = total
        }
        for total in totals.values.sorted(by: { ($0.endpoint, $0.model) < ($1.endpoint, $1.model) }) {
            let labels = MetricLabels(["endpoint": total.endpoint, "model": total.model])
            exposition.counter(labels.appending("result", "success"), total.successes)
            exposition.counter(labels.appending("result", "failure"), total.failures)
        }

        exposition.family("sluice_endpoint_ready", .gauge,
                          help: "1 when the endpoint passes its health check (it gets traffic), 0 when it fails or was not checked yet; per revision, for every checked endpoint (manifest revisions, static services with healthCheck).")
        var seen: Set<String> = []
        for entry in checkedEndpoints {
            // A static service and a manifest one may share namespace, name and revision: the first one counts.
            guard seen.insert("\(entry.namespace)/\(entry.service)/\(entry.revision)/\(entry.endpoint)").inserted else { continue }
            let result = probeResult(entry.target)
            let labels = MetricLabels(["namespace": entry.namespace, "service": entry.service,
                                       "revision": entry.revision, "endpoint": entry.endpoint.description])
            exposition.gauge(labels, result.isReady ? 1 : 0)
        }
    }
}
