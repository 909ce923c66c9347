// Proxy layer: the scrape — sums every worker's cells (relaxed loads, no lock on the request path) and writes the
// data plane's families (`Gateway.writeMetrics`), and the per-revision summary `sluice top` reads
// (`Gateway.revisionStats`), with the mirrored requests of a revision apart from its client traffic.
import SluiceIO
import SluiceRouting

/// One revision's traffic so far, summed over the workers (for `sluice top`: rates and quantiles come from the
/// difference of two of these).
public struct RevisionStats: Sendable, Hashable {
    public let namespace: String
    public let service: String
    public let revision: String
    /// Requests finished.
    public let requests: UInt64
    /// Of those, the failed ones: a 5xx or no response, a gateway-made answer, an abort, a gRPC status other than OK.
    public let failed: UInt64
    /// The duration histogram's upper bounds in seconds, ascending, the last one `+infinity`.
    public let durationBounds: [Double]
    /// Requests that took at most `durationBounds[i]`, cumulative (the last one is `requests`).
    public let durationCumulativeCounts: [UInt64]
    /// Mirrored (shadow) requests sent to the revision, not client traffic: an entry of its own beside the
    /// revision's client entry, present once some mirror reached it. `requests` counts those that reached the pod
    /// and ended (dropped ones never did), `failed` the 5xx, failed and timed-out ones among them.
    public var shadow = false
}

extension Gateway {
    /// Writes every data-plane family: per revision (Sluice's and, when `metrics.istio`, Istio's standard
    /// metrics), gateway-made answers, upstream endpoints, client connections, TLS handshakes and HTTP/2. Called
    /// by the control plane's `/metrics`; safe from any thread while the workers run.
    public func writeMetrics(into out: inout MetricsExposition) {
        let settings = self.settings
        var snapshot = MetricsSnapshot(handles.map(\.metrics))
        snapshot.write(into: &out, istio: settings.metrics.istio, tls: settings.tls != nil, openConnections: activeConnections)
    }

    /// Every revision ever routed to (those of earlier route tables too), ordered by namespace, service, revision.
    public func revisionStats() -> [RevisionStats] {
        var snapshot = MetricsSnapshot(handles.map(\.metrics))
        return snapshot.revisionStats()
    }
}

/// One scrape's view of the workers' blocks, grouped by revision.
struct MetricsSnapshot {
    struct Series {
        let key: SeriesKey
        let tag: String
        var count: UInt64 = 0
        /// Istio's duration, request and response size buckets (RevisionLayout order), then their three sums.
        var istio: [UInt64]
    }

    struct Group {
        var blocks: [RevisionMetricsBlock]
        var first: RevisionMetricsBlock { blocks[0] }
        var series: [Series] = []
        var labels = MetricLabels()
    }

    private(set) var groups: [Group] = []
    private let workerCells: [UnsafeMutablePointer<UInt64>]
    private var endpoints: [(endpoint: String, cells: [UnsafeMutablePointer<UInt64>])] = []
    private var scratch = [UInt64](repeating: 0, count: RevisionLayout.latencyStride)

    init(_ views: [WorkerMetricsView]) {
        workerCells = views.map(\.workerCells)
        var byID: [Int: Int] = [:]
        var unrouted = Group(blocks: [])
        var endpointIndex: [String: Int] = [:]
        for view in views {
            for block in view.revisions.withLock({ $0 }) {
                if let at = byID[block.id] {
                    groups[at].blocks.append(block)
                } else {
                    byID[block.id] = groups.count
                    groups.append(Group(blocks: [block]))
                }
            }
            unrouted.blocks.append(view.unrouted)
            for block in view.endpoints.withLock({ $0 }) {
                if let at = endpointIndex[block.endpoint] {
                    endpoints[at].cells.append(block.cells)
                } else {
                    endpointIndex[block.endpoint] = endpoints.count
                    endpoints.append((block.endpoint, [block.cells]))
                }
            }
        }
        groups.sort { a, b in
            (a.first.namespace, a.first.service, a.first.revision) < (b.first.namespace, b.first.service, b.first.revision)
        }
        if !unrouted.blocks.isEmpty { groups.append(unrouted) }
        endpoints.sort { $0.endpoint < $1.endpoint }
        for i in groups.indices {
            let block = groups[i].first
            groups[i].labels = MetricLabels([("namespace", block.namespace), ("service", block.service), ("revision", block.revision)])
            groups[i].series = Self.mergeSeries(groups[i].blocks)
        }
    }

    /// The series of a revision's blocks, merged by key and tag name (tag ids are per worker).
    private static func mergeSeries(_ blocks: [RevisionMetricsBlock]) -> [Series] {
        var out: [Series] = []
        let istioCells = 3 * RevisionLayout.istioBuckets
        for block in blocks {
            var series = block.cells
            for _ in 0..<RevisionLayout.seriesCapacity {
                defer { series += RevisionLayout.seriesStride }
                let key = SeriesKey(raw: cellLoad(series + RevisionLayout.key))
                guard key.raw != 0 else { continue }
                // The overflow series is reserved in every block: shown only once something overflowed into it.
                if key.isOverflow && cellLoad(series + RevisionLayout.count) == 0 { continue }
                let tagID = key.tagID
                let tag = key.isOverflow ? "other" : tagID == 0 ? "" : tagID <= block.tags.count ? block.tags[tagID - 1] : "other"
                let untagged = SeriesKey(raw: key.raw & ~(UInt64(0x7) << 17))
                let at: Int
                if let found = out.firstIndex(where: { $0.key == untagged && $0.tag == tag }) {
                    at = found
                } else {
                    at = out.count
                    out.append(Series(key: untagged, tag: tag, istio: [UInt64](repeating: 0, count: istioCells + 3)))
                }
                out[at].count &+= cellLoad(series + RevisionLayout.count)
                for i in 0..<istioCells { out[at].istio[i] &+= cellLoad(series + RevisionLayout.istioDuration + i) }
                out[at].istio[istioCells] &+= cellLoad(series + RevisionLayout.istioDurationSumNs)
                out[at].istio[istioCells + 1] &+= cellLoad(series + RevisionLayout.istioRequestBytesSum)
                out[at].istio[istioCells + 2] &+= cellLoad(series + RevisionLayout.istioResponseBytesSum)
            }
        }
        return out
    }

    /// Sums a histogram (sum, then buckets) over a group's blocks into `scratch`.
    private mutating func sum(_ group: Group, at offset: Int, cells: Int) {
        for i in 0..<cells { scratch[i] = 0 }
        scratch.withUnsafeMutableBufferPointer { total in
            for block in group.blocks {
                let base = block.cells + offset
                for i in 0..<cells { total[i] &+= cellLoad(base + i) }
            }
        }
    }

    // MARK: Writing

    mutating func write(into out: inout MetricsExposition, istio: Bool, tls: Bool, openConnections: Int) {
        writeRequests(&out)
        writeHistogram(&out, "sluice_request_duration_seconds", "Time from the first request byte to the last response byte.",
                       offset: RevisionLayout.duration, latency: true)
        writeHistogram(&out, "sluice_request_time_to_first_byte_seconds", "Time from the first request byte to the pod's response head.",
                       offset: RevisionLayout.firstByte, latency: true)
        writeHistogram(&out, "sluice_upstream_duration_seconds", "Time from the pod's connection being ready for the request to its response head (the pod's own time).",
                       offset: RevisionLayout.upstream, latency: true)
        writeHistogram(&out, "sluice_request_body_bytes", "Request body bytes relayed to the pod.",
                       offset: RevisionLayout.requestSize, latency: false)
        writeHistogram(&out, "sluice_response_body_bytes", "Response body bytes relayed to the client.",
                       offset: RevisionLayout.responseSize, latency: false)
        writeMirrors(&out)
        writeWorkerFamilies(&out, tls: tls, openConnections: openConnections)
        writeEndpoints(&out)
        if istio { writeIstio(&out) }
    }

    private func writeRequests(_ out: inout MetricsExposition) {
        out.family("sluice_requests", .counter, help: "Requests finished, by revision, tag, status code, client protocol and gRPC status.")
        for group in groups {
            var merged: [(key: UInt64, tag: String, count: UInt64)] = []
            for series in group.series {
                let identity = series.key.sluiceIdentity
                if let at = merged.firstIndex(where: { $0.key == identity && $0.tag == series.tag }) {
                    merged[at].count &+= series.count
                } else {
                    merged.append((identity, series.tag, series.count))
                }
            }
            for entry in merged {
                let key = SeriesKey(raw: entry.key)
                var labels = group.labels
                labels.append("tag", entry.tag)
                if key.isOverflow || entry.key == WorkerMetrics.overflowKey {
                    labels.append("code", "other")
                    labels.append("protocol", "other")
                    labels.append("grpc_status", "other")
                } else {
                    labels.append("code", String(key.status))
                    labels.append("protocol", Self.protocolName(key.protocolCode))
                    labels.append("grpc_status", key.grpcStatus >= 0 ? String(key.grpcStatus) : "")
                }
                out.counter(labels, entry.count)
            }
        }
    }

    static func protocolName(_ code: UInt8) -> String {
        switch RequestRecord.ClientProtocol(rawValue: code) {
        case .http11?: "http/1.1"
        case .h2?: "h2"
        case .grpc?: "grpc"
        case nil: "other"
        }
    }

    /// A histogram per revision. Latency histograms have hundreds of buckets: a revision shows each bucket ever hit
    /// and the one below it (so `histogram_quantile` interpolates inside every hit bucket exactly as with all of
    /// them), plus `+Inf`. Counts never go down, so that set only grows: a bucket once shown stays.
    private mutating func writeHistogram(_ out: inout MetricsExposition, _ name: String, _ help: String, offset: Int, latency: Bool) {
        out.family(name, .histogram, help: help)
        let cells = latency ? RevisionLayout.latencyStride : RevisionLayout.sizeStride
        let texts = latency ? MetricsBuckets.latencyBoundTexts : MetricsBuckets.sizeBoundTexts
        // The requests that reached no revision show only once there are some.
        for group in groups where group.first.id >= 0 || !group.series.isEmpty {
            writeHistogramSeries(&out, group, offset: offset, cells: cells, texts: texts, latency: latency)
        }
    }

    /// One group's series of a histogram family: its hit buckets (and those just above them), `+Inf`, sum and count.
    private mutating func writeHistogramSeries(_ out: inout MetricsExposition, _ group: Group, offset: Int, cells: Int,
                                               texts: [[UInt8]], latency: Bool) {
        let boundCount = cells - 2
        sum(group, at: offset, cells: cells)
        var cumulative: UInt64 = 0
        for i in 0..<boundCount {
            let here = scratch[1 + i]
            cumulative &+= here
            if here > 0 || scratch[2 + i] > 0 { out.histogramBucket(group.labels, le: texts[i], cumulative) }
        }
        cumulative &+= scratch[1 + boundCount]
        let sum = latency ? Double(scratch[0]) / 1e9 : Double(scratch[0])
        out.histogramEnd(group.labels, count: cumulative, sum: sum)
    }

    /// A group's mirror result counts, summed over its blocks.
    private func mirrorCounts(_ group: Group) -> [UInt64] {
        var counts = [UInt64](repeating: 0, count: MirrorResult.allCases.count)
        for block in group.blocks {
            for result in MirrorResult.allCases {
                counts[Int(result.rawValue)] &+= cellLoad(block.cells + RevisionLayout.mirrorResults + Int(result.rawValue))
            }
        }
        return counts
    }

    /// Mirrored requests by target revision and result, and the duration of those that reached the pod: only
    /// revisions some mirror was meant for, so a gateway without mirrors shows the families empty.
    private mutating func writeMirrors(_ out: inout MetricsExposition) {
        out.family("sluice_mirror_requests", .counter, help: "Mirrored (shadow) requests by target revision and result: ok (a non-5xx answer), failed (5xx, reset, refused), timeout, dropped_full (over the in-flight bound or the revision's concurrency), dropped_body (a body larger than the copy bound, or never completed).")
        var mirrored: [Int] = []
        for (index, group) in groups.enumerated() where group.first.id >= 0 {
            let counts = mirrorCounts(group)
            guard counts.contains(where: { $0 > 0 }) else { continue }
            mirrored.append(index)
            for result in MirrorResult.allCases {
                var labels = group.labels
                labels.append("result", result.name)
                out.counter(labels, counts[Int(result.rawValue)])
            }
        }
        out.family("sluice_mirror_request_duration_seconds", .histogram, help: "Time from a mirrored request being sent to its whole response, of mirrors that reached the pod.")
        for index in mirrored {
            writeHistogramSeries(&out, groups[index], offset: RevisionLayout.mirrorDuration, cells: RevisionLayout.latencyStride,
                                 texts: MetricsBuckets.latencyBoundTexts, latency: true)
        }
    }

    private func workerSum(_ offset: Int) -> UInt64 {
        workerCells.reduce(0) { $0 &+ cellLoad($1 + offset) }
    }

    private func workerGauge(_ offset: Int) -> Int {
        Int(Int64(bitPattern: workerSum(offset)))
    }

    /// `openConnections`: the workers' open client connections (their handles count them); HTTP/1.1 ones are
    /// those neither negotiating nor HTTP/2.
    private func writeWorkerFamilies(_ out: inout MetricsExposition, tls: Bool, openConnections all: Int) {
        out.family("sluice_gateway_answers", .counter, help: "Responses the gateway made itself, by reason and status code.")
        for answer in GatewayAnswer.allCases {
            for (slot, status) in WorkerLayout.answerStatuses.enumerated() {
                let n = workerSum(WorkerLayout.answers + Int(answer.rawValue) * WorkerLayout.answerStatusCount + slot)
                guard n > 0 else { continue }
                out.counter(MetricLabels([("reason", Self.reasonName(answer)), ("code", status == 0 ? "other" : String(status))]), n)
            }
        }
        let tlsText = tls ? "true" : "false"
        out.family("sluice_downstream_connections_accepted", .counter, help: "Client connections accepted.")
        out.counter(MetricLabels([("tls", tlsText)]), workerSum(WorkerLayout.accepted))
        out.family("sluice_downstream_connections", .counter, help: "Client connections that got to a protocol (ALPN or the first bytes).")
        out.counter(MetricLabels([("protocol", "http/1.1"), ("tls", tlsText)]), workerSum(WorkerLayout.handedOverHTTP1))
        out.counter(MetricLabels([("protocol", "h2"), ("tls", tlsText)]), workerSum(WorkerLayout.handedOverH2))
        out.family("sluice_downstream_connections_open", .gauge, help: "Client connections open now; negotiating: TLS handshake or first bytes still to come.")
        let negotiating = workerGauge(WorkerLayout.negotiating)
        let h2 = workerGauge(WorkerLayout.openH2)
        out.gauge(MetricLabels([("protocol", "http/1.1"), ("tls", tlsText)]), max(0, all - negotiating - h2))
        out.gauge(MetricLabels([("protocol", "h2"), ("tls", tlsText)]), h2)
        out.gauge(MetricLabels([("protocol", "negotiating"), ("tls", tlsText)]), negotiating)
        if tls {
            out.family("sluice_tls_handshakes", .counter, help: "TLS handshakes with clients: full, resumed (session ticket), failed.")
            out.counter(MetricLabels([("result", "full")]), workerSum(WorkerLayout.tlsFull))
            out.counter(MetricLabels([("result", "resumed")]), workerSum(WorkerLayout.tlsResumed))
            out.counter(MetricLabels([("result", "failed")]), workerSum(WorkerLayout.tlsFailed))
        }
        out.family("sluice_http2_streams", .counter, help: "HTTP/2 streams opened by clients.")
        out.counter(MetricLabels(), workerSum(WorkerLayout.h2Streams))
        out.family("sluice_http2_resets", .counter, help: "HTTP/2 client streams that ended in RST_STREAM (sent or received), by error code.")
        for code in 0..<WorkerLayout.h2ResetCodes {
            let n = workerSum(WorkerLayout.h2Resets + code)
            if n > 0 { out.counter(MetricLabels([("error_code", Self.h2ErrorName(code))]), n) }
        }
        out.family("sluice_http2_goaways_sent", .counter, help: "GOAWAY frames sent to clients: graceful (drain, idle) or for a connection error.")
        out.counter(MetricLabels([("reason", "graceful")]), workerSum(WorkerLayout.h2GoAwayGraceful))
        out.counter(MetricLabels([("reason", "error")]), workerSum(WorkerLayout.h2GoAwayError))
    }

    private func writeEndpoints(_ out: inout MetricsExposition) {
        func total(_ cells: [UnsafeMutablePointer<UInt64>], _ offset: Int) -> UInt64 {
            cells.reduce(0) { $0 &+ cellLoad($1 + offset) }
        }
        func gauge(_ cells: [UnsafeMutablePointer<UInt64>], _ offset: Int) -> Int {
            Int(Int64(bitPattern: total(cells, offset)))
        }
        out.family("sluice_upstream_connects", .counter, help: "Connections opened (attempted) to each endpoint.")
        for e in endpoints { out.counter(MetricLabels([("endpoint", e.endpoint)]), total(e.cells, EndpointLayout.connects)) }
        out.family("sluice_upstream_connect_failures", .counter, help: "Connection attempts to each endpoint that failed or timed out.")
        for e in endpoints { out.counter(MetricLabels([("endpoint", e.endpoint)]), total(e.cells, EndpointLayout.connectFailures)) }
        out.family("sluice_upstream_connections", .gauge, help: "Connections to each endpoint: idle in the pool, or busy.")
        for e in endpoints {
            out.gauge(MetricLabels([("endpoint", e.endpoint), ("state", "idle")]), gauge(e.cells, EndpointLayout.idle))
            out.gauge(MetricLabels([("endpoint", e.endpoint), ("state", "busy")]), gauge(e.cells, EndpointLayout.busy))
        }
        out.family("sluice_upstream_outstanding_requests", .gauge, help: "Requests sent to each endpoint and not answered yet.")
        for e in endpoints { out.gauge(MetricLabels([("endpoint", e.endpoint)]), gauge(e.cells, EndpointLayout.outstanding)) }
        // Outlier ejection and concurrency slots: every endpoint of the routes, from its shared health.
        let now = Posix.nowMilliseconds()
        let health = EndpointHealth.all.sorted { "\($0.endpoint)" < "\($1.endpoint)" }
        out.family("sluice_endpoint_ejected", .gauge, help: "1 while passive outlier detection has the endpoint ejected.")
        for slot in health { out.gauge(MetricLabels([("endpoint", "\(slot.endpoint)")]), slot.isEjected(nowMs: now) ? 1 : 0) }
        out.family("sluice_endpoint_ejections", .counter, help: "Outlier ejections of each endpoint, by reason.")
        for slot in health {
            out.counter(MetricLabels([("endpoint", "\(slot.endpoint)"), ("reason", "consecutive_gateway_failures")]),
                        slot.ejectionsForGatewayFailures.load(ordering: .relaxed))
            out.counter(MetricLabels([("endpoint", "\(slot.endpoint)"), ("reason", "consecutive_5xx")]), slot.ejectionsFor5xx.load(ordering: .relaxed))
        }
        out.family("sluice_endpoint_concurrency_slots_in_use", .gauge, help: "Requests holding one of the endpoint's containerConcurrency slots.")
        for slot in health { out.gauge(MetricLabels([("endpoint", "\(slot.endpoint)")]), slot.slotsInUse) }
    }

    private func writeIstio(_ out: inout MetricsExposition) {
        // Each group's Istio series merged by what Istio's labels show (not the tag nor the outcome).
        var perGroup: [(labels: [MetricLabels], series: [Series])] = []
        perGroup.reserveCapacity(groups.count)
        for group in groups {
            let base = IstioLabels.destination(group.first)
            var merged: [Series] = []
            for series in group.series {
                let identity = SeriesKey(raw: series.key.istioIdentity)
                if let at = merged.firstIndex(where: { $0.key == identity }) {
                    merged[at].count &+= series.count
                    for i in merged[at].istio.indices { merged[at].istio[i] &+= series.istio[i] }
                } else {
                    merged.append(Series(key: identity, tag: "", count: series.count, istio: series.istio))
                }
            }
            let labels = merged.map { MetricLabels(base + IstioLabels.request($0.key)) }
            perGroup.append((labels, merged))
        }
        let n = RevisionLayout.istioBuckets
        out.family("istio_requests", .counter, help: "Requests, with Istio's standard labels (reporter=destination).")
        for (labels, series) in perGroup {
            for (l, s) in zip(labels, series) { out.counter(l, s.count) }
        }
        let histograms: [(String, String, Int, Double)] = [
            ("istio_request_duration_milliseconds", "Request duration in milliseconds, with Istio's standard labels.", 0, 1e-6),
            ("istio_request_bytes", "Request body sizes, with Istio's standard labels.", 1, 1),
            ("istio_response_bytes", "Response body sizes, with Istio's standard labels.", 2, 1),
        ]
        for (name, help, which, scale) in histograms {
            out.family(name, .histogram, help: help)
            for (labels, series) in perGroup {
                for (l, s) in zip(labels, series) {
                    var cumulative: UInt64 = 0
                    for i in 0..<(n - 1) {
                        cumulative &+= s.istio[which * n + i]
                        out.histogramBucket(l, le: MetricsBuckets.istioBoundTexts[i], cumulative)
                    }
                    cumulative &+= s.istio[which * n + n - 1]
                    out.histogramEnd(l, count: cumulative, sum: Double(s.istio[3 * n + which]) * scale)
                }
            }
        }
    }

    static func reasonName(_ answer: GatewayAnswer) -> String {
        switch answer {
        case .noRoute: "no_route"
        case .noRevision: "no_revision"
        case .noEndpoint: "no_ready_endpoint"
        case .noGRPCEndpoint: "no_grpc_endpoint"
        case .upstreamConnectFailed: "upstream_connect_failed"
        case .upstreamConnectTimeout: "upstream_connect_timeout"
        case .upstreamTimeout: "upstream_timeout"
        case .upstreamInvalid: "upstream_invalid_response"
        case .upstreamClosed: "upstream_closed"
        case .payloadTooLarge: "body_too_large"
        case .requestTimeout: "request_timeout"
        case .headTooLarge: "head_too_large"
        case .malformedRequest: "malformed_request"
        case .methodNotSupported: "method_not_supported"
        case .queueFull: "queue_full"
        case .queueTimeout: "queue_timeout"
        }
    }

    static func h2ErrorName(_ code: Int) -> String {
        let names = ["no_error", "protocol_error", "internal_error", "flow_control_error", "settings_timeout",
                     "stream_closed", "frame_size_error", "refused_stream", "cancel", "compression_error",
                     "connect_error", "enhance_your_calm", "inadequate_security", "http_1_1_required"]
        return code < names.count ? names[code] : "other"
    }

    // MARK: sluice top

    mutating func revisionStats() -> [RevisionStats] {
        var out: [RevisionStats] = []
        let bounds = MetricsBuckets.latencyBoundSeconds + [Double.infinity]
        for group in groups where group.first.id >= 0 {
            var requests: UInt64 = 0, failed: UInt64 = 0
            for series in group.series {
                requests &+= series.count
                if series.key.isFailure { failed &+= series.count }
            }
            sum(group, at: RevisionLayout.duration, cells: RevisionLayout.latencyStride)
            var cumulative: UInt64 = 0
            var counts: [UInt64] = []
            counts.reserveCapacity(bounds.count)
            for i in 0..<bounds.count {
                cumulative &+= scratch[1 + i]
                counts.append(cumulative)
            }
            let block = group.first
            out.append(RevisionStats(namespace: block.namespace, service: block.service, revision: block.revision,
                                     requests: requests, failed: failed, durationBounds: bounds,
                                     durationCumulativeCounts: counts))
            let mirrors = mirrorCounts(group)
            let reached = MirrorResult.allCases.filter(\.wasSent).reduce(UInt64(0)) { $0 &+ mirrors[Int($1.rawValue)] }
            guard reached > 0 else { continue }
            sum(group, at: RevisionLayout.mirrorDuration, cells: RevisionLayout.latencyStride)
            cumulative = 0
            counts.removeAll(keepingCapacity: true)
            for i in 0..<bounds.count {
                cumulative &+= scratch[1 + i]
                counts.append(cumulative)
            }
            out.append(RevisionStats(namespace: block.namespace, service: block.service, revision: block.revision,
                                     requests: reached, failed: reached &- mirrors[Int(MirrorResult.ok.rawValue)],
                                     durationBounds: bounds, durationCumulativeCounts: counts, shadow: true))
        }
        return out
    }
}
