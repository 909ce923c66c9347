// Proxy layer: Istio's standard metrics for the gateway's requests — the label set of Istio's stats filter, in its
// order, with the KServe/Knative meaning of each value (the mapping table is in the README).

enum IstioLabels {
    /// The labels that are the same for every series of a revision (everything but the request's own).
    static func destination(_ block: RevisionMetricsBlock) -> [(String, String)] {
        let routed = block.id >= 0
        let ns = routed ? block.namespace : "unknown"
        return [
            // The gateway reports as the pods' side would, so Flagger's `reporter="destination"` queries match.
            ("reporter", "destination"),
            // Clients reach the revision through the gateway: it is the source workload Kiali draws the edge from.
            ("source_workload", "sluice"),
            ("source_workload_namespace", "unknown"),
            ("source_principal", "unknown"),
            ("source_app", "sluice"),
            ("source_version", "unknown"),
            ("source_canonical_service", "sluice"),
            ("source_canonical_revision", "latest"),
            ("source_cluster", "unknown"),
            ("destination_workload", routed ? block.revision + "-deployment" : "unknown"),
            ("destination_workload_namespace", ns),
            ("destination_principal", "unknown"),
            ("destination_app", routed ? block.revision : "unknown"),
            ("destination_version", "unknown"),
            ("destination_service", routed ? "\(block.component).\(ns).svc.cluster.local" : "unknown"),
            ("destination_service_name", routed ? block.component : "unknown"),
            ("destination_service_namespace", ns),
            ("destination_canonical_service", routed ? block.component : "unknown"),
            ("destination_canonical_revision", routed ? block.revision : "unknown"),
            ("destination_cluster", "unknown"),
        ]
    }

    /// request_protocol, response_flags, connection_security_policy, response_code, grpc_response_status.
    static func request(_ key: SeriesKey) -> [(String, String)] {
        [
            ("request_protocol", key.isOverflow ? "unknown" : key.protocolCode == RequestRecord.ClientProtocol.grpc.rawValue ? "grpc" : "http"),
            ("response_flags", key.isOverflow ? "-" : key.flags.envoyCodes(status: key.status)),
            // Clients do not present a mesh identity (mTLS) to the gateway.
            ("connection_security_policy", "none"),
            ("response_code", key.isOverflow ? "other" : String(key.status)),
            // Istio leaves it empty for requests that are not gRPC.
            ("grpc_response_status", key.grpcStatus >= 0 ? String(key.grpcStatus) : ""),
        ]
    }
}

/// A series key unpacked (WorkerMetrics.record packs it).
struct SeriesKey: Hashable {
    let raw: UInt64

    var isOverflow: Bool { raw == WorkerMetrics.overflowKey }
    var status: Int { Int(raw & 0x3FF) }
    var protocolCode: UInt8 { UInt8((raw >> 10) & 0x3) }
    var grpcStatus: Int { isOverflow ? -1 : Int((raw >> 12) & 0x1F) - 1 }
    var tagID: Int { Int((raw >> 17) & 0x7) }
    var outcome: UInt8 { UInt8((raw >> 20) & 0x3) }
    var flags: RequestRecord.Flags { RequestRecord.Flags(rawValue: UInt32((raw >> 22) & 0x3FFF)) }

    /// A request the gateway counts as failed: a 5xx or no status, a gateway answer, an abort, a gRPC error.
    var isFailure: Bool {
        if isOverflow { return false }
        return status >= 500 || status == 0 || outcome != RequestRecord.Outcome.completed.rawValue
            || grpcStatus > 0
    }

    /// The key without what Istio's labels do not show (the tag, the outcome), for merging Istio's series.
    var istioIdentity: UInt64 { raw & ~(UInt64(0x7) << 17 | UInt64(0x3) << 20) }
    /// The key without what Sluice's request counter does not show (outcome and flags), tag kept by name.
    var sluiceIdentity: UInt64 { raw & ~(UInt64(0x7) << 17 | UInt64(0x3) << 20 | UInt64(0x3FFF) << 22) }
}
