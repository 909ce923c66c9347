// `sluice top`'s figures: differences of sampled totals over the last minute, quantiles as histogram_quantile reads them.
import Synchronization
import Testing
@testable import SluiceControl

@Suite struct RevisionTopTests {
    static let bounds = [0.01, 0.02, 0.05, 0.1]

    static func counts(_ revision: String, requests: UInt64, failed: UInt64, cumulative: [UInt64]) -> RevisionCounts {
        RevisionCounts(namespace: "ns", service: "svc", revision: revision, requests: requests, failed: failed,
                       bucketBounds: bounds, cumulativeCounts: cumulative)
    }

    @Test func quantilesInterpolateInsideTheirBucketAsPrometheusDoes() {
        // 100 requests: 50 ≤ 10 ms, 40 in (10, 20], 10 in (20, 50].
        let cumulative: [UInt64] = [50, 90, 100, 100]
        // p50: rank 50 → the end of the first bucket; p99: rank 99 in (20, 50] → 20 + 30·(99−90)/10 ms.
        #expect(RevisionTopRow.quantile(0.5, bounds: Self.bounds, cumulative: cumulative, total: 100) == 0.01)
        let p99 = RevisionTopRow.quantile(0.99, bounds: Self.bounds, cumulative: cumulative, total: 100)!
        #expect(abs(p99 - 0.047) < 1e-9)
        // Everything above the last finite bound answers that bound; nothing at all answers nothing.
        #expect(RevisionTopRow.quantile(0.99, bounds: Self.bounds, cumulative: [0, 0, 0, 0], total: 5) == 0.1)
        #expect(RevisionTopRow.quantile(0.5, bounds: Self.bounds, cumulative: [0, 0, 0, 0], total: 0) == nil)
    }

    @Test func reportCoversTheLastMinuteOnly() {
        let now = Mutex<Double>(1000)
        let totals = Mutex<[RevisionCounts]>([])
        let sampler = TopSampler(interval: 5, window: 60, clock: { now.withLock { $0 } }, read: { totals.withLock { $0 } })
        // Before the window: 1 000 requests, all failed — they must not show in the report a minute later.
        totals.withLock { $0 = [Self.counts("a", requests: 1000, failed: 1000, cumulative: [0, 0, 0, 1000])] }
        for step in 1...12 {
            now.withLock { $0 = 1000 + Double(step) * 5 }
            sampler.sample()
        }
        // The last minute: 600 more on a (6 failed, all ≤ 10 ms), and 200 on the new revision b (all in (20, 50]).
        totals.withLock {
            $0 = [Self.counts("a", requests: 1600, failed: 1006, cumulative: [600, 600, 600, 1600]),
                  Self.counts("b", requests: 200, failed: 0, cumulative: [0, 0, 200, 200])]
        }
        now.withLock { $0 = 1060 + 60 }
        sampler.sample()
        let rows = sampler.report(namespace: "ns", name: "svc")
        #expect(rows.map(\.revision) == ["b", "a"])
        let a = rows[1], b = rows[0]
        #expect(a.windowSeconds == 60)
        #expect(a.requests == 600 && b.requests == 200)
        #expect(a.requestsPerSecond == 10)
        #expect(a.successRate == 0.99 && b.successRate == 1)
        #expect(a.share == 0.75 && b.share == 0.25)
        // Rank 594 of 600, all in the first bucket (0, 10 ms]: 9.9 ms.
        #expect(abs(a.p99! - 0.0099) < 1e-9)
        #expect(b.p50! > 0.02 && b.p50! <= 0.05)
        // Another namespace, or another service, is not mixed in.
        #expect(sampler.report(namespace: "other", name: nil).isEmpty)
        #expect(sampler.report(namespace: "ns", name: "nope").isEmpty)
    }
}
