// Control layer: `sluice top` — each revision's share, requests per second, success rate and p50/p99 over the last
// minute, from differences of the gateway's own counters sampled every few seconds.
import Foundation
import SluiceProxy
import Synchronization

/// One revision's running totals, as the data plane's metrics hold them (summed over workers).
public struct RevisionCounts: Sendable, Equatable {
    public var namespace: String
    public var service: String
    public var revision: String
    public var requests: UInt64
    /// Requests that failed: 5xx, a gateway answer, an abort, or a gRPC status other than OK.
    public var failed: UInt64
    /// Upper bounds in seconds of the duration histogram's buckets, and the cumulative count at each (+Inf is
    /// `requests`). The same bounds in every sample of a revision.
    public var bucketBounds: [Double]
    public var cumulativeCounts: [UInt64]

    public init(namespace: String, service: String, revision: String, requests: UInt64, failed: UInt64,
                bucketBounds: [Double], cumulativeCounts: [UInt64]) {
        self.namespace = namespace
        self.service = service
        self.revision = revision
        self.requests = requests
        self.failed = failed
        self.bucketBounds = bucketBounds
        self.cumulativeCounts = cumulativeCounts
    }
}

extension RevisionCounts {
    /// The data plane's totals of a revision (its last bucket, +Inf, is `requests` and is left implicit here).
    public init(_ stats: RevisionStats) {
        var bounds = stats.durationBounds
        var cumulative = stats.durationCumulativeCounts
        if bounds.last == .infinity {
            bounds.removeLast()
            cumulative.removeLast()
        }
        self.init(namespace: stats.namespace, service: stats.service, revision: stats.revision, requests: stats.requests,
                  failed: stats.failed, bucketBounds: bounds, cumulativeCounts: cumulative)
    }
}

/// What `sluice top` prints for one revision over the window.
public struct RevisionTopRow: Sendable, Equatable {
    public var namespace: String
    public var service: String
    public var revision: String
    /// The revision's part of its service's requests in the window, 0...1 (nil: the service had none).
    public var share: Double?
    public var requestsPerSecond: Double
    /// 0...1; nil without requests in the window.
    public var successRate: Double?
    /// Seconds, read from the histogram as Prometheus' histogram_quantile does; nil without requests.
    public var p50: Double?
    public var p99: Double?
    public var requests: UInt64
    /// The window the figures cover, in seconds (up to a minute; less just after the start).
    public var windowSeconds: Double
}

extension RevisionTopRow {
    /// The difference between two samples of the same revision, over `seconds`.
    static func between(_ old: RevisionCounts?, _ new: RevisionCounts, seconds: Double) -> RevisionTopRow {
        let requests = new.requests &- (old?.requests ?? 0)
        let failed = new.failed &- (old?.failed ?? 0)
        var buckets = new.cumulativeCounts
        if let old, old.bucketBounds == new.bucketBounds {
            for i in buckets.indices { buckets[i] &-= old.cumulativeCounts[i] }
        }
        return RevisionTopRow(
            namespace: new.namespace, service: new.service, revision: new.revision, share: nil,
            requestsPerSecond: seconds > 0 ? Double(requests) / seconds : 0,
            successRate: requests > 0 ? 1 - Double(failed) / Double(requests) : nil,
            p50: quantile(0.5, bounds: new.bucketBounds, cumulative: buckets, total: requests),
            p99: quantile(0.99, bounds: new.bucketBounds, cumulative: buckets, total: requests),
            requests: requests, windowSeconds: seconds)
    }

    /// Prometheus' histogram_quantile: the bucket holding rank q·total, linearly interpolated inside it (from 0 for
    /// the first bucket); a rank in the +Inf bucket answers the highest finite bound.
    static func quantile(_ q: Double, bounds: [Double], cumulative: [UInt64], total: UInt64) -> Double? {
        guard total > 0 else { return nil }
        let rank = q * Double(total)
        var lowerBound = 0.0
        var below: UInt64 = 0
        for (bound, count) in zip(bounds, cumulative) {
            if Double(count) >= rank {
                let inBucket = Double(count - below)
                guard inBucket > 0 else { return bound }
                return lowerBound + (bound - lowerBound) * (rank - Double(below)) / inBucket
            }
            lowerBound = bound
            below = count
        }
        return bounds.last
    }
}

/// Samples the revisions' totals every `interval` and keeps a minute of them, so that `report` can answer for the
/// last minute without the gateway keeping per-minute state on the request path.
public final class TopSampler: Sendable {
    private struct Sample {
        var time: Double
        var counts: [String: RevisionCounts]
    }

    private let read: @Sendable () -> [RevisionCounts]
    private let interval: Double
    private let window: Double
    private let samples: Mutex<[Sample]>
    private let running = Atomic<Bool>(false)
    private let clock: @Sendable () -> Double

    /// `read` returns the running totals (the gateway's `revisionStats`); the first sample is taken now, so the
    /// first report covers the time since the start.
    public init(interval: Double = 5, window: Double = 60, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                read: @escaping @Sendable () -> [RevisionCounts]) {
        self.read = read
        self.interval = interval
        self.window = window
        self.clock = clock
        samples = Mutex([Sample(time: clock(), counts: Self.keyed(read()))])
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Thread.detachNewThread { [self] in
            while running.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: interval)
                sample()
            }
        }
    }

    public func stop() { running.store(false, ordering: .releasing) }

    /// Takes a sample now (the sampling thread's step; tests call it to move time on).
    public func sample() {
        let now = clock()
        let counts = Self.keyed(read())
        samples.withLock { samples in
            samples.append(Sample(time: now, counts: counts))
            // Keep the newest sample at least `window` old, as the base of a full window.
            while samples.count > 2, now - samples[1].time >= window { samples.removeFirst() }
        }
    }

    /// The rows of the revisions of `namespace` (and of service `name`, when given), against the oldest sample not
    /// older than the window; sorted by service, then revision name, newest first.
    public func report(namespace: String, name: String?) -> [RevisionTopRow] {
        let now = clock()
        let current = read().filter { $0.namespace == namespace && (name == nil || $0.service == name) }
        let base = samples.withLock { samples in
            samples.first { now - $0.time <= window + interval / 2 } ?? samples.last!
        }
        let seconds = max(now - base.time, 0.001)
        var rows = current.map { RevisionTopRow.between(base.counts[Self.key($0)], $0, seconds: seconds) }
        var byService: [String: UInt64] = [:]
        for row in rows { byService[row.service, default: 0] += row.requests }
        for i in rows.indices {
            let total = byService[rows[i].service] ?? 0
            rows[i].share = total > 0 ? Double(rows[i].requests) / Double(total) : nil
        }
        return rows.sorted { ($0.service, $1.revision) < ($1.service, $0.revision) }
    }

    private static func key(_ c: RevisionCounts) -> String { "\(c.namespace)/\(c.service)/\(c.revision)" }

    private static func keyed(_ counts: [RevisionCounts]) -> [String: RevisionCounts] {
        Dictionary(counts.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
    }
}
