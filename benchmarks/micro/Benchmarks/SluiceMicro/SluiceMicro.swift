// Sluice microbenchmarks: the per-request hot path (head parsing, chunked decoding, host lookup,
// weighted pick). Each must be allocation-free once warm, so every benchmark reports malloc counts
// next to wall time and instructions. One "op" = one inner-loop pass (see `opsPerIteration`);
// with scalingFactor .kilo each measured iteration runs 1,000 ops and the tables show per-op values
// (columns marked `*`).

import Benchmark
import SluiceHTTP1
import SluiceRouting

/// Fixed scaling: 1,000 ops per iteration, at most 200 iterations or 5 s per benchmark, so the
/// whole suite (4 benchmarks, plus warm-up) stays well under a minute on 2 cores.
func makeConfiguration() -> Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: [.wallClock, .instructions, .mallocCountTotal, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 200
    )
}

// MARK: - Inputs

/// A KServe v1 predict request head as a client (e.g. `curl` behind a tracing SDK) sends it.
let predictHead: [UInt8] = Array((
    "POST /v1/models/sklearn-iris:predict HTTP/1.1\r\n"
        + "Host: sklearn-iris.kserve-test.example.com\r\n"
        + "User-Agent: python-requests/2.32.3\r\n"
        + "Accept: application/json\r\n"
        + "Content-Type: application/json\r\n"
        + "Content-Length: 76\r\n"
        + "X-Request-Id: 5f1c2a9e-7d43-4b8e-9a61-0c2f3e4d5b6a\r\n"
        + "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
        + "\r\n"
).utf8)

/// 16 KiB of body in 16 chunks of 1 KiB (`400` hex), then the last-chunk and an empty trailer section.
let chunkedBody: [UInt8] = {
    var bytes: [UInt8] = []
    let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 1024)
    for _ in 0..<16 {
        bytes += Array("400\r\n".utf8)
        bytes += payload
        bytes += Array("\r\n".utf8)
    }
    bytes += Array("0\r\n\r\n".utf8)
    return bytes
}()

/// Host header values as they arrive: mixed case, with a port. Top-level host, tag host, unknown.
let lookupHosts: [[UInt8]] = [
    "SkLearn-Iris.KServe-Test.Example.COM:8080",
    "Latest-SKLearn-Iris-Predictor-Default.kserve-test.EXAMPLE.com:8080",
    "No-Such-Model.KServe-Test.Example.com:8080",
].map { Array($0.utf8) }

/// The sklearn-iris service (90 % prev / 10 % latest canary, tag routing on) plus 49 generated ones.
func makeRouteTable() -> RouteTable {
    var services: [ServiceSpec] = [
        ServiceSpec(
            name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
            revisions: [
                RevisionSpec(name: "sklearn-iris-predictor-default-00001",
                             endpoints: [Endpoint(host: "10.0.0.11", port: 8080), Endpoint(host: "10.0.0.12", port: 8080)]),
                RevisionSpec(name: "sklearn-iris-predictor-default-00002",
                             endpoints: [Endpoint(host: "10.0.0.21", port: 8080)]),
            ],
            traffic: [
                TrafficTargetSpec(revisionName: "sklearn-iris-predictor-default-00001", percent: 90, tag: "prev"),
                TrafficTargetSpec(revisionName: "sklearn-iris-predictor-default-00002", percent: 10, tag: "latest",
                                  latestRevision: true),
            ])
    ]
    for i in 0..<49 {
        let name = "model-\(i)"
        let revision = "\(name)-predictor-default-00001"
        services.append(ServiceSpec(
            name: name, namespace: i % 2 == 0 ? "kserve-test" : "team-\(i % 5)", tagRouting: i % 3 == 0,
            revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "10.1.\(i).1", port: 8080)])],
            traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, tag: "latest", latestRevision: true)]))
    }
    do {
        return try RouteTable(services: services, rules: HostRules())
    } catch {
        fatalError("route table: \(error)")
    }
}

// MARK: - Benchmarks

let benchmarks: @Sendable () -> Void = {
    let configuration = makeConfiguration()
    let table = makeRouteTable()
    precondition(table.services.count == 50)
    // Check the lookup inputs once, outside any measurement: hit, tag hit, miss.
    precondition(table.match(host: String(decoding: lookupHosts[0], as: UTF8.self))?.tag == nil)
    precondition(table.match(host: String(decoding: lookupHosts[1], as: UTF8.self))?.tag?.tag == "latest")
    precondition(table.match(host: String(decoding: lookupHosts[2], as: UTF8.self)) == nil)

    // 1. One op = parse a complete request head, then reset for the next request.
    Benchmark("parse request head", configuration: configuration) { benchmark in
        var parser = RequestParser(limits: HTTP1Limits())  // reserves header capacity up front
        predictHead.withUnsafeBytes { buffer in
            precondition(parser.parse(buffer) == .complete && parser.head.headers.count == 7)
            parser.reset()
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let status = parser.parse(buffer)
                blackHole(status == .complete)
                blackHole(parser.head.headLength)
                parser.reset()
            }
            benchmark.stopMeasurement()
        }
    }

    // 2. One op = decode the whole 16 KiB chunked body (16 × 1 KiB chunks), as one contiguous read.
    Benchmark("chunked decode", configuration: configuration) { benchmark in
        var decoder = ChunkedDecoder()
        chunkedBody.withUnsafeBytes { buffer in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                var offset = 0
                var bodyBytes = 0
                decoding: while true {
                    let (consumed, step) = decoder.next(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
                    offset += consumed
                    switch step {
                    case .data(let span): bodyBytes += span.count
                    case .end: break decoding
                    case .needMore, .failed: fatalError("chunked decode: \(step)")
                    }
                }
                precondition(bodyBytes == 16 * 1024 && offset == buffer.count)
                blackHole(bodyBytes)
                decoder.reset()
            }
            benchmark.stopMeasurement()
        }
    }

    // 3. One op = three lookups in a 50-service table: the top-level host, a tag host, an unknown host
    //    (mixed case, `:8080`). Divide by 3 for the cost of one lookup.
    Benchmark("host lookup", configuration: configuration) { benchmark in
        let hosts = lookupHosts
        let h0 = hosts[0], h1 = hosts[1], h2 = hosts[2]
        h0.withUnsafeBytes { b0 in
            h1.withUnsafeBytes { b1 in
                h2.withUnsafeBytes { b2 in
                    benchmark.startMeasurement()
                    for _ in benchmark.scaledIterations {
                        blackHole(table.match(host: b0))
                        blackHole(table.match(host: b1))
                        blackHole(table.match(host: b2))
                    }
                    benchmark.stopMeasurement()
                }
            }
        }
    }

    // 4. One op = one weighted pick on the 90/10 split with a fresh wyrand draw.
    Benchmark("weighted pick", configuration: configuration) { benchmark in
        let service = table.services[0]
        var random = FastRandom(seed: 0x5eed)
        var canary = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            if service.pick(random.next()) == 1 { canary += 1 }
        }
        benchmark.stopMeasurement()
        blackHole(canary)
    }

    // Control: one heap allocation per op, to show the malloc counter is live (expect exactly 1).
    // Without it a broken interposer would also read 0 and the four results above would prove nothing.
    Benchmark("control: 1 malloc per op", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            let block = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
            blackHole(block)
            block.deallocate()
        }
    }
}
