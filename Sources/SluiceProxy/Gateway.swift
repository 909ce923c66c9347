// Proxy layer: the running data plane — binds the listeners, starts one worker per core and hands new route tables to them.
import SluiceIO
import SluiceRouting
import SluiceTLS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct GatewayError: Error, CustomStringConvertible {
    public let description: String
}

/// What a worker is told between requests: a new configuration generation, or to drain and stop.
enum WorkerMessage: Sendable {
    case install(RouteTable, ProxySettings)
    case drain(deadlineMs: Int64)
}

/// The thread-safe side of a worker: its mailbox and its loop's waker.
final class WorkerHandle: Sendable {
    let index: Int
    let mailbox = Mutex<[WorkerMessage]>([])
    let finished = Atomic<Bool>(false)
    let activeConnections = Atomic<Int>(0)
    /// Retired upstream pools the worker still keeps for their open connections (for tests; see RetiredPools).
    let retiredPools = Atomic<Int>(0)
    let waker = Mutex<Waker?>(nil)
    /// The worker's span export queue (nil: no OTLP endpoint at start).
    let spans: SpanQueue?
    /// The worker's counters and the blocks a scrape reads (Telemetry/WorkerMetrics.swift).
    let metrics = WorkerMetricsView()

    init(index: Int, spans: SpanQueue? = nil) {
        self.index = index
        self.spans = spans
    }

    func send(_ message: WorkerMessage) {
        mailbox.withLock { $0.append(message) }
        waker.withLock { $0?.wake() }
    }
}

public final class Gateway: Sendable {
    let handles: [WorkerHandle]
    private let listenerFDs: [Int32]
    /// The bound port (useful when the configuration asked for port 0).
    public let port: UInt16
    private let current: Mutex<(RouteTable, ProxySettings)>
    /// The TLS generation new handshakes use; nil on a plain listener.
    private let tls: TLSContextSlot?
    /// Set the moment `shutdown` begins, before the listeners close: readiness answers false from then on.
    private let draining = Atomic<Bool>(false)
    /// The access log's writer thread and the workers' rings; nil when the access log is off at start.
    private let accessLog: AccessLogWriter?

    /// Binds one SO_REUSEPORT listener per worker, then starts the workers. Throws when the address cannot be bound.
    /// `requestObserver` is told of every finished request, on the worker's thread that served it.
    /// `adopting`: listening sockets handed over by the process this one takes over (already checked to be bound to
    /// `settings.listen`); each gets a worker, so the connections queued on them are served (closing one would reset
    /// its queue), and more are bound only if the settings ask for more workers than that.
    public init(settings: ProxySettings, routes: RouteTable, requestObserver: RequestObserver? = nil,
                adopting adopted: [Int32] = []) throws {
        Posix.ignoreSIGPIPE()
        // Certificates are loaded and checked before anything is bound: a broken pair stops the start.
        let tls = try settings.tls.map { (t) throws(GatewayError) in TLSContextSlot(try Gateway.tlsContext(t)) }
        // The CA file for https:// pods is checked now too (workers load their own copy at first use).
        if let caFile = settings.upstreamTLS.caFile {
            do { _ = try TLSClientContext(caFile: caFile) } catch { throw GatewayError(description: "upstreamTLS.caFile: \(error)") }
        }
        let workerCount = max(1, settings.workers ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), adopted.count)
        // The access log's file is opened before anything is bound too: a path that cannot be written stops the start.
        let accessLog = settings.accessLog.destination == .off
            ? nil : try AccessLogWriter(destination: settings.accessLog.destination, workers: workerCount)
        guard var address = SocketAddress(ip: settings.listen.host, port: settings.listen.port) else {
            throw GatewayError(description: "listen: \(settings.listen) is not an IP literal and port")
        }
        var fds: [Int32] = adopted
        var boundPort = adopted.first.map(TCPSocket.localPort) ?? settings.listen.port
        if boundPort != settings.listen.port { address = SocketAddress(ip: settings.listen.host, port: boundPort)! }
        do {
            for i in adopted.count..<workerCount {
                let fd = try TCPSocket.listen(address, reusePort: true)
                fds.append(fd)
                if i == 0 && boundPort == 0 {
                    // Port 0: let the kernel choose for the first listener, then bind the others to the same port.
                    boundPort = TCPSocket.localPort(fd)
                    address = SocketAddress(ip: settings.listen.host, port: boundPort)!
                }
            }
        } catch {
            fds.forEach { Posix.close($0) }
            throw GatewayError(description: "listen on \(settings.listen): \(error)")
        }
        listenerFDs = fds
        port = boundPort
        current = Mutex((routes, settings))
        self.tls = tls
        self.accessLog = accessLog
        accessLog?.start()
        // Span queues exist when spans are exported at start (`tracing.otlpEndpoint`); each is allocated whole here.
        let exportsSpans = settings.tracing.otlpEndpoint != nil
        handles = (0..<workerCount).map {
            WorkerHandle(index: $0, spans: exportsSpans ? SpanQueue(capacity: max(1, settings.tracing.exportQueueSpans)) : nil)
        }
        let siblings = handles
        for (handle, fd) in zip(handles, fds) {
            let started = Atomic<Bool>(false)
            spawnThread(name: "sluice-w\(handle.index)") {
                let worker: Worker
                do {
                    worker = try Worker(handle: handle, siblings: siblings, listenerFD: fd, routes: routes, settings: settings, tls: tls,
                                        seed: UInt64(handle.index + 1) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(Posix.nowMilliseconds()),
                                        requestObserver: requestObserver, accessLog: accessLog?.rings[handle.index])
                } catch {
                    fatalError("worker \(handle.index) could not start: \(error)")
                }
                started.store(true, ordering: .releasing)
                worker.run()
                handle.finished.store(true, ordering: .releasing)
            }
            // Wait until the worker's loop exists so a hand-over right after init reaches it.
            while !started.load(ordering: .acquiring) { sched_yield() }
        }
    }

    public var workerCount: Int { handles.count }

    /// The workers' listening sockets, to hand to a process taking over (each worker closes its own when draining).
    public var listenerDescriptors: [Int32] { listenerFDs }

    /// The route table the workers were last given.
    public var routes: RouteTable { current.withLock { $0.0 } }

    /// The settings the workers were last given.
    public var settings: ProxySettings { current.withLock { $0.1 } }

    /// Hands a new route table (and settings, except the listen address and worker count, and a TLS generation
    /// built by `buildTLS`) to every worker: one configuration generation. Each worker swaps between requests;
    /// requests already routed finish on the routes they started with, established connections keep their
    /// certificates.
    public func publish(routes: RouteTable, settings: ProxySettings? = nil, tls context: TLSContext? = nil) {
        // The workers are told under the lock, so that two publications reach every mailbox in the order they
        // replaced `current`: a stale table can never be installed after a newer one.
        current.withLock { state in
            // An endpoint no route has any more forgets its failures and ejections: a pod that later gets the same
            // IP and port (Kubernetes reuses pod IPs) starts afresh.
            let kept = Set(routes.endpoints)
            for endpoint in state.0.endpoints where !kept.contains(endpoint) { EndpointHealth.forget(endpoint) }
            state.0 = routes
            if let settings { state.1 = settings }
            if let context {
                // buildTLS refuses a TLS generation for a plain listener: getting one here is our own bug.
                guard let tls else { preconditionFailure("a TLS generation published on a plain listener") }
                tls.publish(context)
            }
            for handle in handles { handle.send(.install(routes, state.1)) }
        }
    }

    /// Builds a TLS generation; errors name the pair's place in the list, the file and the reason. Public for a
    /// takeover, which checks the certificates before the running process releases anything.
    public static func tlsContext(_ settings: TLSSettings) throws(GatewayError) -> TLSContext {
        guard !settings.certificates.isEmpty else { throw GatewayError(description: "tls.certificates: at least one certificate is needed") }
        do {
            return try TLSContext(certificates: settings.certificates, offerH2: settings.offersH2)
        } catch {
            throw GatewayError(description: "tls.certificates[\(error.index)]: \(error)")
        }
    }

    /// Re-reads the certificate and key files (a renewal usually keeps the paths) and publishes them: once this
    /// returns, new handshakes on every worker use them, while established connections keep the old ones.
    /// A broken pair throws with the file and the reason, and the running certificates stay.
    /// The handshake timeout travels with the settings given to `publish(routes:settings:)`.
    public func reloadTLS(_ settings: TLSSettings?) throws(GatewayError) {
        guard let context = try buildTLS(settings), let tls else { return }
        tls.publish(context)
    }

    /// Reads and checks the certificate and key files of `settings` without publishing them (the first half of a
    /// reload, so that a configuration generation is validated whole before any of it applies); nil on a plain
    /// listener. Throws when the reload would turn TLS on or off, or for a broken pair (with the file and reason).
    public func buildTLS(_ settings: TLSSettings?) throws(GatewayError) -> TLSContext? {
        switch (tls, settings) {
        case (nil, nil):
            return nil
        case (nil, .some):
            throw GatewayError(description: "tls: the listener was started without TLS; turning it on needs a restart")
        case (.some, nil):
            throw GatewayError(description: "tls: the listener was started with TLS; turning it off needs a restart")
        case (.some, .some(let settings)):
            return try Gateway.tlsContext(settings)
        }
    }

    /// Publishes an already built TLS generation (see `reloadTLS`). Throws on a plain listener.
    public func publish(tls context: TLSContext) throws(GatewayError) {
        guard let tls else { throw GatewayError(description: "tls: the listener was started without TLS") }
        tls.publish(context)
    }

    /// The TLS generation new handshakes use right now; nil on a plain listener.
    public var tlsContext: TLSContext? { tls?.context }

    /// Downstream connections open right now, over all workers.
    public var activeConnections: Int { handles.reduce(0) { $0 + $1.activeConnections.load(ordering: .relaxed) } }

    /// Serialises `drainSpans` callers: each queue has one consumer at a time (never taken on the request path).
    private let spanConsumer = Mutex<Void>(())

    /// True when the workers queue sampled spans for export (`tracing.otlpEndpoint` was set at start).
    public var exportsSpans: Bool { handles.first?.spans != nil }

    /// Takes up to `limit` finished spans from the workers' queues (oldest first within each worker) and appends
    /// them to `out`; returns how many. For the span exporter: the workers never wait for it.
    @discardableResult
    public func drainSpans(into out: inout [FinishedSpan], limit: Int) -> Int {
        spanConsumer.withLock { _ in
            var taken = 0
            for handle in handles {
                guard let queue = handle.spans, taken < limit else { continue }
                taken += queue.drain(into: &out, limit: limit - taken)
            }
            return taken
        }
    }

    /// Spans waiting in the workers' queues right now.
    public var pendingSpans: Int { handles.reduce(0) { $0 + ($1.spans?.pending ?? 0) } }

    /// Spans dropped because a worker's queue was full (the exporter fell behind), over all workers.
    public var droppedSpans: Int { handles.reduce(0) { $0 + ($1.spans?.dropped ?? 0) } }

    /// Retired upstream pools still kept for their connections, over all workers (tests read it).
    var retiredPoolCount: Int { handles.reduce(0) { $0 + $1.retiredPools.load(ordering: .relaxed) } }

    /// True from the moment `shutdown` begins: the admin API's /readyz answers 503 so load balancers stop
    /// sending, while in-flight requests finish.
    public var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Drains, in this order: readiness turns false, the listeners stop accepting, in-flight requests finish (idle
    /// keep-alive connections close at once, busy ones after their current response), then the workers stop.
    /// Returns when every worker has stopped or the grace period has passed; `graceMs` nil takes the settings'
    /// `shutdownTimeoutMs` (the last published, so a reload that changed it counts).
    public func shutdown(graceMs: Int64? = nil) {
        draining.store(true, ordering: .releasing)
        let deadline = Posix.nowMilliseconds() + (graceMs ?? Int64(settings.shutdownTimeoutMs))
        for handle in handles { handle.send(.drain(deadlineMs: deadline)) }
        while !handles.allSatisfy({ $0.finished.load(ordering: .acquiring) }) {
            if Posix.nowMilliseconds() > deadline + 1000 { break }
            usleep(2000)
        }
        // After the workers: every line they accepted is written (or, to a sink stalled past the flush, counted).
        accessLog?.stop()
        // Its endpoints leave with it: another gateway of this process (tests) starts without their history.
        for endpoint in routes.endpoints { EndpointHealth.forget(endpoint) }
    }

    /// Reopens the access log file before the next write (SIGUSR1, after logrotate renamed it): lines go to a new
    /// file at the same path, created if missing. Nothing happens for stdout or with the access log off.
    public func reopenAccessLog() {
        accessLog?.requestReopen()
    }

    /// Access log lines written and dropped so far, over all workers (`sluice_access_log_dropped_total`).
    public var accessLogStats: AccessLogStats {
        accessLog?.stats ?? AccessLogStats()
    }
}
