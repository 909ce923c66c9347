// Integration and unit: the access log — one line per request in JSON or Envoy's default format, to a file that
// logrotate can rename, filtered and sampled as configured, and never a cost to clients when its sink stalls.
import CMallocCounter
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceDemo
@testable import SluiceProxy
import SluiceRouting
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class AccessLogTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-accesslog-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private let host = "big.ns.example.com"
    private let revision = "big-predictor-default-00001"

    /// A pod: `/slow` tells `atPod` and answers after 300 ms, `/fail` answers 500, the rest 200 with a small body.
    private func pod(atPod: DispatchSemaphore? = nil) throws -> BlockingServer {
        let pod = try BlockingServer(port: 0) { request in
            if request.target.hasPrefix("/slow") {
                atPod?.signal()
                usleep(300_000)
            }
            if request.target.hasPrefix("/fail") { return .json(status: 500, #"{"error":"boom"}"#) }
            return .json(status: 200, #"{"predictions":[1,1]}"#)
        }
        pod.start()
        return pod
    }

    private func gateway(to pod: BlockingServer, path: String? = nil, _ adjust: (inout AccessLogSettings) -> Void = { _ in }) throws -> Gateway {
        let file = path ?? directory.appendingPathComponent("access.log").path
        return try GatewayFixture.gateway(to: pod.port) { s in
            s.accessLog.destination = .file(file)
            adjust(&s.accessLog)
        }
    }

    private func lines(_ path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    /// Waits (bounded) until the file at `path` holds `count` lines.
    private func waitForLines(_ path: String, count: Int, seconds: Double = 10) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        var found = lines(path)
        while found.count < count && Date() < deadline {
            usleep(2_000)
            found = lines(path)
        }
        return found
    }

    private func object(_ line: String, file: StaticString = #filePath, lineNumber: UInt = #line) -> [String: Any] {
        guard let data = line.data(using: .utf8),
              let value = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            XCTFail("not a JSON object: \(line)", file: file, line: lineNumber)
            return [:]
        }
        return value
    }

    // MARK: JSON lines match the requests

    func testJSONLinesMatchTheRequestsOneForOne() throws {
        let atPod = DispatchSemaphore(value: 0)
        let pod = try pod(atPod: atPod)
        defer { pod.stop() }
        let path = directory.appendingPathComponent("access.log").path
        let g = try gateway(to: pod, path: path)
        var shutDown = false
        defer { if !shutDown { g.shutdown(graceMs: 1000) } }

        // HTTP/1.1, proxied.
        let c = try TestClient(port: g.port)
        let ok = try c.request("POST", "/v1/models/big:predict?x=1", host: host, headers: [("User-Agent", "curl/8.5.0")], body: irisBody)
        XCTAssertEqual(ok.status, 200)
        // A gateway answer: no service serves the host.
        let missing = try c.request("GET", "/v1/models/x", host: "nobody.example.com")
        XCTAssertEqual(missing.status, 404)
        // HTTP/2, proxied.
        let h2 = try H2TestClient(port: g.port)
        let stream = h2.request("GET", "/v2/health/ready", authority: host)
        try h2.run { h2.responses[stream]?.isClosed == true }
        XCTAssertEqual(h2.responses[stream]?.status, 200)
        // An abort: the client resets while its request is at the pod.
        let leaving = try connectLoopback(port: g.port)
        _ = "GET /slow HTTP/1.1\r\nHost: \(host)\r\n\r\n".withCString { Glibc.send(leaving, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        XCTAssertEqual(atPod.wait(timeout: .now() + 5), .success, "the pod has the request")
        resetAndClose(leaving)
        XCTAssertEqual(waitForLines(path, count: 4).count, 4, "the abort's line")

        // Shutdown writes every accepted line; what is in the file is then final.
        g.shutdown(graceMs: 1000)
        shutDown = true
        let logged = lines(path)
        XCTAssertEqual(logged.count, 4, "one line per request")
        XCTAssertEqual(g.accessLogStats.linesWritten, 4)
        XCTAssertEqual(g.accessLogStats.linesDropped, 0)
        guard logged.count == 4 else { return }
        let records = logged.map { object($0) }

        let a = records[0]
        XCTAssertEqual(a["method"] as? String, "POST")
        XCTAssertEqual(a["path"] as? String, "/v1/models/big:predict?x=1")
        XCTAssertEqual(a["authority"] as? String, host)
        XCTAssertEqual(a["protocol"] as? String, "http/1.1")
        XCTAssertEqual(a["tls"] as? Bool, false)
        XCTAssertEqual(a["status"] as? Int, 200)
        XCTAssertTrue(a["grpc_status"] is NSNull)
        XCTAssertEqual(a["revision"] as? String, revision)
        XCTAssertEqual(a["endpoint"] as? String, "127.0.0.1:\(pod.port)")
        XCTAssertEqual(a["attempts"] as? Int, 1)
        XCTAssertEqual(a["bytes_received"] as? Int, irisBody.utf8.count)
        XCTAssertEqual(a["bytes_sent"] as? Int, ok.body.count)
        XCTAssertEqual(a["request_id"] as? String, ok.header("X-Request-Id"))
        XCTAssertEqual(a["response_flags"] as? String, "-")
        XCTAssertEqual(a["client_address"] as? String, "127.0.0.1")
        let duration = try XCTUnwrap(a["duration_us"] as? Int)
        let ttfb = try XCTUnwrap(a["ttfb_us"] as? Int)
        let upstream = try XCTUnwrap(a["upstream_us"] as? Int)
        XCTAssertTrue(upstream <= ttfb && ttfb <= duration && duration > 0, "upstream \(upstream) ≤ ttfb \(ttfb) ≤ duration \(duration)")
        // The start time is RFC 3339 UTC with microseconds, on the wall clock.
        let time = try XCTUnwrap(a["start_time"] as? String)
        XCTAssertNotNil(time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"#, options: .regularExpression), time)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let started = try XCTUnwrap(formatter.date(from: time))
        XCTAssertLessThan(abs(started.timeIntervalSinceNow), 60, "start_time \(time) is now")

        let b = records[1]
        XCTAssertEqual(b["status"] as? Int, 404)
        XCTAssertEqual(b["authority"] as? String, "nobody.example.com")
        XCTAssertTrue(b["revision"] is NSNull)
        XCTAssertTrue(b["endpoint"] is NSNull)
        XCTAssertTrue(b["upstream_us"] is NSNull)
        XCTAssertEqual(b["attempts"] as? Int, 0)
        XCTAssertEqual(b["response_flags"] as? String, "NR")
        XCTAssertEqual(b["request_id"] as? String, missing.header("X-Request-Id"))

        let h = records[2]
        XCTAssertEqual(h["protocol"] as? String, "h2")
        XCTAssertEqual(h["method"] as? String, "GET")
        XCTAssertEqual(h["path"] as? String, "/v2/health/ready")
        XCTAssertEqual(h["status"] as? Int, 200)
        XCTAssertEqual(h["revision"] as? String, revision)
        XCTAssertEqual(h["bytes_sent"] as? Int, h2.responses[stream]?.body.count)
        XCTAssertEqual(h["client_address"] as? String, "127.0.0.1")

        let d = records[3]
        XCTAssertEqual(d["path"] as? String, "/slow")
        XCTAssertEqual(d["status"] as? Int, 0, "nothing was sent to the client")
        XCTAssertEqual(d["response_flags"] as? String, "DC")
        XCTAssertEqual(d["revision"] as? String, revision)
    }

    // MARK: Envoy's default format

    /// The example line of Envoy's access log documentation ("Default format string"), rebuilt from a record with
    /// the same values: the same bytes, field by field.
    func testEnvoyLineIsWhatEnvoyPrintsForTheSameRequest() throws {
        var r = RequestRecord()
        r.open(.h2, isTLS: false, now: 1_000_000_000)
        r.noteHead(method: raw("POST"), authority: raw("locations"), path: raw("/api/v1/locations"))
        r.requestId.set(Array("cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2".utf8))
        r.userAgent.set(Array("nsq2http".utf8))
        r.clientAddress.set(Array("10.0.35.28".utf8))
        r.endpoint = Endpoint(host: "10.0.2.1", port: 80)
        r.requestBodyBytes = 154
        r.responseBodyBytes = 0
        r.upstreamConnectedNs = 1_000_000_000 + 20_000_000
        r.firstResponseByteNs = r.upstreamConnectedNs + 100_400_000  // 100.4 ms: Envoy truncates to 100
        r.attempts = 1
        r.close(.completed, status: 204, flags: [], isDraining: false, now: 1_000_000_000 + 226_900_000)
        // 2016-04-15T20:17:00.310Z
        let start: Int64 = 1_460_751_420 * 1_000_000_000 + 310_123_456
        XCTAssertEqual(format(r, .envoy, start),
                       #"[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" "10.0.2.1:80""# + "\n")

        // A gateway answer to a request that has none of the optional values: each prints `-`, the flag is Envoy's.
        var missing = RequestRecord()
        missing.open(.http11, isTLS: false, now: 5_000_000)
        missing.noteHead(method: raw("GET"), authority: raw("nobody.example.com"), path: raw("/x"))
        missing.close(.gatewayAnswered, status: 404, flags: .noRoute, isDraining: false, now: 5_000_000 + 1_999_999)
        XCTAssertEqual(format(missing, .envoy, 0),
                       #"[1970-01-01T00:00:00.000Z] "GET /x HTTP/1.1" 404 NR 0 0 1 - "-" "-" "-" "nobody.example.com" "-""# + "\n")
    }

    /// Through the gateway: the Envoy line of a proxied request has Envoy's fields in Envoy's order.
    func testEnvoyFormatThroughTheGateway() throws {
        let pod = try pod()
        defer { pod.stop() }
        let path = directory.appendingPathComponent("envoy.log").path
        let g = try gateway(to: pod, path: path) { $0.format = .envoy }
        let response = try TestClient(port: g.port).request("GET", "/v1/models/big", host: host, headers: [("User-Agent", "probe/1")])
        XCTAssertEqual(response.status, 200)
        g.shutdown(graceMs: 1000)
        let logged = lines(path)
        XCTAssertEqual(logged.count, 1)
        let id = try XCTUnwrap(response.header("X-Request-Id"))
        let pattern = #"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /v1/models/big HTTP/1\.1" 200 - 0 \#(response.body.count) \d+ \d+ "127\.0\.0\.1" "(-|probe/1)" "\#(id)" "\#(host)" "127\.0\.0\.1:\#(pod.port)"$"#
        XCTAssertNotNil(logged.first?.range(of: pattern, options: .regularExpression), logged.first ?? "no line")
    }

    // MARK: Formatting rules

    func testJSONStringsAreEscapedAndStayValidWhateverTheBytes() throws {
        var r = RequestRecord()
        r.open(.grpc, isTLS: true, now: 1)
        // A quote, a backslash, control bytes, valid multi-byte UTF-8, then bytes that are not UTF-8: a lone
        // continuation byte, an overlong slash, a surrogate, and a sequence cut short at the end.
        let path: [UInt8] = Array(#"/a"b\c"#.utf8) + [0x01, 0x0A, 0x09, 0x1F] + Array("é€😀".utf8) + [0x80, 0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xE2, 0x82]
        path.withUnsafeBytes { p in r.noteHead(method: raw("POST"), authority: raw("h"), path: p) }
        r.close(.completed, status: 200, flags: [], isDraining: false, now: 2)
        r.grpcStatus = 0
        let line = format(r, .json, 0)
        XCTAssertTrue(line.hasSuffix("}\n"))
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1, "one line")
        XCTAssertTrue(line.contains(#"\u0001\n\t\u001f"#), line)
        let o = object(String(line.dropLast()))
        XCTAssertEqual(o["path"] as? String, "/a\"b\\c\u{01}\n\t\u{1F}é€😀\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}")
        XCTAssertEqual(o["protocol"] as? String, "grpc")
        XCTAssertEqual(o["tls"] as? Bool, true)
        XCTAssertEqual(o["grpc_status"] as? Int, 0)
        XCTAssertEqual(o["start_time"] as? String, "1970-01-01T00:00:00.000000Z")
        XCTAssertTrue(o["trace_id"] is NSNull)
        XCTAssertTrue(o["user_agent"] is NSNull)

        // The trace id: 32 lowercase hex digits.
        r.trace.traceId = InlineArray<16, UInt8>(repeating: 0)
        for i in 0..<16 { r.trace.traceId[i] = UInt8(i * 17) }
        XCTAssertEqual(object(String(format(r, .json, 0).dropLast()))["trace_id"] as? String, "00112233445566778899aabbccddeeff")
    }

    /// Escaping skips plain text eight bytes at a time: wherever a byte that needs escaping falls in a word, the
    /// line still parses back to the same text (random mixes of plain runs, quotes, backslashes, controls, UTF-8).
    func testEscapingFindsEverySpecialByteWhereverItFalls() {
        let pieces = ["a", "bcdefghijklmnop", "\"", "\\", "\u{01}", "\u{1F}", "\n", "\t", "\u{7F}", " ", "é", "€", "😀", "~}"]
        var random = FastRandom(seed: 42)
        for _ in 0..<300 {
            var text = ""
            for _ in 0..<Int(random.next() % 9) { text += pieces[Int(random.next() % UInt64(pieces.count))] }
            let bytes = Array(text.utf8)  // at most 8 pieces: within the record's 160 bytes, nothing cut
            var r = RequestRecord()
            r.open(.http11, isTLS: false, now: 1)
            bytes.withUnsafeBytes { p in r.noteHead(method: raw("GET"), authority: raw("h"), path: p) }
            r.close(.completed, status: 200, flags: [], isDraining: false, now: 2)
            let o = object(String(format(r, .json, 0).dropLast()))
            XCTAssertEqual(o["path"] as? String, bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self), "\(bytes)")
        }
    }

    func testTimesAreUTCWithTheirFractions() {
        var r = RequestRecord()
        r.open(.http11, isTLS: false, now: 1)
        r.close(.completed, status: 200, flags: [], isDraining: false, now: 2)
        func time(_ ns: Int64) -> String { object(String(format(r, .json, ns).dropLast()))["start_time"] as? String ?? "" }
        XCTAssertEqual(time(951_782_400 * 1_000_000_000 + 999_999_999), "2000-02-29T00:00:00.999999Z", "a leap day")
        XCTAssertEqual(time(4_102_444_799 * 1_000_000_000 + 1_000), "2099-12-31T23:59:59.000001Z")
        XCTAssertEqual(time(1_796_126_400 * 1_000_000_000), "2026-12-01T12:00:00.000000Z")
        // The cached second is replaced when the second changes, also backwards.
        XCTAssertEqual(time(1_796_126_399 * 1_000_000_000), "2026-12-01T11:59:59.000000Z")
    }

    func testEnvoyResponseFlagsInEnvoysOrder() {
        func flags(_ f: RequestRecord.Flags, status: Int = 502) -> String {
            var r = RequestRecord()
            r.open(.http11, isTLS: false, now: 1)
            r.close(.gatewayAnswered, status: status, flags: f, isDraining: false, now: 2)
            return String(format(r, .envoy, 0).split(separator: " ")[5])
        }
        XCTAssertEqual(flags([]), "-")
        XCTAssertEqual(flags([.upstreamConnectFailure, .upstreamConnectTimeout]), "UF")
        XCTAssertEqual(flags([.downstreamConnectionTermination, .upstreamConnectionTermination]), "UC,DC")
        XCTAssertEqual(flags(.noHealthyUpstream, status: 503), "UH")
        XCTAssertEqual(flags(.upstreamRequestTimeout, status: 504), "UT")
        XCTAssertEqual(flags(.upstreamProtocolError), "UPE")
        XCTAssertEqual(flags(.streamIdleTimeout, status: 200), "SI")
        XCTAssertEqual(flags(.limitExceeded, status: 431), "DPE")
        XCTAssertEqual(flags(.limitExceeded, status: 413), "-")
        XCTAssertEqual(flags(.retried, status: 200), "-")
    }

    // MARK: Reopen

    func testReopenAfterRenameWritesToTheNewFile() throws {
        let pod = try pod()
        defer { pod.stop() }
        let path = directory.appendingPathComponent("access.log").path
        let rotated = path + ".1"
        let g = try gateway(to: pod, path: path)
        defer { g.shutdown(graceMs: 1000) }
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/before", host: host).status, 200)
        XCTAssertEqual(waitForLines(path, count: 1).count, 1)
        // logrotate: rename, then SIGUSR1.
        XCTAssertEqual(rename(path, rotated), 0)
        g.reopenAccessLog()
        XCTAssertEqual(try c.request("GET", "/after", host: host).status, 200)
        let fresh = waitForLines(path, count: 1)
        XCTAssertEqual(fresh.count, 1, "a new file at the path")
        XCTAssertEqual(object(fresh.first ?? "")["path"] as? String, "/after")
        let old = lines(rotated)
        XCTAssertEqual(old.count, 1)
        XCTAssertEqual(object(old.first ?? "")["path"] as? String, "/before")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        XCTAssertEqual(mode.map { $0 & 0o777 }, 0o644 & ~umaskValue(), "created 0644 (less the umask)")
    }

    /// The process's umask, read without changing it (umask(2) would, for every thread).
    private func umaskValue() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Umask:") }
        return line.flatMap { Int($0.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8) } ?? 0o022
    }

    // MARK: Filters

    func testSampleRateZeroLogsNothing() throws {
        let pod = try pod()
        defer { pod.stop() }
        let path = directory.appendingPathComponent("none.log").path
        let g = try gateway(to: pod, path: path) { $0.sampleRate = 0 }
        let c = try TestClient(port: g.port)
        for i in 0..<20 { XCTAssertEqual(try c.request("GET", "/\(i)", host: host).status, 200) }
        XCTAssertEqual(try c.request("GET", "/", host: "nobody.example.com").status, 404)
        g.shutdown(graceMs: 1000)
        XCTAssertEqual(lines(path), [])
        XCTAssertEqual(g.accessLogStats, AccessLogStats())
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "the file is created at start")
    }

    func testErrorsOnlyLogsOnlyTheFailures() throws {
        let pod = try pod()
        defer { pod.stop() }
        let path = directory.appendingPathComponent("errors.log").path
        let g = try gateway(to: pod, path: path) { $0.errorsOnly = true }
        let c = try TestClient(port: g.port)
        for i in 0..<5 { XCTAssertEqual(try c.request("GET", "/ok\(i)", host: host).status, 200) }
        XCTAssertEqual(try c.request("GET", "/fail", host: host).status, 500)
        XCTAssertEqual(try c.request("GET", "/ok5", host: host).status, 200)
        XCTAssertEqual(try c.request("GET", "/missing", host: "nobody.example.com").status, 404)
        g.shutdown(graceMs: 1000)
        let logged = lines(path).map { object($0) }
        XCTAssertEqual(logged.map { $0["path"] as? String }, ["/fail", "/missing"])
        XCTAssertEqual(logged.map { $0["status"] as? Int }, [500, 404])
    }

    func testAPathThatCannotBeOpenedStopsTheStart() throws {
        let pod = try pod()
        defer { pod.stop() }
        XCTAssertThrowsError(try gateway(to: pod, path: directory.appendingPathComponent("no/such/dir/a.log").path)) { error in
            XCTAssertTrue("\(error)".contains("accessLog"), "\(error)")
        }
    }

    // MARK: Reload

    /// SIGHUP: format, sampling and the errors-only filter apply from the next request; a new destination needs a
    /// restart (the reload says so) and the lines keep going where they went.
    func testAReloadChangesTheFormatFromTheNextRequestAndKeepsTheDestination() throws {
        let pod = try pod()
        defer { pod.stop() }
        let first = directory.appendingPathComponent("first.log").path
        let second = directory.appendingPathComponent("second.log").path
        var config = ReloaderTests.config()
        config.services = [ReloaderTests.staticService("big", port: pod.port)]
        config.proxy.accessLog.destination = .file(first)
        let stack = try ReloaderTests.Stack(config)
        let host = "big.kserve-test.example.com"
        let c = try TestClient(port: stack.gateway.port)
        XCTAssertEqual(try c.request("GET", "/json", host: host).status, 200)
        XCTAssertEqual(waitForLines(first, count: 1).count, 1)

        var next = config
        next.proxy.accessLog.destination = .file(second)
        next.proxy.accessLog.format = .envoy
        XCTAssertEqual(try stack.reloader.reload(next), ["accessLog.path"])
        XCTAssertEqual(try c.request("GET", "/envoy", host: host).status, 200)
        let logged = waitForLines(first, count: 2)
        XCTAssertEqual(logged.count, 2)
        XCTAssertTrue(logged.first?.hasPrefix("{") == true, logged.first ?? "")
        XCTAssertTrue(logged.last?.hasPrefix("[") == true && logged.last?.contains(#""GET /envoy HTTP/1.1" 200"#) == true, logged.last ?? "")
        XCTAssertFalse(FileManager.default.fileExists(atPath: second), "the destination changes only at a restart")
    }

    // MARK: A stalled sink

    /// The gateway logs into a pipe that nobody reads: once the pipe and the worker's ring are full, lines are
    /// dropped and counted, and clients see no extra latency — measured against a gateway logging to a file, the
    /// two taking turns request by request so that both see the same machine.
    func testAStalledSinkDropsAndCountsLinesWithoutSlowingClients() throws {
        let pod = try pod()
        defer { pod.stop() }
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        var readEndOpen = true
        defer {
            if readEndOpen { Glibc.close(ends[0]) }
            Glibc.close(ends[1])
        }
        let stalled = try gateway(to: pod, path: "/dev/fd/\(ends[1])")
        let flowing = try gateway(to: pod, path: directory.appendingPathComponent("flowing.log").path)
        defer { flowing.shutdown(graceMs: 1000) }

        // Fill the pipe and the ring (2 MiB): bounded, with several connections to go faster.
        let deadline = Date().addingTimeInterval(60)
        var sent = 0
        let host = self.host
        let port = stalled.port
        while stalled.accessLogStats.linesDropped == 0 && Date() < deadline && sent < 40_000 {
            let queue = DispatchQueue.global()
            let group = DispatchGroup()
            let failures = ManagedAtomicCounter()
            for _ in 0..<4 {
                group.enter()
                queue.async {
                    defer { group.leave() }
                    guard let c = try? TestClient(port: port) else { failures.add(); return }
                    for _ in 0..<250 where (try? c.request("GET", "/fill", host: host).status) != 200 { failures.add() }
                }
            }
            group.wait()
            XCTAssertEqual(failures.value, 0, "every request while filling succeeded")
            sent += 1000
        }
        let droppedBefore = stalled.accessLogStats.linesDropped
        XCTAssertGreaterThan(droppedBefore, 0, "lines were dropped once the sink stalled (after \(sent) requests)")
        // Connected only now: a connection that sends nothing for requestHeader (10 s) is closed, and the fill can take
        // that long on a loaded machine under a sanitizer.
        let toStalled = try TestClient(port: stalled.port)
        let toFlowing = try TestClient(port: flowing.port)

        var stalledLatencies: [Double] = []
        var flowingLatencies: [Double] = []
        for i in 0..<400 {
            for (client, isStalled) in (i % 2 == 0 ? [(toStalled, true), (toFlowing, false)] : [(toFlowing, false), (toStalled, true)]) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let status = try client.request("GET", "/measure", host: host).status
                let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                XCTAssertEqual(status, 200)
                if isStalled { stalledLatencies.append(ms) } else { flowingLatencies.append(ms) }
            }
        }
        func p99(_ xs: [Double]) -> Double { xs.sorted()[Int(Double(xs.count - 1) * 0.99)] }
        let stalledP99 = p99(stalledLatencies)
        let flowingP99 = p99(flowingLatencies)
        print("access log stall: p99 \(stalledP99) ms stalled, \(flowingP99) ms flowing; dropped \(stalled.accessLogStats.linesDropped) after \(sent) fill requests")
        XCTAssertLessThanOrEqual(stalledP99, 2 * flowingP99 + 2, "p99 with a stalled sink \(stalledP99) ms vs \(flowingP99) ms")
        let droppedAfter = stalled.accessLogStats.linesDropped
        XCTAssertGreaterThanOrEqual(droppedAfter - droppedBefore, 350, "the measured requests' lines were dropped while the sink stayed stalled")

        // Nobody will ever read: closing the read end makes the writer's next write fail (EPIPE), so the shutdown
        // does not wait for the flush deadline; everything accepted is then either written or counted as dropped.
        Glibc.close(ends[0])
        readEndOpen = false
        stalled.shutdown(graceMs: 1000)
        let stats = stalled.accessLogStats
        XCTAssertEqual(stats.linesWritten + stats.linesDropped, sent + 400, "every request's line is written or counted")
    }

    // MARK: Cost

    /// With the JSON access log on, a steady-state request still allocates nothing on the gateway's threads — the
    /// worker that formats the line and the writer thread that writes it (both are created by Gateway.init, so both
    /// are counted). Release build only, like AllocationTests: `make test-alloc` with this test in its filter.
    func testSteadyStateRequestsWithTheAccessLogOnAllocateNothingOnTheGatewaysThreads() throws {
        try XCTSkipUnless(malloc_counter_available() == 1, "malloc is owned by the sanitizer runtime in this build")
        try XCTSkipIf(AllocationTests.isDebugBuild, "allocation counts are asserted on the optimised build")
        let pod = try pod()
        defer { pod.stop() }
        let path = directory.appendingPathComponent("alloc.log").path
        let taggedBefore = malloc_counter_tagged_threads()
        malloc_counter_tag_new_threads(1)
        let made = Result { try gateway(to: pod, path: path) }
        malloc_counter_tag_new_threads(0)
        let g = try made.get()
        XCTAssertEqual(malloc_counter_tagged_threads() - taggedBefore, 2, "the worker and the access log writer")
        // The meter is live on those threads: accepting a connection allocates on the worker.
        malloc_counter_start()
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 200)
        malloc_counter_stop()
        XCTAssertGreaterThan(malloc_counter_read().taggedMallocs, 0, "a zero below means zero")
        for _ in 0..<200 { XCTAssertEqual(try c.request("POST", "/v1/models/big:predict", host: host, body: irisBody).status, 200) }
        let n = 1_000
        malloc_counter_start()
        for _ in 0..<n { XCTAssertEqual(try c.request("POST", "/v1/models/big:predict", host: host, body: irisBody).status, 200) }
        // The lines of the measured requests are written inside the window too.
        let deadline = Date().addingTimeInterval(10)
        while g.accessLogStats.linesWritten < 201 + n && Date() < deadline { usleep(1_000) }
        malloc_counter_stop()
        let totals = malloc_counter_read()
        print("access log allocation test: \(n) requests, gateway threads: \(totals.taggedMallocs) mallocs")
        XCTAssertEqual(g.accessLogStats.linesWritten, 201 + n)
        XCTAssertLessThanOrEqual(totals.taggedMallocs, UInt64(n / 100), "mallocs on the worker and writer over \(n) logged requests")
        g.shutdown(graceMs: 1000)
    }

    // MARK: Helpers

    private func raw(_ text: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }

    private func format(_ record: RequestRecord, _ format: AccessLogSettings.Format, _ startWallNs: Int64) -> String {
        var formatter = AccessLogFormatter()
        let out = UnsafeMutableRawPointer.allocate(byteCount: AccessLogRing.scratchCapacity, alignment: 8)
        defer { out.deallocate() }
        let n = formatter.format(record, as: format, startWallNs: startWallNs, into: out, capacity: AccessLogRing.scratchCapacity)
        return String(decoding: UnsafeRawBufferPointer(start: out, count: n), as: UTF8.self)
    }
}

/// A counter the filling threads share.
private final class ManagedAtomicCounter: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
