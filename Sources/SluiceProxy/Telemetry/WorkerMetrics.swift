// Proxy layer: one worker's metrics — the recorder its thread writes at each finished request, connection and
// route-table swap (no lock, no allocation, no atomic read-modify-write), and the view of it a scrape reads.
import SluiceRouting
import Synchronization

/// A revision's block as a scrape sees it: who it is and where its cells are.
struct RevisionMetricsBlock: @unchecked Sendable {
    /// `Revision.metricsID`; -1 for the worker's block of requests that reached no revision.
    let id: Int
    let namespace: String
    let service: String
    let revision: String
    /// `<name><componentSuffix>`: the KServe component (`sklearn-iris-predictor`), Istio's destination service.
    let component: String
    /// The names of tag ids 1…: a series' tag label.
    let tags: [String]
    let cells: UnsafeMutablePointer<UInt64>
}

struct EndpointMetricsBlock: @unchecked Sendable {
    let endpoint: String
    let cells: UnsafeMutablePointer<UInt64>
}

/// The thread-safe side of a worker's metrics (in its WorkerHandle): the cells' memory and the lists of blocks,
/// republished under a lock at each route-table swap (never per request). Blocks are only ever added.
final class WorkerMetricsView: Sendable {
    let arena = CellArena()
    nonisolated(unsafe) let workerCells: UnsafeMutablePointer<UInt64>
    let unrouted: RevisionMetricsBlock
    let revisions = Mutex<[RevisionMetricsBlock]>([])
    let endpoints = Mutex<[EndpointMetricsBlock]>([])

    init() {
        workerCells = arena.allocate(WorkerLayout.cells)
        unrouted = RevisionMetricsBlock(id: -1, namespace: "unknown", service: "unknown", revision: "unknown",
                                        component: "unknown", tags: [], cells: arena.allocate(RevisionLayout.cells))
        WorkerMetrics.claimOverflowSeries(unrouted.cells)
    }
}

/// The worker's recorder: everything here runs on the worker's thread.
final class WorkerMetrics {
    let view: WorkerMetricsView
    let workerCells: UnsafeMutablePointer<UInt64>
    /// Copies of the shared bucket tables, so the request path reads instance fields, not lazily made globals.
    private let latency = MetricsBuckets.latency
    private let size = MetricsBuckets.size
    private let istioBytes = MetricsBuckets.istioBytes
    private let istioOfLatency = MetricsBuckets.istioIndexOfLatencyBucket
    /// Istio's families too (`metrics.istio`): their per-series histograms are written only then.
    private var istio = true
    /// Cells by `Revision.metricsID` (nil: not a revision of this worker's tables); grown at install only.
    private var cellsByID: [UnsafeMutablePointer<UInt64>?] = []
    /// Tag names by metricsID (tag id = index + 1), for the rare tagged request.
    private var tagsByID: [[String]] = []
    private var blocks: [RevisionMetricsBlock] = []
    private var blockIndexByID: [Int: Int] = [:]
    private var endpointCells: [Endpoint: UnsafeMutablePointer<UInt64>] = [:]
    private var endpointBlocks: [EndpointMetricsBlock] = []
    private let unrouted: UnsafeMutablePointer<UInt64>

    init(view: WorkerMetricsView) {
        precondition(RevisionLayout.latencyBuckets == MetricsBuckets.latency.bucketCount
                     && RevisionLayout.sizeBuckets == MetricsBuckets.size.bucketCount
                     && RevisionLayout.istioBuckets == MetricsBuckets.istioBoundValues.count + 1
                     && WorkerLayout.answerStatusCount == WorkerLayout.answerStatuses.count
                     && GatewayAnswer.allCases.count == 16, "metrics layout out of step with its buckets")
        self.view = view
        workerCells = view.workerCells
        unrouted = view.unrouted.cells
    }

    // MARK: Route-table swap

    /// Finds or makes the block of every revision of `routes`, records the tags that route to each, and publishes
    /// the list for scrapes. Counts of a revision carry on across swaps: its block is found by its identity.
    func install(_ routes: RouteTable, settings: MetricsSettings) {
        istio = settings.istio
        var changed = false
        let suffix = routes.rules.componentSuffix
        for service in routes.services {
            for (index, revision) in service.revisions.enumerated() {
                let id = revision.metricsID
                if id >= cellsByID.count {
                    cellsByID.append(contentsOf: repeatElement(nil, count: id + 1 - cellsByID.count))
                    tagsByID.append(contentsOf: repeatElement([], count: id + 1 - tagsByID.count))
                }
                let tags = service.tags.filter { $0.revisionIndex == index }.map(\.tag)
                if let cells = cellsByID[id] {
                    let newTags = tags.filter { !tagsByID[id].contains($0) }
                    guard !newTags.isEmpty, let at = blockIndexByID[id] else { continue }
                    // Tag ids are kept (series keys hold them); at most 7 names, later ones count as `other`.
                    tagsByID[id] = Array((tagsByID[id] + newTags).prefix(Self.maxTags))
                    let old = blocks[at]
                    blocks[at] = RevisionMetricsBlock(id: id, namespace: old.namespace, service: old.service,
                                                      revision: old.revision, component: old.component,
                                                      tags: tagsByID[id], cells: cells)
                    changed = true
                } else {
                    let cells = view.arena.allocate(RevisionLayout.cells)
                    Self.claimOverflowSeries(cells)
                    cellsByID[id] = cells
                    tagsByID[id] = Array(tags.prefix(Self.maxTags))
                    blockIndexByID[id] = blocks.count
                    blocks.append(RevisionMetricsBlock(id: id, namespace: revision.namespace,
                                                       service: revision.serviceName, revision: revision.name,
                                                       component: revision.serviceName + suffix,
                                                       tags: tagsByID[id], cells: cells))
                    changed = true
                }
            }
        }
        if changed {
            let snapshot = blocks
            view.revisions.withLock { $0 = snapshot }
        }
        let endpoints = endpointBlocks
        view.endpoints.withLock { $0 = endpoints }
    }

    /// The cells of an endpoint on this worker, made at its pool's creation (a route-table swap), kept for good so
    /// that a pod that leaves and comes back keeps counting up.
    func cells(of endpoint: Endpoint) -> UnsafeMutablePointer<UInt64> {
        if let cells = endpointCells[endpoint] { return cells }
        let cells = view.arena.allocate(EndpointLayout.cells)
        endpointCells[endpoint] = cells
        endpointBlocks.append(EndpointMetricsBlock(endpoint: endpoint.description, cells: cells))
        return cells
    }

    static let maxTags = 7
    /// The series key of the overflow series (never a real key: those have bit 63 set).
    static let overflowKey: UInt64 = 1 << 62

    static func claimOverflowSeries(_ cells: UnsafeMutablePointer<UInt64>) {
        cellStore(cells + (RevisionLayout.seriesCapacity - 1) * RevisionLayout.seriesStride + RevisionLayout.key, overflowKey)
    }

    // MARK: The request path

    /// One finished request, under its record's revision (a routing refusal after the pick — no ready endpoint, a
    /// connect that failed at once — has it too), or the unrouted block.
    @inline(__always)
    func record(_ record: inout RequestRecord) {
        var cells = unrouted
        var tagID: UInt64 = 0
        // The revision's number read in place (no copy of the reference: that would retain one per request).
        var id = -1
        if let revision = record.revision {
            id = revision.metricsID
        }
        if id >= 0 {
            if id < cellsByID.count, let found = cellsByID[id] { cells = found }
            if record.tag != nil { tagID = self.tagID(record.tag!, of: id) }
        }
        let status = UInt64(min(max(record.status, 0), 999))
        let grpc = UInt64(min(max(record.grpcStatus + 1, 0), 31))
        let key: UInt64 = 1 << 63 | status | UInt64(record.clientProtocol.rawValue) << 10 | grpc << 12 | tagID << 17
            | UInt64(record.outcome.rawValue) << 20 | UInt64(record.flags.rawValue & 0x3FFF) << 22
        let series = Self.series(key, in: cells)

        let duration = record.durationNs
        let latencyIndex = latency.index(of: duration)
        cellAdd(series + RevisionLayout.count)
        cellAdd(cells + RevisionLayout.duration, duration)
        cellAdd(cells + RevisionLayout.duration + 1 + latencyIndex)
        let first = record.firstResponseByteNs
        if first >= record.startNs && record.startNs > 0 {
            let ttfb = first - record.startNs
            cellAdd(cells + RevisionLayout.firstByte, ttfb)
            cellAdd(cells + RevisionLayout.firstByte + 1 + latency.index(of: ttfb))
            let connected = record.upstreamConnectedNs
            if connected > 0 && first >= connected {
                let upstream = first - connected
                cellAdd(cells + RevisionLayout.upstream, upstream)
                cellAdd(cells + RevisionLayout.upstream + 1 + latency.index(of: upstream))
            }
        }
        let requestBytes = UInt64(max(record.requestBodyBytes, 0))
        let responseBytes = UInt64(max(record.responseBodyBytes, 0))
        cellAdd(cells + RevisionLayout.requestSize, requestBytes)
        cellAdd(cells + RevisionLayout.requestSize + 1 + size.index(of: requestBytes))
        cellAdd(cells + RevisionLayout.responseSize, responseBytes)
        cellAdd(cells + RevisionLayout.responseSize + 1 + size.index(of: responseBytes))

        if istio {
            var istioIndex = Int(istioOfLatency[latencyIndex])
            if latencyIndex == RevisionLayout.latencyBuckets - 1 {
                istioIndex = duration <= 1_800_000_000_000 ? 17 : duration <= 3_600_000_000_000 ? 18 : 19
            }
            cellAdd(series + RevisionLayout.istioDurationSumNs, duration)
            cellAdd(series + RevisionLayout.istioDuration + istioIndex)
            cellAdd(series + RevisionLayout.istioRequestBytesSum, requestBytes)
            cellAdd(series + RevisionLayout.istioRequestBytes + istioBytes.index(of: requestBytes))
            cellAdd(series + RevisionLayout.istioResponseBytesSum, responseBytes)
            cellAdd(series + RevisionLayout.istioResponseBytes + istioBytes.index(of: responseBytes))
        }

        if let answer = record.gatewayAnswer {
            let slot = Int(answer.rawValue) * WorkerLayout.answerStatusCount + WorkerLayout.answerSlot(status: record.status)
            cellAdd(workerCells + WorkerLayout.answers + slot)
        }
    }

    /// The series of `key`: a free one is claimed (its key stored before its counts move, so a scrape that sees
    /// counts sees the key); when all are taken, the overflow series.
    @inline(__always)
    static func series(_ key: UInt64, in cells: UnsafeMutablePointer<UInt64>) -> UnsafeMutablePointer<UInt64> {
        var series = cells
        for _ in 0..<(RevisionLayout.seriesCapacity - 1) {
            let existing = series.pointee  // the worker is this cell's only writer: a plain read is race-free
            if existing == key { return series }
            if existing == 0 {
                cellStore(series, key)
                return series
            }
            series += RevisionLayout.seriesStride
        }
        return series
    }

    private func tagID(_ tag: String, of id: Int) -> UInt64 {
        let names = tagsByID[id]
        for i in names.indices where names[i] == tag { return UInt64(i + 1) }
        return 0
    }

    // MARK: Mirrors

    /// One mirrored request's end under its target revision (`metricsID`): its result, and for one that reached
    /// the pod and ended (`durationNs` > 0) its duration. Off the client series: they count client traffic only.
    @inline(__always)
    func recordMirror(revisionID id: Int, result: MirrorResult, durationNs: UInt64) {
        guard id >= 0, id < cellsByID.count, let cells = cellsByID[id] else { return }
        cellAdd(cells + RevisionLayout.mirrorResults + Int(result.rawValue))
        guard result.wasSent else { return }
        cellAdd(cells + RevisionLayout.mirrorDuration, durationNs)
        cellAdd(cells + RevisionLayout.mirrorDuration + 1 + latency.index(of: durationNs))
    }

    // MARK: Connections

    func clientAccepted() {
        cellAdd(workerCells + WorkerLayout.accepted)
        cellAdd(workerCells + WorkerLayout.negotiating)
    }

    /// The connection closed before its protocol was known, or was handed to HTTP/1.1 or HTTP/2.
    func clientNegotiated(h2: Bool?) {
        cellAdd(workerCells + WorkerLayout.negotiating, signed: -1)
        guard let h2 else { return }
        if h2 {
            cellAdd(workerCells + WorkerLayout.handedOverH2)
            cellAdd(workerCells + WorkerLayout.openH2)
        } else {
            cellAdd(workerCells + WorkerLayout.handedOverHTTP1)
        }
    }

    func h2ConnectionClosed() { cellAdd(workerCells + WorkerLayout.openH2, signed: -1) }

    func tlsHandshake(resumed: Bool?) {
        switch resumed {
        case nil: cellAdd(workerCells + WorkerLayout.tlsFailed)
        case true?: cellAdd(workerCells + WorkerLayout.tlsResumed)
        case false?: cellAdd(workerCells + WorkerLayout.tlsFull)
        }
    }

    func h2StreamOpened() { cellAdd(workerCells + WorkerLayout.h2Streams) }

    func h2StreamReset(errorCode: UInt32) {
        cellAdd(workerCells + WorkerLayout.h2Resets + Int(min(errorCode, UInt32(WorkerLayout.h2ResetCodes - 1))))
    }

    func h2GoAwaySent(graceful: Bool) {
        cellAdd(workerCells + (graceful ? WorkerLayout.h2GoAwayGraceful : WorkerLayout.h2GoAwayError))
    }
}
