// Proxy layer: the bucket bounds of every data-plane histogram, their `le` texts, and the branch-free bucket search
// a request's observation costs.

/// Sorted upper bounds padded with `UInt64.max` to a power of two, searched without branches: `index(of:)` is the
/// number of bounds below the value, i.e. the bucket whose `le` is the first bound ≥ the value (`le` is inclusive),
/// and `boundCount` (the overflow bucket, `+Inf` only) for a value above every bound.
struct BucketSearch: @unchecked Sendable {
    /// Never freed: one allocation per kind of histogram for the life of the process (shared by every worker).
    let bounds: UnsafeMutablePointer<UInt64>
    let paddedCount: Int
    let boundCount: Int

    init(_ sorted: [UInt64]) {
        var padded = 1
        while padded < sorted.count + 1 { padded <<= 1 }
        bounds = .allocate(capacity: padded)
        bounds.initialize(repeating: .max, count: padded)
        for (i, b) in sorted.enumerated() { bounds[i] = b }
        paddedCount = padded
        boundCount = sorted.count
    }

    /// Buckets including the overflow one.
    var bucketCount: Int { boundCount + 1 }

    @inline(__always) func index(of value: UInt64) -> Int {
        var i = 0
        var step = paddedCount &>> 1
        while step > 0 {
            // Compiles to a compare and a conditional move: log2(paddedCount) steps, no unpredictable branch.
            i = bounds[i &+ step &- 1] < value ? i &+ step : i
            step &>>= 1
        }
        return i
    }
}

enum MetricsBuckets {
    /// Request latencies (duration, time to first byte, upstream time) in nanoseconds: log-linear from 50 µs to
    /// 600 s, each decade in steps of 1.00–2.00 by 0.05, 2.0–5.0 by 0.1, 5.0–10 by 0.25, so no bucket is wider than
    /// 5 % of its lower bound and a quantile read by `histogram_quantile` (linear inside a bucket) is within 5 %.
    /// Every Envoy/Istio default bound up to 600 s (0.5 ms, 1, 5, 10, 25, … 300 000 ms) is one of these bounds.
    /// Each bound is `mantissa × 10^exponent` ns exactly (integers), so its text is exact too.
    static let latencyBounds: [(ns: UInt64, mantissa: Int, exponent: Int)] = {
        var out: [(UInt64, Int, Int)] = []
        // Mantissas in hundredths: 100…195, 200…490, 500…975.
        var mantissas: [Int] = []
        mantissas += stride(from: 100, to: 200, by: 5)
        mantissas += stride(from: 200, to: 500, by: 10)
        mantissas += stride(from: 500, to: 1000, by: 25)
        // Seconds = m/100 × 10^e, ns = m × 10^(e+7).
        for e in -5...2 {
            for m in mantissas {
                var ns: UInt64 = UInt64(m)
                for _ in 0..<(e + 7) { ns *= 10 }
                if ns < 50_000 { continue }
                if ns > 600_000_000_000 { break }
                out.append((ns, m, e - 2))
            }
        }
        return out
    }()

    static let latency = BucketSearch(latencyBounds.map(\.ns))
    /// `le` texts in seconds (`0.00005`, `0.0105`, `1`, `600`).
    static let latencyBoundTexts: [[UInt8]] = latencyBounds.map { Array(decimalText(mantissa: $0.mantissa, exponent: $0.exponent).utf8) }
    static let latencyBoundSeconds: [Double] = latencyBounds.map { Double($0.ns) / 1e9 }

    /// Request and response body sizes in bytes: 0, then 1-2-5 steps up to 5 GB.
    static let sizeBoundValues: [UInt64] = {
        var out: [UInt64] = [0]
        var scale: UInt64 = 1
        for _ in 0..<10 {
            out += [scale, 2 * scale, 5 * scale]
            scale *= 10
        }
        return out
    }()

    static let size = BucketSearch(sizeBoundValues)
    static let sizeBoundTexts: [[UInt8]] = sizeBoundValues.map { Array(String($0).utf8) }

    /// Envoy's default histogram bounds, which Istio's standard metrics use for durations (ms) and body sizes
    /// (bytes) alike (Istio sets no others unless `sidecar.istio.io/statsHistogramBuckets` asks).
    static let istioBoundValues: [Double] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                             60000, 300000, 600000, 1800000, 3600000]
    /// As Envoy's Prometheus output writes them (`%g`: `1.8e+06`), so queries that name a bound keep matching.
    static let istioBoundTexts: [[UInt8]] = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
                                             "10000", "30000", "60000", "300000", "600000", "1.8e+06", "3.6e+06"].map { Array($0.utf8) }
    /// The Istio bounds for whole bytes: `le="0.5"` holds the empty bodies.
    static let istioBytes = BucketSearch(istioBoundValues.map { UInt64($0.rounded(.down)) })

    /// The Istio duration bucket of each latency bucket: exact, since every Istio bound below 600 s is a latency
    /// bound (asserted by the tests); the latency overflow bucket (> 600 s) is split by `istioDurationIndex`.
    nonisolated(unsafe) static let istioIndexOfLatencyBucket: UnsafeMutablePointer<UInt8> = {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: latency.bucketCount)
        let istioNs = istioBoundValues.map { UInt64($0 * 1_000_000) }
        for i in 0..<latency.bucketCount {
            let upper = i < latency.boundCount ? latencyBounds[i].ns : UInt64.max
            table[i] = UInt8(istioNs.firstIndex { $0 >= upper } ?? istioNs.count)
        }
        return table
    }()

    static let istioOverflowSplitNs: (UInt64, UInt64) = (1_800_000_000_000, 3_600_000_000_000)

    /// `mantissa × 10^exponent` as a plain decimal without float error (`5, -5` → `0.00005`; `105, -2` → `1.05`).
    static func decimalText(mantissa: Int, exponent: Int) -> String {
        var m = mantissa
        var e = exponent
        while m % 10 == 0 && m > 0 { m /= 10; e += 1 }
        let digits = String(m)
        if e >= 0 { return digits + String(repeating: "0", count: e) }
        let point = digits.count + e
        if point > 0 {
            return String(digits.prefix(point)) + "." + String(digits.dropFirst(point))
        }
        return "0." + String(repeating: "0", count: -point) + digits
    }
}
