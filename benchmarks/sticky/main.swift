// Sticky-key microbenchmark: what a sticky service adds to one request on the worker — reading the key from the
// request's parsed fields and hashing it (Worker.stickyDraw's loop, copied here over the same types), and the pick
// that takes the hash. Time per op and mallocs per op (the CMallocCounter interposer); speed is reported, not asserted.
import CMallocCounter
import Glibc
import SluiceHTTP1
import SluiceRouting

/// A KServe v1 predict head as micro's `parse request head` uses, with the key's field last (the worst place).
func head(_ keyLine: String) -> [UInt8] {
    Array(("POST /v1/models/sklearn-iris:predict HTTP/1.1\r\n"
        + "Host: sklearn-iris.kserve-test.example.com\r\n"
        + "User-Agent: python-requests/2.32.3\r\n"
        + "Accept: application/json\r\n"
        + "Content-Type: application/json\r\n"
        + "Content-Length: 76\r\n"
        + "X-Request-Id: 5f1c2a9e-7d43-4b8e-9a61-0c2f3e4d5b6a\r\n"
        + "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
        + keyLine
        + "\r\n").utf8)
}

func service(_ key: StickyKey) -> ServiceRoute {
    let previous = "sklearn-iris-predictor-default-00001", latest = "sklearn-iris-predictor-default-00002"
    let spec = ServiceSpec(
        name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
        revisions: [RevisionSpec(name: previous, endpoints: [Endpoint(host: "10.0.0.11", port: 8080)]),
                    RevisionSpec(name: latest, endpoints: [Endpoint(host: "10.0.0.21", port: 8080)])],
        traffic: [TrafficTargetSpec(revisionName: latest, percent: 10, tag: "latest", latestRevision: true),
                  TrafficTargetSpec(revisionName: previous, percent: 90, tag: "prev")],
        stickyKey: key)
    do { return try RouteTable(services: [spec], rules: HostRules()).services[0] } catch { fatalError("\(error)") }
}

/// Worker.stickyDraw (Sources/SluiceProxy/Worker+Routing.swift), line for line.
@inline(__always)
func stickyDraw(_ service: ServiceRoute, fields: [HeaderField], fieldBytes: UnsafeRawPointer?) -> UInt64? {
    guard let sticky = service.sticky, let fieldBytes else { return nil }
    for field in fields {
        switch sticky.read(name: UnsafeRawBufferPointer(start: fieldBytes + field.name.start, count: field.name.count),
                           value: UnsafeRawBufferPointer(start: fieldBytes + field.value.start, count: field.value.count)) {
        case .other: continue
        case .empty: return nil
        case .key(let key): return StickyKey.hash(key, seed: sticky.seed)
        }
    }
    return nil
}

func oneDecimal(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

@inline(never) func consume(_ value: Int) { if value == Int.min { print("") } }

func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `sticky-bench [OPS [ROUNDS [CASE]]]`: fewer ops and one case (0, 1, 2) for a run under callgrind (instructions per
/// op by the difference of two runs).
let ops = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 2_000_000 : 2_000_000
let rounds = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 7 : 7
let cases: [(String, StickyKey, String, Bool)] = [
    ("header key (36-byte UUID, 9th field)", .header("x-user-id"), "X-User-Id: 7d43a9e1-5f1c-4b8e-9a61-0c2f3e4d5b6a\r\n", true),
    ("cookie key (3rd of 4 cookies)", .cookie("session"), "Cookie: theme=dark; xsession=1; session=\"7d43a9e1-5f1c-4b8e\"; lang=en\r\n", true),
    ("no key in the request (all 9 fields read)", .header("x-user-id"), "Accept-Language: en\r\n", false),
]
print("sticky key: \(ops) ops per round, \(rounds) rounds; ns per op (min / median of rounds), mallocs per op")
let only = CommandLine.arguments.count > 3 ? Int(CommandLine.arguments[3]) : nil
for (number, (name, key, line, hasKey)) in cases.enumerated() where only == nil || only == number {
    let route = service(key)
    var parser = RequestParser(limits: HTTP1Limits())
    let bytes = head(line)
    bytes.withUnsafeBytes { buffer in
        precondition(parser.parse(buffer) == .complete)
        let fields = parser.head.headers
        let base = buffer.baseAddress
        precondition((stickyDraw(route, fields: fields, fieldBytes: base) != nil) == hasKey)
        for (label, withPick) in [("draw", false), ("draw + pick", true)] {
            var times: [Double] = []
            var mallocs: UInt64 = 0
            for _ in 0..<rounds {
                var sum = 0
                malloc_counter_start()
                let start = nowNs()
                for _ in 0..<ops {
                    let draw = stickyDraw(route, fields: fields, fieldBytes: base)
                    if withPick {
                        sum &+= route.pick(draw ?? 0x9e37_79b9_7f4a_7c15) ?? 0
                    } else {
                        sum &+= Int(truncatingIfNeeded: draw ?? 1)
                    }
                }
                let end = nowNs()
                malloc_counter_stop()
                mallocs += malloc_counter_read().processMallocs
                consume(sum)
                times.append(Double(end - start) / Double(ops))
            }
            times.sort()
            print("  \(name), \(label): \(oneDecimal(times[0])) ns min, \(oneDecimal(times[rounds / 2])) ns median, "
                  + "\(Double(mallocs) / Double(ops * rounds)) mallocs per op")
        }
    }
}
// The control: one malloc per op must read 1, or the zeros above prove nothing.
malloc_counter_start()
malloc_counter_control(1_000)
malloc_counter_stop()
print("  control: \(malloc_counter_read().processMallocs) mallocs for 1000 allocations")
