// Tests: retries to another pod, passive outlier ejection, the endpoint choice around failing pods, per-try and
// per-revision timeouts — what a client sees when a pod fails, through an in-process gateway on loopback.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import Synchronization
import XCTest

final class ResilienceTests: XCTestCase {
    private let host = "svc.ns.example.com"
    private var cleanups: [() -> Void] = []

    override func tearDown() {
        for cleanup in cleanups.reversed() { cleanup() }
        cleanups = []
    }

    /// A service of one revision (or two, with `canary`: 90 % to the first) over `endpoints`.
    private func gateway(_ endpoints: [UInt16], canary: [UInt16]? = nil, workers: Int = 1,
                         revisionTimeoutMs: Int? = nil, containerConcurrency: Int = 0, retries: RetryPolicy? = nil, observer: RequestObserver? = nil,
                         settings adjust: (inout ProxySettings) -> Void = { _ in }) throws -> Gateway {
        let r1 = "svc-predictor-default-00001", r2 = "svc-predictor-default-00002"
        var revisions = [RevisionSpec(name: r1, endpoints: endpoints.map { Endpoint(host: "127.0.0.1", port: $0) },
                                      responseTimeoutMs: revisionTimeoutMs, containerConcurrency: containerConcurrency)]
        var traffic = [TrafficTargetSpec(revisionName: r1, percent: canary == nil ? 100 : 90, tag: "prev", latestRevision: canary == nil)]
        if let canary {
            revisions.append(RevisionSpec(name: r2, endpoints: canary.map { Endpoint(host: "127.0.0.1", port: $0) }))
            traffic.append(TrafficTargetSpec(revisionName: r2, percent: 10, tag: "latest", latestRevision: true))
        }
        let service = ServiceSpec(name: "svc", namespace: "ns", revisions: revisions, traffic: traffic, retries: retries)
        let gateway = try Gateway(settings: GatewayFixture.settings(workers: workers) {
            $0.attemptCountHeader = true
            adjust(&$0)
        }, routes: RouteTable(services: [service], rules: HostRules()), requestObserver: observer)
        // Each test's endpoints start with no history (ports are reused across tests).
        let all = (endpoints + (canary ?? [])).map { Endpoint(host: "127.0.0.1", port: $0) }
        cleanups.append { gateway.shutdown(graceMs: 1_000); for e in all { EndpointHealth.forget(e) } }
        return gateway
    }

    private func server(_ handler: @escaping @Sendable (BlockingRequest) -> BlockingResponse) throws -> BlockingServer {
        let server = try BlockingServer(port: 0, handler: handler)
        server.start()
        cleanups.append { server.stop() }
        return server
    }

    private func refusingPort() -> RefusingPort {
        let port = RefusingPort()
        cleanups.append { port.close() }
        return port
    }

    private func ok() throws -> BlockingServer { try server { _ in .json(status: 200, #"{"ok": true}"#) } }

    /// Sends `count` POSTs on one keep-alive connection: the statuses and attempt counts the client saw.
    private func post(_ gateway: Gateway, count: Int) throws -> [(status: Int, attempts: Int)] {
        let c = try TestClient(port: gateway.port)
        return try (0..<count).map { _ in
            let r = try c.request("POST", "/v1/models/svc:predict", host: host, body: #"{"instances": [[1, 2, 3, 4]]}"#)
            return (r.status, Int(r.header("x-envoy-attempt-count") ?? "") ?? -1)
        }
    }

    func testADeadPodCostsNoClientAnErrorAndIsNotPickedOverAndOver() throws {
        let dead = refusingPort()
        let alive = try ok()
        let g = try gateway([dead.port, alive.port], workers: 2)
        let results = try post(g, count: 60)
        XCTAssertEqual(results.filter { $0.status != 200 }.count, 0, "every request refused by the dead pod went to the live one")
        XCTAssertEqual(alive.requestsServed, 60)
        let retried = results.filter { $0.attempts > 1 }.count
        XCTAssertGreaterThan(retried, 0, "the dead pod was tried")
        XCTAssertLessThanOrEqual(retried, 5, "a pod that fails fast does not look idle: it is not picked over and over")
    }

    func testFiveConsecutiveFailuresEjectTheEndpointForTheBaseTime() throws {
        let dead = refusingPort()
        let g = try gateway([dead.port])
        let slot = EndpointHealth.slot(for: Endpoint(host: "127.0.0.1", port: dead.port))
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 502)  // 3 attempts: 3 failures
        XCTAssertFalse(slot.isEjected(nowMs: monotonicMs()))
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 502)  // 6
        XCTAssertTrue(slot.isEjected(nowMs: monotonicMs()))
        XCTAssertFalse(slot.isEjected(nowMs: monotonicMs() + 31_000), "for 30 s, the base ejection time, the first time")
        XCTAssertEqual(slot.ejectionsForGatewayFailures.load(ordering: .relaxed), 1)
        // A revision of one pod still sends to it while it is ejected (panic mode), and says what failed.
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 502)
    }

    func testAnEjectedPodThatServesAgainIsBackWithinTwoSecondsWithoutActiveChecks() throws {
        // A pod ejected for fast failures (refused connects, resets: a crash) that serves again: one trial request a second finds
        // it, and its success ends the ejection — no 30 s wait, no active health check needed.
        let pod = try ok(), alive = try ok()
        let g = try gateway([pod.port, alive.port], workers: 1)
        let slot = EndpointHealth.slot(for: Endpoint(host: "127.0.0.1", port: pod.port))
        _ = slot.recordGatewayFailure(OutlierDetection(), timedOut: false, nowMs: monotonicMs())
        XCTAssertNotNil(slot.eject(nowMs: monotonicMs(), for5xx: false, OutlierDetection()))
        let before = pod.requestsServed
        let ejected = Date()
        let c = try TestClient(port: g.port)
        while pod.requestsServed == before && Date().timeIntervalSince(ejected) < 3 {
            XCTAssertEqual(try c.request("POST", "/v1/models/svc:predict", host: host, body: "{}").status, 200)
        }
        XCTAssertGreaterThan(pod.requestsServed, before)
        let back = Date().timeIntervalSince(ejected)
        XCTAssertGreaterThan(back, 0.9, "no request before its trial second")
        XCTAssertLessThan(back, 2.0, "the trial came within the second after")
        XCTAssertFalse(slot.isEjected(nowMs: monotonicMs()), "the trial's success ended the ejection")
    }

    func testAPodEjectedForTimeoutsGetsNoTrialRequests() throws {
        // A hung pod's trial would cost its client the per-try timeout: an ejection after a timeout gets no trials.
        let pod = try ok(), alive = try ok()
        let g = try gateway([pod.port, alive.port], workers: 1)
        let slot = EndpointHealth.slot(for: Endpoint(host: "127.0.0.1", port: pod.port))
        _ = slot.recordGatewayFailure(OutlierDetection(), timedOut: true, nowMs: monotonicMs())
        XCTAssertNotNil(slot.eject(nowMs: monotonicMs(), for5xx: false, OutlierDetection()))
        let before = pod.requestsServed
        let ejected = Date()
        let c = try TestClient(port: g.port)
        var sent = 0
        while Date().timeIntervalSince(ejected) < 1.6 {
            XCTAssertEqual(try c.request("POST", "/v1/models/svc:predict", host: host, body: "{}").status, 200)
            sent += 1
        }
        XCTAssertGreaterThan(sent, 10)
        XCTAssertEqual(pod.requestsServed, before, "no trial request went to it past its first second")
        XCTAssertTrue(slot.isEjected(nowMs: monotonicMs()))
    }

    func testFiveConsecutive5xxEjectTheEndpoint() throws {
        let failing = try server { _ in .json(status: 503, #"{"error": "overloaded"}"#) }
        let g = try gateway([failing.port])
        let slot = EndpointHealth.slot(for: Endpoint(host: "127.0.0.1", port: failing.port))
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 503, "the last attempt's answer reaches the client")
        XCTAssertEqual(failing.requestsServed, 3)
        XCTAssertFalse(slot.isEjected(nowMs: monotonicMs()))
        XCTAssertEqual(try c.request("GET", "/", host: host).status, 503)
        XCTAssertTrue(slot.isEjected(nowMs: monotonicMs()))
        XCTAssertEqual(slot.ejectionsFor5xx.load(ordering: .relaxed), 1)
        // An active health check does not lift an ejection for 5xx: the pod answers, only not with success.
        EndpointHealth.activeCheckPassed(slot.endpoint)
        XCTAssertTrue(slot.isEjected(nowMs: monotonicMs()))
    }

    func testAPodAnswering503IsRetriedElsewhereAndEjected() throws {
        let failing = try server { _ in .json(status: 503, #"{"error": "overloaded"}"#) }
        let alive = try ok()
        let g = try gateway([failing.port, alive.port])
        let results = try post(g, count: 60)
        XCTAssertEqual(results.filter { $0.status != 200 }.count, 0, "each 503 was retried on the other pod")
        XCTAssertLessThanOrEqual(failing.requestsServed, 5, "ejected after 5 consecutive 5xx")
        XCTAssertGreaterThan(failing.requestsServed, 0)
    }

    func testTheCanarysOnlyDeadPodSendsItsShareToThePreviousRevision() throws {
        let dead = refusingPort()
        let previous = try ok()
        let g = try gateway([previous.port], canary: [dead.port])
        let results = try post(g, count: 200)
        XCTAssertEqual(results.filter { $0.status != 200 }.count, 0, "the canary's requests went to the previous revision")
        XCTAssertEqual(previous.requestsServed, 200)
        // Once the canary's pod is ejected, its 10 % no longer even try it.
        XCTAssertLessThanOrEqual(results.filter { $0.attempts > 1 }.count, 5)
    }

    func testAPostThePodReadBeforeItClosedIsNotSentTwiceButAGetIs() throws {
        // Each connection: the first request is answered (keep-alive, so the gateway pools the connection); the
        // second is read whole, then the pod closes with a FIN and no answer (a crash after reading).
        let posts = Atomic<Int>(0), gets = Atomic<Int>(0)
        let pod = RawBackend()
        pod.start { conn in
            for n in 0..<2 {
                guard let head = try? conn.readRequestHead() else { return }
                let length = head.first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if length > 0 { _ = try? conn.take(length) }
                if head[0].hasPrefix("POST") { posts.add(1, ordering: .relaxed) } else { gets.add(1, ordering: .relaxed) }
                if n == 0 { try? conn.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") }
            }
        }
        cleanups.append { pod.stop() }
        let g = try gateway([pod.port])
        let c = try TestClient(port: g.port)
        XCTAssertEqual(try c.request("GET", "/v1/models/svc", host: host).status, 200)
        let post = try c.request("POST", "/v1/models/svc:predict", host: host, body: "{}")
        XCTAssertEqual(post.status, 502)
        XCTAssertEqual(posts.load(ordering: .relaxed), 1, "a POST the pod may have processed is not delivered twice")
        // A GET on the pooled connection: idempotent, so retried (on a fresh connection, which answers it).
        let c2 = try TestClient(port: g.port)
        XCTAssertEqual(try c2.request("GET", "/v1/models/svc", host: host).status, 200)
        XCTAssertEqual(try c2.request("GET", "/v1/models/svc", host: host).status, 200, "the GET the pod dropped was retried")
    }

    func testAPostThePodRefusedWithAResetIsRetried() throws {
        // The first connection reads the head only and resets (its kernel discards the unread body: the pod never
        // had the whole request); the next one answers.
        let connections = Atomic<Int>(0)
        let pod = RawBackend()
        pod.start { conn in
            guard (try? conn.readRequestHead()) != nil else { return }
            if connections.add(1, ordering: .relaxed).newValue == 1 {
                // RST at close (SO_LINGER 0); the connection's own deinit closes it, once.
                var reset = linger(l_onoff: 1, l_linger: 0)
                setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
                return
            }
            _ = try? conn.take(16 * 1024)
            try? conn.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        cleanups.append { pod.stop() }
        let g = try gateway([pod.port])
        let c = try TestClient(port: g.port)
        // A body large enough to still be unread when the pod resets.
        let body = String(repeating: "x", count: 16 * 1024)
        let r = try c.request("POST", "/v1/models/svc:predict", host: host, body: body)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("x-envoy-attempt-count"), "2", "answered by the retry")
    }

    func testAHungPodIsCutAtThePerTryTimeoutAndTheRequestRetriedElsewhere() throws {
        let hung = try server { _ in usleep(3_000_000); return .json(status: 200, "{}") }
        let alive = try ok()
        var retries = RetryPolicy()
        retries.perTryTimeoutMs = 300
        let g = try gateway([hung.port, alive.port], retries: retries)
        let started = Date()
        let results = try post(g, count: 8)
        XCTAssertEqual(results.filter { $0.status != 200 }.count, 0)
        XCTAssertTrue(results.contains { $0.attempts == 2 }, "a request on the hung pod was retried on the other")
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.9, "no request waited for the hung pod's answer")
    }

    func testTheRevisionsOwnTimeoutIsEnforced() throws {
        let slow = try server { _ in usleep(2_000_000); return .json(status: 200, "{}") }
        let g = try gateway([slow.port], revisionTimeoutMs: 400, retries: RetryPolicy.none)
        let c = try TestClient(port: g.port)
        let started = Date()
        let r = try c.request("POST", "/v1/models/svc:predict", host: host, body: "{}")
        XCTAssertEqual(r.status, 504)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5, "spec.predictor.timeout (0.4 s here), not the gateway's 300 s")
    }

    func testWithRetriesOffADeadPodsRequestsFail() throws {
        let dead = refusingPort()
        let alive = try ok()
        var outlier = OutlierDetection()
        outlier.consecutiveGatewayFailures = 0
        outlier.consecutive5xx = 0
        let g = try gateway([dead.port, alive.port], retries: RetryPolicy.none, settings: { $0.outlierDetection = outlier })
        let results = try post(g, count: 40)
        XCTAssertGreaterThan(results.filter { $0.status == 502 }.count, 0, "without retries the dead pod's share fails")
        XCTAssertLessThan(results.filter { $0.status == 502 }.count, 40, "and the failure penalty moves most requests to the live pod")
    }

    func testTheRetryBudgetCapsRetriesOfAFailingRevision() throws {
        // Both pods refuse: every request fails. With the default budget (a floor of 3) a request gets its 2 retries;
        // with a budget of 0 % and no floor, none.
        let a = refusingPort(), b = refusingPort()
        for (budget, floor, expected) in [(20, 3, 3), (0, 0, 1)] {
            let attempts = Mutex<[Int]>([])
            var retries = RetryPolicy()
            retries.budgetPercent = budget
            retries.budgetMinConcurrency = floor
            var outlier = OutlierDetection()
            outlier.consecutiveGatewayFailures = 0
            outlier.consecutive5xx = 0
            let g = try gateway([a.port, b.port], retries: retries, observer: { record in attempts.withLock { $0.append(record.attempts) } },
                            settings: { $0.outlierDetection = outlier })
            let c = try TestClient(port: g.port)
            XCTAssertEqual(try c.request("GET", "/", host: host).status, 502)
            XCTAssertEqual(attempts.withLock { $0 }, [expected], "budget \(budget) %, floor \(floor)")
        }
    }

    /// A pod that takes `ms` per request and records the most requests it ever had at once.
    private func countingPod(ms: UInt32) throws -> (BlockingServer, @Sendable () -> Int) {
        let state = Mutex<(now: Int, most: Int)>((0, 0))
        let pod = try server { _ in
            state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
            usleep(ms * 1000)
            state.withLock { $0.now -= 1 }
            return .json(status: 200, "{}")
        }
        return (pod, { state.withLock { $0.most } })
    }

    /// `clients` threads (all at once, not a pool's few), each sending `each` POSTs on its own connection; the
    /// statuses and Retry-After values.
    private func concurrentPosts(_ g: Gateway, clients: Int, each: Int) -> [(Int, String?)] {
        let results = Mutex<[(Int, String?)]>([])
        let host = self.host, port = g.port
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<clients {
            Thread.detachNewThread {
                defer { done.signal() }
                guard let c = try? TestClient(port: port) else { return }
                for _ in 0..<each {
                    guard let r = try? c.request("POST", "/v1/models/svc:predict", host: host, body: "{}") else { return }
                    results.withLock { $0.append((r.status, r.header("retry-after"))) }
                    if r.header("connection") == "close" { return }
                }
            }
        }
        for _ in 0..<clients { done.wait() }
        return results.withLock { $0 }
    }

    func testContainerConcurrencyOneNeverSendsTwoRequestsAtOnceToThePod() throws {
        let (pod, most) = try countingPod(ms: 20)
        let g = try gateway([pod.port], workers: 2, containerConcurrency: 1)
        let results = concurrentPosts(g, clients: 6, each: 5)
        XCTAssertEqual(results.count, 30)
        XCTAssertTrue(results.allSatisfy { $0.0 == 200 }, "6 clients fit in the queue (10 per slot): all served in turn")
        XCTAssertEqual(most(), 1, "the pod never had two requests at once")
    }

    func testAFullConcurrencyQueueAnswers503WithRetryAfter() throws {
        let (pod, most) = try countingPod(ms: 300)
        let g = try gateway([pod.port], workers: 1, containerConcurrency: 1, settings: { $0.revisionQueue.depthPerSlot = 2 })
        let results = concurrentPosts(g, clients: 8, each: 1)
        XCTAssertEqual(results.count, 8)
        let served = results.filter { $0.0 == 200 }.count
        XCTAssertEqual(served, 3, "one at the pod, two in the queue")
        XCTAssertTrue(results.filter { $0.0 != 200 }.allSatisfy { $0.0 == 503 && $0.1 == "1" }, "the rest: 503 with Retry-After")
        XCTAssertEqual(most(), 1)
    }

    func testAQueuedRequestTimesOutWith503() throws {
        let (pod, _) = try countingPod(ms: 800)
        let g = try gateway([pod.port], workers: 1, containerConcurrency: 1, settings: { $0.revisionQueue.timeoutMs = 200 })
        let results = concurrentPosts(g, clients: 2, each: 1)
        XCTAssertEqual(results.map(\.0).sorted(), [200, 503], "the second waited 0.2 s in the queue, then 503")
    }

    private func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
