// Unit: the /metrics text writer against the Prometheus 0.0.4 and OpenMetrics 1.0 rules, content negotiation, and
// the histogram buckets (their 5 % width, Istio's bounds among them, the bucket search).
@testable import SluiceProxy
import XCTest

final class MetricsExpositionTests: XCTestCase {
    private func text(_ format: MetricsExposition.Format, _ write: (inout MetricsExposition) -> Void) -> String {
        var out = MetricsExposition(format: format, reservingCapacity: 8)
        write(&out)
        return String(decoding: out.finish(), as: UTF8.self)
    }

    func testCounterFamilyNamesFollowEachFormat() {
        let write: (inout MetricsExposition) -> Void = { out in
            out.family("sluice_requests", .counter, help: "Requests.")
            out.counter(MetricLabels(["code": "200"]), 3)
        }
        XCTAssertEqual(text(.prometheus, write), """
            # HELP sluice_requests_total Requests.
            # TYPE sluice_requests_total counter
            sluice_requests_total{code="200"} 3

            """)
        XCTAssertEqual(text(.openMetrics, write), """
            # HELP sluice_requests Requests.
            # TYPE sluice_requests counter
            sluice_requests_total{code="200"} 3
            # EOF

            """)
    }

    func testLabelValuesAndHelpAreEscapedAsEachFormatRequires() throws {
        let write: (inout MetricsExposition) -> Void = { out in
            out.family("odd", .gauge, help: "a \\ b \"q\"\nnext")
            out.gauge(MetricLabels(["v": "x\\y\"z\nw"]), -2)
        }
        let prom = text(.prometheus, write)
        XCTAssertTrue(prom.hasPrefix("# HELP odd a \\\\ b \"q\"\\nnext\n"), prom)
        XCTAssertTrue(prom.contains("odd{v=\"x\\\\y\\\"z\\nw\"} -2\n"), prom)
        // OpenMetrics' HELP is an escaped string: the quote is escaped too.
        let om = text(.openMetrics, write)
        XCTAssertTrue(om.hasPrefix("# HELP odd a \\\\ b \\\"q\\\"\\nnext\n"), om)
        let parsed = try MetricsText(Array(om.utf8), format: .openMetrics)
        XCTAssertEqual(parsed.samples.first?.labels["v"], "x\\y\"z\nw")
        XCTAssertNoThrow(try MetricsText(Array(prom.utf8), format: .prometheus))
    }

    func testHistogramLinesAndNumbers() throws {
        let t = text(.prometheus) { out in
            out.family("d_seconds", .histogram, help: "D.")
            out.histogram(MetricLabels(["r": "a"]), upperBounds: [Array("0.5".utf8), Array("1".utf8)],
                          cumulativeCounts: [1, 3], count: 4, sum: 2.25)
            out.family("g", .gauge, help: "G.")
            out.gauge(MetricLabels(), Double.infinity)
            out.gauge(MetricLabels(["k": "nan"]), Double.nan)
            out.gauge(MetricLabels(["k": "big"]), 1e20)
            out.gauge(MetricLabels(["k": "int"]), 12.0)
        }
        XCTAssertEqual(t, """
            # HELP d_seconds D.
            # TYPE d_seconds histogram
            d_seconds_bucket{r="a",le="0.5"} 1
            d_seconds_bucket{r="a",le="1"} 3
            d_seconds_bucket{r="a",le="+Inf"} 4
            d_seconds_sum{r="a"} 2.25
            d_seconds_count{r="a"} 4
            # HELP g G.
            # TYPE g gauge
            g +Inf
            g{k="nan"} NaN
            g{k="big"} 1e+20
            g{k="int"} 12

            """)
        XCTAssertNoThrow(try MetricsText(Array(t.utf8), format: .prometheus))
    }

    func testABigScrapeIsWrittenWholeAcrossBufferGrowth() {
        var expected = "# HELP c_total C.\n# TYPE c_total counter\n"
        var out = MetricsExposition(format: .prometheus, reservingCapacity: 16)
        out.family("c", .counter, help: "C.")
        for i in 0..<20_000 {
            let labels = MetricLabels(["i": String(i)])
            out.counter(labels, UInt64(i) * 1_000_003)
            expected += "c_total{i=\"\(i)\"} \(UInt64(i) * 1_000_003)\n"
        }
        out.counter(MetricLabels(), .max)
        expected += "c_total \(UInt64.max)\n"
        XCTAssertEqual(String(decoding: out.finish(), as: UTF8.self), expected)
    }

    func testAStreamedScrapeHandsTheSameBytesToItsSinkInChunks() {
        final class Chunks { var all: [UInt8] = []; var calls = 0 }
        let chunks = Chunks()
        var streamed = MetricsExposition(format: .openMetrics, chunkBytes: 4096) { chunks.all += $0; chunks.calls += 1 }
        var whole = MetricsExposition(format: .openMetrics)
        for out in [0, 1] {
            func write(_ e: inout MetricsExposition) {
                e.family("c", .counter, help: "C.")
                for i in 0..<5_000 { e.counter(MetricLabels(["i": String(i)]), UInt64(i)) }
            }
            if out == 0 { write(&streamed) } else { write(&whole) }
        }
        streamed.finishWithoutCopy()
        let expected = whole.finish()
        XCTAssertEqual(chunks.all, expected)
        XCTAssertGreaterThan(chunks.calls, 10, "handed over in chunks, not at the end")
        XCTAssertEqual(streamed.count, expected.count)
    }

    func testNegotiationFollowsAcceptAndItsWeights() {
        // What Prometheus 2.x and 3.x send by default.
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), .openMetrics)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: nil), .prometheus)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "text/plain"), .prometheus)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "application/openmetrics-text; q=0"), .prometheus)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "application/openmetrics-text;q=0.0"), .prometheus)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "text/plain;q=1, application/openmetrics-text;q=0.5"), .prometheus)
        XCTAssertEqual(MetricsExposition.Format.negotiate(accept: "Application/OpenMetrics-Text"), .openMetrics)
    }

    func testLatencyBucketsAreAtMostFivePercentWideFrom50MicrosecondsTo600Seconds() {
        let bounds = MetricsBuckets.latencyBounds.map(\.ns)
        XCTAssertEqual(bounds.first, 50_000)
        XCTAssertEqual(bounds.last, 600_000_000_000)
        for (low, high) in zip(bounds, bounds.dropFirst()) {
            XCTAssertGreaterThan(high, low)
            XCTAssertLessThanOrEqual(Double(high) / Double(low), 1.05 + 1e-12, "\(low)…\(high)")
        }
        XCTAssertEqual(MetricsBuckets.latency.bucketCount, RevisionLayout.latencyBuckets)
        XCTAssertEqual(MetricsBuckets.size.bucketCount, RevisionLayout.sizeBuckets)
        // Every Istio/Envoy default bound up to 600 s is a latency bound, so Istio's buckets are sums of ours.
        for ms in MetricsBuckets.istioBoundValues where ms <= 600_000 {
            XCTAssertTrue(bounds.contains(UInt64(ms * 1_000_000)), "\(ms) ms")
        }
        XCTAssertEqual(MetricsBuckets.latencyBoundTexts.first.map { String(decoding: $0, as: UTF8.self) }, "0.00005")
        XCTAssertEqual(MetricsBuckets.latencyBoundTexts.last.map { String(decoding: $0, as: UTF8.self) }, "600")
        for (text, seconds) in zip(MetricsBuckets.latencyBoundTexts, MetricsBuckets.latencyBoundSeconds) {
            XCTAssertEqual(Double(String(decoding: text, as: UTF8.self)), seconds)
        }
    }

    func testBucketSearchPutsAValueInTheFirstBucketWhoseBoundIsAtLeastIt() {
        let search = MetricsBuckets.latency
        let bounds = MetricsBuckets.latencyBounds.map(\.ns)
        var values: [UInt64] = [0, 1, .max, 600_000_000_001]
        for b in bounds { values += [b - 1, b, b + 1] }
        for v in values {
            let expected = bounds.firstIndex { $0 >= v } ?? bounds.count
            XCTAssertEqual(search.index(of: v), expected, "\(v)")
        }
        XCTAssertEqual(MetricsBuckets.size.index(of: 0), 0)
        XCTAssertEqual(MetricsBuckets.size.index(of: 3), 3, "0, 1, 2, (5)")
        XCTAssertEqual(MetricsBuckets.istioBytes.index(of: 0), 0, "an empty body is at most 0.5 bytes")
        XCTAssertEqual(MetricsBuckets.istioBytes.index(of: 1), 1)
        XCTAssertEqual(MetricsBuckets.istioBytes.index(of: 4_000_000_000), 19)
        // The Istio bucket of each latency bucket.
        XCTAssertEqual(Int(MetricsBuckets.istioIndexOfLatencyBucket[search.index(of: 400_000)]), 0)
        XCTAssertEqual(Int(MetricsBuckets.istioIndexOfLatencyBucket[search.index(of: 500_000)]), 0)
        XCTAssertEqual(Int(MetricsBuckets.istioIndexOfLatencyBucket[search.index(of: 500_001)]), 1)
        XCTAssertEqual(Int(MetricsBuckets.istioIndexOfLatencyBucket[search.index(of: 24_000_000)]), 4, "≤ 25 ms")
    }

    func testDecimalTextIsExact() {
        XCTAssertEqual(MetricsBuckets.decimalText(mantissa: 500, exponent: -7), "0.00005")
        XCTAssertEqual(MetricsBuckets.decimalText(mantissa: 105, exponent: -2), "1.05")
        XCTAssertEqual(MetricsBuckets.decimalText(mantissa: 975, exponent: -3), "0.975")
        XCTAssertEqual(MetricsBuckets.decimalText(mantissa: 600, exponent: 0), "600")
        XCTAssertEqual(MetricsBuckets.decimalText(mantissa: 250, exponent: 1), "2500")
    }
}
