// Proxy layer: where the data plane's counters live — single-writer 64-bit cells in never-freed, zero-filled
// blocks, and the layout of a revision's block, an endpoint's block and a worker's own block.
import CSluice
#if canImport(Glibc)
import Glibc
#endif

/// A cell's owner adds with a relaxed load and store (it is the only writer); a scrape reads with relaxed loads.
@inline(__always) func cellAdd(_ cell: UnsafeMutablePointer<UInt64>, _ delta: UInt64 = 1) { csluice_cell_add(cell, delta) }
@inline(__always) func cellStore(_ cell: UnsafeMutablePointer<UInt64>, _ value: UInt64) { csluice_cell_store(cell, value) }
@inline(__always) func cellLoad(_ cell: UnsafeMutablePointer<UInt64>) -> UInt64 { csluice_cell_load(cell) }
/// A gauge moved by deltas (two pools of one endpoint on one worker may both move it): two's complement.
@inline(__always) func cellAdd(_ cell: UnsafeMutablePointer<UInt64>, signed delta: Int) {
    csluice_cell_add(cell, UInt64(bitPattern: Int64(delta)))
}

/// Zero-filled blocks of cells carved from anonymous mappings: untouched pages cost no memory (a revision's
/// latency histogram touches only the pages of the buckets its requests hit), and blocks are never freed while the
/// arena lives, so a scrape can read any block it was ever shown. The arena goes with its worker's handle.
final class CellArena: @unchecked Sendable {
    private var chunks: [(base: UnsafeMutableRawPointer, bytes: Int)] = []
    private var next: UnsafeMutablePointer<UInt64>?
    private var left = 0
    private let chunkCells = 1 << 17  // 1 MiB per mapping

    /// Cells for one block, zero. Called on the owning worker's thread only, never per request.
    func allocate(_ count: Int) -> UnsafeMutablePointer<UInt64> {
        // Blocks start on a cache line so that two blocks never share one.
        let rounded = (count + 7) & ~7
        if rounded > left {
            let cells = max(chunkCells, rounded)
            let bytes = cells * 8
            guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  base != MAP_FAILED else {
                fatalError("metrics: cannot map \(bytes) bytes of counters")
            }
            chunks.append((base, bytes))
            next = base.bindMemory(to: UInt64.self, capacity: cells)
            left = cells
        }
        let block = next!
        next = block + rounded
        left -= rounded
        return block
    }

    deinit {
        for chunk in chunks { munmap(chunk.base, chunk.bytes) }
    }
}

/// A revision's cells: its series table (counts and Istio's histograms per label set), then its own latency and
/// size histograms.
enum RevisionLayout {
    /// Label sets (code, protocol, gRPC status, tag, outcome, flags) per revision; the last one is the overflow
    /// series, counted with `other` labels once the others are taken.
    static let seriesCapacity = 16
    // One series: its key (0: free), count, then Istio's duration and body-size histograms with their sums.
    static let key = 0
    static let count = 1
    static let istioDurationSumNs = 2
    static let istioRequestBytesSum = 3
    static let istioResponseBytesSum = 4
    static let istioDuration = 5
    // Literal counts (checked against MetricsBuckets when a worker starts), so that the request path reads
    // constants rather than lazily initialised globals.
    static let istioBuckets = 20
    static let latencyBuckets = 496
    static let sizeBuckets = 32
    static let istioRequestBytes = istioDuration + istioBuckets
    static let istioResponseBytes = istioRequestBytes + istioBuckets
    static let seriesStride = istioResponseBytes + istioBuckets

    /// A histogram: its sum, then one (non-cumulative) count per bucket, the overflow bucket last.
    static let latencyStride = 1 + latencyBuckets
    static let sizeStride = 1 + sizeBuckets
    static let duration = seriesCapacity * seriesStride
    static let firstByte = duration + latencyStride
    static let upstream = firstByte + latencyStride
    static let requestSize = upstream + latencyStride
    static let responseSize = requestSize + sizeStride
    /// Mirrored requests sent to this revision (ShadowExchange.swift), apart from its client traffic: one count per
    /// `MirrorResult`, then the mirrors' duration histogram.
    static let mirrorResults = responseSize + sizeStride
    static let mirrorResultCount = 8
    static let mirrorDuration = mirrorResults + mirrorResultCount
    static let cells = mirrorDuration + latencyStride
}

/// An endpoint's cells on one worker.
enum EndpointLayout {
    static let connects = 0
    static let connectFailures = 1
    static let idle = 2
    static let busy = 3
    static let outstanding = 4
    static let cells = 5
}

/// A worker's own cells: gateway-made answers, client connections, TLS handshakes, HTTP/2.
enum WorkerLayout {
    /// The statuses a gateway answer is counted under (the last slot: any other).
    static let answerStatuses = [400, 404, 405, 408, 413, 414, 431, 501, 502, 503, 504, 505, 0]
    static let answers = 0
    static let answerStatusCount = 13
    static let answerCells = 16 * answerStatusCount
    static let accepted = answers + answerCells
    static let handedOverHTTP1 = accepted + 1
    static let handedOverH2 = accepted + 2
    /// Accepted, protocol not known yet (TLS handshake, first bytes): gauge.
    static let negotiating = accepted + 3
    /// HTTP/2 connections open: gauge (HTTP/1.1 ones are the rest of the worker's open connections).
    static let openH2 = accepted + 4
    static let tlsFull = accepted + 5
    static let tlsResumed = accepted + 6
    static let tlsFailed = accepted + 7
    static let h2Streams = accepted + 8
    /// GOAWAY sent: graceful (drain, idle) and for a connection error.
    static let h2GoAwayGraceful = accepted + 9
    static let h2GoAwayError = accepted + 10
    /// RST_STREAM by HTTP/2 error code (0…13, the last slot any other), sent or received.
    static let h2ResetCodes = 15
    static let h2Resets = accepted + 11
    static let cells = h2Resets + h2ResetCodes

    static func answerSlot(status: Int) -> Int {
        answerStatuses.firstIndex(of: status) ?? answerStatuses.count - 1
    }
}
