// Allocation test: the traced request path costs the worker no malloc — a continued `traceparent` with
// `tracestate`, `traceresponse` back, every request sampled and queued for OTLP export (AllocationTests measures the
// untraced default; same meter, same release-build rule: `make test-alloc`).
import CMallocCounter
import SluiceBlockingHTTP
import SluiceControl
import SluiceDemo
import SluiceProxy
import XCTest

final class TracingAllocationTests: XCTestCase {
    func testATracedSampledExportedRequestCostsTheWorkerNoMalloc() throws {
        try XCTSkipUnless(malloc_counter_available() == 1, "malloc is owned by the sanitizer runtime in this build")
        try XCTSkipIf(AllocationTests.isDebugBuild, "allocation counts are asserted on the optimised build: make test-alloc")
        let pod = try BlockingServer(port: 0, handler: predictorHandler(modelName: "sklearn-iris", version: .v1, revision: rev1))
        pod.start()
        defer { pod.stop() }
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let settings = GatewayFixture.settings(workers: 1) {
            $0.tracing.sampleRate = 1
            $0.tracing.responseHeader = true
            $0.tracing.otlpEndpoint = receiver.endpoint
        }
        malloc_counter_tag_new_threads(1)
        let made = Result { try Gateway(settings: settings, routes: GatewayFixture.table(split: 0, ports: (pod.port, pod.port))) }
        malloc_counter_tag_new_threads(0)
        let gateway = try made.get()
        defer { gateway.shutdown(graceMs: 2_000) }
        // The exporter's thread is not tagged: it may allocate (JSON, sockets); the worker may not.
        let exporter = try OTLPExporter(gateway: gateway, endpoint: receiver.endpoint, intervalMs: 50)
        exporter.start()
        defer { exporter.stop() }

        let client = try TestClient(port: gateway.port)
        let headers = [("traceparent", TracePropagationTests.traceparent), ("tracestate", TracePropagationTests.tracestate),
                       ("User-Agent", "alloc-test/1")]
        func request() throws -> TestResponse {
            try client.request("POST", "/v1/models/sklearn-iris:predict", host: serviceHost, headers: headers, body: irisBody)
        }
        for _ in 0..<200 { XCTAssertEqual(try request().status, 200) }  // warm up: pools, buffers, caches
        XCTAssertNotNil(try request().header("traceresponse"))

        let n = 1_000
        malloc_counter_start()
        var failures = 0
        for _ in 0..<n where try request().status != 200 { failures += 1 }
        malloc_counter_stop()
        let totals = malloc_counter_read()
        XCTAssertEqual(failures, 0)
        print("tracing allocation test: \(n) requests, worker: \(totals.taggedMallocs) mallocs, \(totals.taggedFrees) frees")
        // The same n / 100 of slack as AllocationTests for work that is not per request.
        XCTAssertLessThanOrEqual(totals.taggedMallocs, UInt64(AllocationTests.workerMallocsPerRequestToday * n + n / 100),
                                 "worker mallocs per traced request: \(Double(totals.taggedMallocs) / Double(n))")
        XCTAssertTrue(SpanExportTests.eventually { exporter.counters.exported + exporter.counters.dropped >= n },
                      "the spans went to the exporter: \(exporter.counters)")
    }
}
