// Proxy layer: one worker — a thread with its own epoll loop, listener, upstream pools, buffers and PRNG.
import SluiceHTTP1
import SluiceHTTP2
import SluiceIO
import SluiceRouting
import SluiceTLS
#if canImport(Glibc)
import Glibc
#endif

/// Everything here is touched by the worker's own thread only: nothing on the request path is shared or locked.
final class Worker {
    let handle: WorkerHandle
    let loop: EventLoop
    private(set) var routes: RouteTable
    private(set) var settings: ProxySettings {
        didSet { headLimits = HTTP1Limits(settings.limits) }
    }
    /// The head bounds of `settings`, converted once per configuration rather than once per request.
    private(set) var headLimits: HTTP1Limits
    var random: FastRandom
    let buffers: BufferPool
    let parserStorage: ParserStoragePool
    /// Where this thread's HTTP/2 sessions put their response header lists together, one at a time.
    let h2HeaderScratch = H2HeaderScratch()
    private var listener: Listener?
    /// Upstream pools by route-table endpoint index, rebuilt at each hand-over; pools survive hand-overs by endpoint.
    private(set) var pools: [ConnectionPool] = []
    /// Counts route installs: a request's endpoint indices belong to the generation it was routed in.
    private(set) var routeGeneration = 0
    /// Active requests and retries per revision (`Revision.metricsID`), for the retry budget.
    var retryLoads: [RetryLoad] = []
    /// When worker 0 next looks for endpoints whose ejection ended.
    var nextReturnSweepMs: Int64 = 0
    /// Every worker of the gateway (this one included): a freed concurrency slot wakes the others.
    let siblings: [WorkerHandle]
    var workerCount: Int { siblings.count }
    /// Requests waiting for a containerConcurrency slot, per revision (`Revision.metricsID`).
    var revisionQueues: [Int: RevisionQueue] = [:]
    lazy var queueKick = QueueKick(worker: self)
    private var poolsByEndpoint: [Endpoint: ConnectionPool] = [:]
    private(set) var connections = 0
    private(set) var isDraining = false
    private var drainDeadline: Int64 = 0
    /// The TLS generation for new connections (nil: plain listener); reads the shared slot only after a reload.
    var tls: TLSContextSlot.Reader?
    /// Told of every finished request, on this thread (nil: nobody listens).
    let requestObserver: RequestObserver?
    /// This worker's access log ring, drained by the gateway's writer thread (nil: the access log is off).
    let accessLog: AccessLogRing?
    /// Record storage for HTTP/1.1 requests in flight, recycled (RequestLifecycle.swift).
    var recordBoxes: [RequestRecordBox] = []
    /// Exchanges for requests to HTTP/1.1 pods, recycled at the end of the tick their request ended in.
    let exchanges = ExchangeRecycler()
    /// Sampled requests' spans for the exporter (nil: spans are not exported); see SpanQueue.swift.
    let spans: SpanQueue?
    /// Wall clock minus monotonic clock (ns) at start: turns the records' timestamps into Unix time for spans.
    let unixOffsetNs: Int64
    /// This worker's counters and histograms (Telemetry/WorkerMetrics.swift).
    let metrics: WorkerMetrics
    /// Mirrored requests in flight and spare shadows (ShadowExchange.swift).
    let mirrors = Mirrors()

    init(handle: WorkerHandle, siblings: [WorkerHandle], listenerFD: Int32, routes: RouteTable, settings: ProxySettings,
         tls: TLSContextSlot?, seed: UInt64, requestObserver: RequestObserver? = nil, accessLog: AccessLogRing? = nil) throws {
        self.handle = handle
        self.siblings = siblings
        self.requestObserver = requestObserver
        self.spans = handle.spans
        self.unixOffsetNs = Worker.unixOffsetNow()
        self.accessLog = accessLog
        self.loop = try EventLoop()
        self.routes = routes
        self.settings = settings
        self.headLimits = HTTP1Limits(settings.limits)
        self.random = FastRandom(seed: seed)
        self.tls = tls.map { TLSContextSlot.Reader($0) }
        // One size for pooled buffers: the per-direction limit plus slack for the framing we add. A request head
        // larger than that grows its buffer (up to maxHeaderBytes), which is then freed instead of pooled.
        // At most 128 idle buffers (~4.5 MiB) stay cached per worker: enough for bursts, and 10 000 idle
        // keep-alive connections hold none at all.
        self.buffers = BufferPool(bufferCapacity: settings.limits.bufferBytes + 4096, maxKept: 128)
        self.parserStorage = ParserStoragePool(limits: headLimits)
        self.metrics = WorkerMetrics(view: handle.metrics)
        handle.waker.withLock { $0 = loop.waker }
        installPools()
        listener = try Listener(fd: listenerFD, worker: self)
        loop.onWake = { [unowned self] in
            self.readMailbox()
            if queuedRequests.load(ordering: .relaxed) > 0 { self.resumeQueued() }
        }
        loop.onSweep = { [unowned self] now in self.sweep(now: now) }
    }

    func run() {
        loop.run()
        listener?.close()
    }

    private func readMailbox() {
        let messages = handle.mailbox.withLock { m -> [WorkerMessage] in
            let all = m
            m.removeAll()
            return all
        }
        for message in messages {
            switch message {
            case .install(let newRoutes, let newSettings):
                routes = newRoutes
                settings = newSettings
                installPools()
            case .drain(let deadline):
                isDraining = true
                drainDeadline = deadline
                listener?.close()
                listener = nil
                stopIfDrained()
            }
        }
    }

    /// Every sweep (100 ms): the drain deadline while draining, else (worker 0) the endpoints whose ejection
    /// ended; the mirrors' timers always (they are no loop handlers, having no client socket).
    private func sweep(now: Int64) {
        if isDraining {
            if now >= drainDeadline { drainDeadlinePassed() }
        } else if handle.index == 0 {
            announceReturns(now: now)
        }
        checkMirrorDeadlines(now: now)
    }

    /// Maps the route table's endpoints to pools, keeping the pools (and their idle connections) of endpoints that stay.
    /// A pool whose endpoint left is retired and kept in `retiredPools` until its last connection is gone.
    private func installPools() {
        var next: [Endpoint: ConnectionPool] = [:]
        pools = routes.endpoints.map { endpoint in
            let pool = poolsByEndpoint[endpoint] ?? ConnectionPool(endpoint: endpoint, worker: self)
            next[endpoint] = pool
            return pool
        }
        for (endpoint, pool) in poolsByEndpoint where next[endpoint] == nil {
            pool.retire()
            retiredPools.keep(pool)
            // Nothing left to close: no connection will report its end, so the sweep is asked for here.
            if pool.liveConnections == 0 { retiredPoolDrained() }
        }
        poolsByEndpoint = next
        routeGeneration += 1
        growRetryLoads()
        metrics.install(routes, settings: settings.metrics)
    }

    /// Retired pools that still have connections, as nginx keeps an old cycle until its last connection closes:
    /// connections refer to their pool unowned(unsafe), and this list is what makes that safe.
    private lazy var retiredPools = RetiredPools(handle: handle)

    /// A retired pool's last connection is gone. It is dropped at the end of this tick, not now: the call comes
    /// from inside that pool (ConnectionPool.connectionEnded), which must not be freed under its own feet.
    func retiredPoolDrained() {
        guard !retiredPools.isSweepScheduled else { return }
        retiredPools.isSweepScheduled = true
        loop.runAfterThisBatch(retiredPools)
    }

    /// The client TLS contexts for `https://` endpoints (ALPN http/1.1) and `h2://` endpoints (ALPN h2), each built
    /// at first use and again when `upstreamTLS` changes.
    private var upstreamTLS: (settings: UpstreamTLSSettings, context: TLSClientContext)?
    private var upstreamH2TLS: (settings: UpstreamTLSSettings, context: TLSClientContext)?
    /// The last upstream TLS setup failure logged, so that a broken CA file is reported once, not per request.
    private var upstreamTLSFailure: String?

    /// The context pods on https (or, with `.h2`, h2) endpoints are verified with; nil (logged once) when it
    /// cannot be built.
    func upstreamTLSContext(offer: TLSClientContext.Offer = .http11) -> TLSClientContext? {
        let wanted = settings.upstreamTLS
        let current = offer == .h2 ? upstreamH2TLS : upstreamTLS
        if let current, current.settings == wanted { return current.context }
        do {
            let context = try TLSClientContext(caFile: wanted.caFile, offer: offer)
            if offer == .h2 { upstreamH2TLS = (wanted, context) } else { upstreamTLS = (wanted, context) }
            upstreamTLSFailure = nil
            return context
        } catch {
            let text = "upstreamTLS.caFile: \(error)"
            if upstreamTLSFailure != text { logLine(text, event: "upstream.tls.config_failed", level: .error) }
            upstreamTLSFailure = text
            return nil
        }
    }

    func connectionOpened() {
        connections += 1
        handle.activeConnections.add(1, ordering: .relaxed)
    }

    func connectionClosed() {
        connections -= 1
        handle.activeConnections.subtract(1, ordering: .relaxed)
        if isDraining { stopIfDrained() }
    }

    /// The shutdown's grace period is over: every client connection still open is closed now (its request ends
    /// as an abort, flagged draining), and with them their pods' connections; then the loop stops. Before, the
    /// loop stopped with those descriptors still open, so clients waited on a socket nobody served.
    private func drainDeadlinePassed() {
        loop.forEachHandler { handler in
            (handler as? any ClosableOnDrain)?.closeAtDrainDeadline()
        }
        abandonMirrors()
        for pool in poolsByEndpoint.values { pool.closeIdle() }
        loop.stop()
    }

    private func stopIfDrained() {
        if connections == 0 {
            abandonMirrors()
            for pool in poolsByEndpoint.values { pool.closeIdle() }
            loop.stop()
        }
    }
}

/// A worker's retired pools (see `Worker.retiredPoolDrained`); the sweep that drops drained ones runs as an
/// end-of-tick task, so that no pool is freed inside a call chain that started in it.
final class RetiredPools: DeferredTask {
    private var pools: [ConnectionPool] = []
    var isSweepScheduled = false
    /// Where the count is published for tests (WorkerHandle.retiredPools); written only when the list changes.
    private let handle: WorkerHandle

    init(handle: WorkerHandle) { self.handle = handle }

    func keep(_ pool: ConnectionPool) {
        pools.append(pool)
        handle.retiredPools.store(pools.count, ordering: .relaxed)
    }

    func runDeferred() {
        isSweepScheduled = false
        pools.removeAll { $0.liveConnections == 0 }
        handle.retiredPools.store(pools.count, ordering: .relaxed)
    }
}

/// The worker's SO_REUSEPORT listening socket.
final class Listener: EventHandler {
    private let fd: Int32
    private unowned let worker: Worker
    private var registration: Registration?

    init(fd: Int32, worker: Worker) throws {
        self.fd = fd
        self.worker = worker
        registration = try worker.loop.register(fd: fd, events: Readiness.readable, handler: self)
    }

    func handle(events: UInt32) {
        // Accept a bounded batch per wake-up so one busy listener cannot starve established connections.
        for _ in 0..<64 {
            switch TCPSocket.accept(fd) {
            case .accepted(let client, let peer):
                ClientAcceptor.accept(fd: client, peer: peer, worker: worker)
            case .wouldBlock:
                return
            case .failed(let e):
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM {
                    // Out of descriptors or memory: the level-triggered listener would wake the loop again at once
                    // and spin, so it is paused until the next sweep (≤ 100 ms), as nginx's accept_mutex delay does.
                    if !isPaused { logLine("accept: \(e == EMFILE || e == ENFILE ? "out of file descriptors" : "out of memory") (errno \(e)); pausing accepts", event: "accept.paused") }
                    pause()
                }
                return
            }
        }
    }

    private var isPaused = false

    private func pause() {
        guard let registration, !isPaused else { return }
        isPaused = true
        worker.loop.modify(fd: fd, events: 0, registration: registration)
    }

    /// The sweep resumes a paused listener.
    func checkDeadline(now: Int64) {
        guard isPaused, let registration else { return }
        isPaused = false
        worker.loop.modify(fd: fd, events: Readiness.readable, registration: registration)
    }

    func close() {
        guard let registration else { return }
        worker.loop.deregister(fd: fd, registration: registration)
        Posix.close(fd)
        self.registration = nil
    }
}

/// One event line to stderr (JSON with an RFC 3339 timestamp, as the control plane's), for what an operator must
/// see, never per request: `event` is its stable name, `fields` what a query filters on, `message` the sentence.
func logLine(_ message: String, event: String = "gateway.warning", level: EventLevel = .warning,
             fields: KeyValuePairs<String, String> = [:]) {
    var line = EventLine(level: level, event: event)
    for (name, value) in fields { line.field(name, value) }
    line.field("message", message)
    line.write()
}

/// A client connection the worker closes when the drain deadline passes.
protocol ClosableOnDrain: AnyObject {
    func closeAtDrainDeadline()
}
