// Benchmark (skipped unless SLUICE_SCRAPE_BENCH=1; run by benchmarks/scrape.sh on the release build): a scrape of
// 1 000 revisions with traffic on each on every worker, its time and size, and the traffic's p99 with and without
// scrapes going on.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import XCTest

final class MetricsScrapeBenchmark: XCTestCase {
    func testScrapeOfAThousandRevisions() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["SLUICE_SCRAPE_BENCH"] == "1", "benchmark: SLUICE_SCRAPE_BENCH=1 benchmarks/scrape.sh")
        let revisions = Int(ProcessInfo.processInfo.environment["SLUICE_SCRAPE_REVISIONS"] ?? "") ?? 1000
        let workers = Int(ProcessInfo.processInfo.environment["SLUICE_SCRAPE_WORKERS"] ?? "") ?? ProcessInfo.processInfo.activeProcessorCount
        let pod = try BlockingServer(port: 0) { _ in BlockingResponse(status: 200, body: Array(#"{"predictions": [1, 1]}"#.utf8)) }
        pod.start()
        defer { pod.stop() }
        let services = (0..<revisions).map { i in
            let name = "m\(i)"
            let revision = "\(name)-predictor-00001"
            return ServiceSpec(name: name, namespace: "bench", revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: pod.port)])],
                               traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
        }
        let istio = ProcessInfo.processInfo.environment["SLUICE_SCRAPE_ISTIO"] != "0"
        let g = try Gateway(settings: GatewayFixture.settings(workers: workers) { $0.metrics.istio = istio },
                            routes: RouteTable(services: services, rules: HostRules()))
        defer { g.shutdown(graceMs: 2000) }

        let rssBefore = residentBytes()
        // Traffic on every revision from every worker: several connections (spread over the workers' listeners by
        // SO_REUSEPORT), each asking every revision.
        let clients = 2 * workers
        DispatchQueue.concurrentPerform(iterations: clients) { _ in
            guard let c = try? TestClient(port: g.port) else { return }
            for i in 0..<revisions { _ = try? c.request("POST", "/v1/models/m:predict", host: "m\(i).bench.example.com", body: irisBody) }
        }
        // Counted once every request is finished (the strict text parser is too slow for tens of megabytes).
        let deadline = Date().addingTimeInterval(30)
        func counted() -> UInt64 { g.revisionStats().reduce(0) { $0 + $1.requests } }
        while counted() < UInt64(clients * revisions) && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(counted(), UInt64(clients * revisions))
        XCTAssertEqual(g.revisionStats().count, revisions)
        print(String(format: "scrape bench: resident memory grew by %.1f MiB with the traffic (counters touched, test client and pod included)",
                     Double(residentBytes() - rssBefore) / 1048576))

        // One scrape into one buffer, and one streamed in 256 KiB chunks (to a sink that only counts, as a socket
        // write would take them).
        for streamed in [false, true] {
            var times: [Double] = []
            var size = 0
            for _ in 0..<15 {
                let start = DispatchTime.now().uptimeNanoseconds
                var out = streamed ? MetricsExposition(format: .prometheus, chunkBytes: 256 << 10) { _ in }
                                   : MetricsExposition(format: .prometheus, reservingCapacity: 1 << 20)
                g.writeMetrics(into: &out)
                out.finishWithoutCopy()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                size = out.count
            }
            times.sort()
            print(String(format: "scrape bench: %d revisions x %d workers, istio %@, %d bytes, %@: scrape ms median %.1f max %.1f",
                         revisions, workers, istio ? "on" : "off", size, streamed ? "streamed" : "one buffer",
                         times[times.count / 2], times.last!))
        }

        // p99 of the traffic with no scrape, then with a scrape every 250 ms and back to back.
        func trafficP99(scrapeEveryMs: Int?) -> (p50: Double, p99: Double) {
            let stop = ManagedAtomicFlag()
            let scraper = Thread {
                while !stop.isSet {
                    var out = MetricsExposition(format: .prometheus, chunkBytes: 256 << 10) { _ in }
                    g.writeMetrics(into: &out)
                    out.finishWithoutCopy()
                    if let ms = scrapeEveryMs, ms > 0 { usleep(UInt32(ms * 1000)) }
                }
            }
            if scrapeEveryMs != nil { scraper.start() }
            let all = Latencies()
            DispatchQueue.concurrentPerform(iterations: clients) { k in
                guard let c = try? TestClient(port: g.port) else { return }
                var mine: [Double] = []
                for i in 0..<2000 {
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = try? c.request("POST", "/v1/models/m:predict", host: "m\((i * 7 + k) % revisions).bench.example.com", body: irisBody)
                    mine.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e3)
                }
                all.add(mine)
            }
            stop.set()
            let latencies = all.sorted
            return (latencies[latencies.count / 2], latencies[Int(Double(latencies.count) * 0.99)])
        }
        let quiet = trafficP99(scrapeEveryMs: nil)
        let periodic = trafficP99(scrapeEveryMs: 250)
        let busy = trafficP99(scrapeEveryMs: 0)
        print(String(format: "scrape bench: traffic latency us p50/p99: no scrapes %.0f/%.0f, a scrape every 250 ms %.0f/%.0f, scrapes back to back %.0f/%.0f",
                     quiet.p50, quiet.p99, periodic.p50, periodic.p99, busy.p50, busy.p99))
    }
}

/// Latencies gathered from several client threads.
final class Latencies: @unchecked Sendable {  // guarded by its lock
    private let lock = NSLock()
    private var values: [Double] = []
    func add(_ more: [Double]) { lock.withLock { values += more } }
    var sorted: [Double] { lock.withLock { values.sorted() } }
}

/// A flag set once by one thread and read by another.
final class ManagedAtomicFlag: @unchecked Sendable {  // guarded by its lock
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
