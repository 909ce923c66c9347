// Proxy layer: traffic mirroring (shadow) — a buffered copy of a default-host request sent to its service's mirror
// revision as an Exchange of its own, whose downstream (ShadowDownstream) reads the response and throws it away. The
// client never waits for it: the copy is sent once the client's request is complete, on its own pod connection, with
// its own bound (in flight per worker and revision), timeout and result, never retried, dropped and counted when over
// a bound. What the mirror revision sees: the Host (`:authority`) with `-shadow` appended to its name (Envoy's
// request_mirror_policies convention, which model servers and their dashboards already know) and `X-Sluice-Shadow: 1`
// (one header a server can test without parsing hosts); both, since neither alone serves every server.
import SluiceHTTP1
import SluiceIO
import SluiceRouting

/// How a mirrored request ended (`sluice_mirror_requests_total{result}`).
enum MirrorResult: UInt8, CaseIterable {
    /// The mirror revision answered with a non-5xx status.
    case ok = 0
    /// A 5xx answer, or no answer: connect refused, reset, closed, an invalid response.
    case failed
    /// No answer within the mirror's response timeout (or its connect timeout, or a body gone silent).
    case timeout
    /// Not sent: the worker's mirrors in flight to the revision are at `mirror.maxInFlight`, or the revision has
    /// no concurrency slot free (a mirror never queues).
    case droppedFull
    /// Not sent: the request was larger than `mirror.maxRequestBytes`, or its body never completed.
    case droppedBody

    var name: String {
        switch self {
        case .ok: "ok"
        case .failed: "failed"
        case .timeout: "timeout"
        case .droppedFull: "dropped_full"
        case .droppedBody: "dropped_body"
        }
    }

    /// The mirror was sent (or its send was tried): it says something about the revision, and has a duration.
    var wasSent: Bool {
        switch self {
        case .ok, .failed, .timeout: true
        case .droppedFull, .droppedBody: false
        }
    }
}

/// The worker's mirrors: those in flight (their timers are checked by the worker's sweep), their count per target
/// revision, and spare shadows for reuse so that a steady mirror allocates none.
final class Mirrors {
    private(set) var active: [ShadowDownstream] = []
    private var inFlight: [Int32] = []
    fileprivate var free: [ShadowDownstream] = []

    init() {
        active.reserveCapacity(64)
        free.reserveCapacity(64)
    }

    func inFlight(_ id: Int) -> Int { id < inFlight.count ? Int(inFlight[id]) : 0 }

    fileprivate func add(_ shadow: ShadowDownstream, id: Int) {
        if id >= inFlight.count { inFlight.append(contentsOf: repeatElement(0, count: id + 1 - inFlight.count)) }
        inFlight[id] += 1
        shadow.activeIndex = active.count
        active.append(shadow)
    }

    fileprivate func remove(_ shadow: ShadowDownstream, id: Int) {
        let at = shadow.activeIndex
        guard at >= 0, at < active.count, active[at] === shadow else { return }
        inFlight[id] -= 1
        let last = active.removeLast()
        if at < active.count {
            active[at] = last
            last.activeIndex = at
        }
        shadow.activeIndex = -1
    }
}

/// The client side of a mirrored request's Exchange: the copy of the request, and a sink that discards the response.
final class ShadowDownstream: ExchangeDownstream {
    /// unowned(unsafe): the worker outlives its mirrors (they are abandoned before its loop returns: abandonMirrors).
    unowned(unsafe) let worker: Worker
    var exchange: Exchange?
    /// Unused: the head is the client request's as the primary exchange wrote it (X-Forwarded-For included).
    let peerIP: [UInt8] = []
    var isTLS: Bool { false }
    var requestId: [UInt8] = []
    var deadline: Int64 = .max
    var deadlineKind: DeadlineKind = .none
    /// Where it is in `Mirrors.active` (-1: not in flight).
    fileprivate var activeIndex = -1
    /// The request as the mirror revision gets it: a pooled buffer from the copy's start until it is sent or dropped.
    private var request: ByteBuffer?
    /// The revision mirrored to, and the route generation its endpoint indices belong to.
    private(set) var target: Revision?
    private var generation = 0
    private var requestWasHEAD = false
    /// The length of the framing line the primary's head ends with (Content-Length or Transfer-Encoding).
    private var framingLineBytes = 0
    private var maxBytes = 0
    private var sentNs: UInt64 = 0
    private var status = 0

    init(worker: Worker) {
        self.worker = worker
    }

    fileprivate func prepare(target: Revision, generation: Int, head: RequestHead, maxBytes: Int, buffer: ByteBuffer) {
        self.target = target
        self.generation = generation
        self.maxBytes = maxBytes
        requestWasHEAD = head.isHEAD
        switch head.framing {
        case .none: framingLineBytes = 0
        case .contentLength(let n): framingLineBytes = 16 + Self.decimalDigits(n) + 2  // "Content-Length: n\r\n"
        case .chunked: framingLineBytes = 28  // "Transfer-Encoding: chunked\r\n"
        }
        request = buffer
        status = 0
        sentNs = 0
        deadline = .max
        deadlineKind = .none
    }

    private static func decimalDigits(_ n: Int) -> Int {
        var digits = 1, rest = n
        while rest >= 10 { rest /= 10; digits += 1 }
        return digits
    }

    // MARK: The copy (while the primary exchange sends the request)

    /// Copies the head the primary exchange serialised (`head`: all of it, nothing else) for the mirror revision:
    /// `-shadow` after the Host's name (before a port), the mirror revision's Knative/KServe lines instead of the
    /// primary's (`primary`), and the shadow marker. False when it does not fit the bound (or does not have the
    /// shape Exchange.begin gives every head, which would be our bug): the mirror is dropped.
    func copyHead(_ head: UnsafeRawBufferPointer, primary: Revision) -> Bool {
        guard let out = request, let target else { return false }
        let n = head.count
        var lineEnd = 0
        while lineEnd + 1 < n && !(head[lineEnd] == 0x0D && head[lineEnd + 1] == 0x0A) { lineEnd += 1 }
        let hostStart = lineEnd + 8  // past "\r\nHost: "
        guard hostStart < n else { return false }
        var hostEnd = hostStart
        while hostEnd < n && head[hostEnd] != 0x0D { hostEnd += 1 }
        // The name ends at a port's ':', which comes after an IPv6 literal's ']'.
        var nameEnd = hostEnd
        var i = hostEnd
        while i > hostStart {
            i -= 1
            if head[i] == 0x3A { nameEnd = i; break }
            if head[i] == 0x5D { break }
        }
        let primaryLines = primary.upstreamHeaders
        let linesEnd = n - 2 - framingLineBytes
        let linesStart = linesEnd - primaryLines.count
        guard linesStart > hostEnd else { return false }
        for k in 0..<primaryLines.count where head[linesStart + k] != primaryLines[k] { return false }
        let marker: StaticString = "X-Sluice-Shadow: 1\r\n"
        guard n + 7 - primaryLines.count + target.upstreamHeaders.count + marker.utf8CodeUnitCount <= maxBytes else { return false }
        out.append(UnsafeRawBufferPointer(rebasing: head[0..<nameEnd]))
        out.append("-shadow")
        out.append(UnsafeRawBufferPointer(rebasing: head[nameEnd..<linesStart]))
        out.append(target.upstreamHeaders)
        out.append(marker)
        out.append(UnsafeRawBufferPointer(rebasing: head[linesEnd..<n]))
        return true
    }

    /// Copies request body bytes as framed toward the pod; false past the bound (the mirror is dropped).
    func copyBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let out = request, out.readableBytes + bytes.count <= maxBytes else { return false }
        out.append(bytes)
        return true
    }

    private func releaseRequest() {
        if let request { worker.buffers.give(request) }
        request = nil
    }

    // MARK: The mirror's own exchange

    /// Sends the copy (the primary's request is complete): its bounds checked, an endpoint of the mirror revision
    /// picked, a connection from its pool, an Exchange of its own.
    fileprivate func launch() {
        guard let target, let request else { return }
        let worker = self.worker
        let id = target.metricsID
        // Another route generation: its indices mean other endpoints (rare: a swap while the body arrived).
        guard generation == worker.routeGeneration, worker.mirrors.inFlight(id) < worker.settings.mirror.maxInFlight else {
            end(.droppedFull)
            return
        }
        sentNs = MonotonicClock.nanoseconds()
        let indices = target.endpointIndices
        guard var pool = worker.pickEndpoint(indices, tried: TriedEndpoints(), skipEjected: true)
                ?? worker.pickEndpoint(indices, tried: TriedEndpoints(), skipEjected: false) else {
            end(.failed)
            return
        }
        var slot: EndpointHealthSlot? = nil
        if target.containerConcurrency > 0 {
            guard let claimed = worker.claimMirrorSlot(target, pool: pool) else { end(.droppedFull); return }
            pool = claimed
            slot = claimed.health
        }
        guard let upstream = pool.acquire() else {
            if let slot { worker.concurrencySlotReleased(slot) }
            worker.recordGatewayFailure(pool, revision: target)
            end(.failed)
            return
        }
        let exchange = worker.exchanges.take(for: worker)
        self.exchange = exchange
        worker.mirrors.add(self, id: id)
        self.request = nil
        exchange.startShadow(downstream: self, pool: pool, upstream: upstream, revision: target, slot: slot,
                             requestWasHEAD: requestWasHEAD, request: request)
        worker.buffers.give(request)
    }

    /// The mirror is over (sent and ended, or dropped before): counted under its revision, and this shadow is free.
    fileprivate func end(_ result: MirrorResult) {
        guard let target else { return }
        let now = MonotonicClock.nanoseconds()
        worker.metrics.recordMirror(revisionID: target.metricsID, result: result,
                                    durationNs: sentNs > 0 && now > sentNs ? now - sentNs : 0)
        if let exchange {
            self.exchange = nil
            exchange.abandonUpstream()
            worker.exchanges.recycle(exchange, loop: worker.loop)
        }
        worker.mirrors.remove(self, id: target.metricsID)
        releaseRequest()
        self.target = nil
        deadline = .max
        deadlineKind = .none
        if worker.mirrors.free.count < 256 { worker.mirrors.free.append(self) }
    }

    /// The worker stops: the exchange's pod connection is closed, nothing is counted.
    fileprivate func cut() {
        guard let target else { return }
        if let exchange {
            self.exchange = nil
            exchange.abandonUpstream()
        }
        worker.mirrors.remove(self, id: target.metricsID)
        self.target = nil
    }

    /// The sweep: a timer of the mirror's exchange that ran out.
    func checkDeadline(now: Int64) {
        guard now >= deadline, let exchange else { return }
        let kind = deadlineKind
        deadline = .max
        deadlineKind = .none
        switch kind {
        case .upstreamConnect: exchange.connectTimedOut()
        case .upstreamResponse: exchange.responseTimedOut()
        case .responseBodyIdle, .requestBodyIdle: end(.timeout)
        case .requestHead, .keepAliveIdle, .lingering, .queued, .none: return
        }
    }

    // MARK: ExchangeDownstream: the body is all in the copy, the response goes nowhere

    func pullRequestBody(for exchange: Exchange, into out: ByteBuffer) -> RequestBodyPull { .noData }
    func upstreamTookRequestBytes() {}
    func writeResponseHead(_ head: ResponseHead, base: UnsafeRawPointer, for exchange: Exchange) { status = head.status }
    func writeResponseBody(_ bytes: UnsafeRawBufferPointer) {}
    func endResponseBody() {}
    var responseBufferedBytes: Int { 0 }
    func flushResponse() {}
    func exchangeFinished(closeAfter: Bool) { end(status >= 500 ? .failed : .ok) }

    func failExchange(_ response: ErrorResponse) {
        switch response.answer {
        case .upstreamTimeout, .upstreamConnectTimeout: end(.timeout)
        default: end(.failed)
        }
    }

    func abortExchange(_ flags: RequestRecord.Flags) {
        end(flags.contains(.streamIdleTimeout) ? .timeout : .failed)
    }
}

extension Worker {
    /// Whether a default-host request routed to another revision of a mirrored service is mirrored (the share,
    /// one draw of the worker's random), and if so the shadow that copies it as the primary exchange sends it.
    /// A request that cannot be mirrored is counted dropped at once: a body known to be over the bound, or the
    /// revision's mirrors in flight at their bound (the copy would be dropped anyway).
    func beginMirror(_ mirror: MirrorRoute, service: ServiceRoute, head: RequestHead) -> ShadowDownstream? {
        guard mirror.mirrors(random.next()) else { return nil }
        let target = service.revisions[mirror.revisionIndex]
        let bound = settings.mirror
        if case .contentLength(let n) = head.framing, n > bound.maxRequestBytes {
            metrics.recordMirror(revisionID: target.metricsID, result: .droppedBody, durationNs: 0)
            return nil
        }
        guard mirrors.inFlight(target.metricsID) < bound.maxInFlight else {
            metrics.recordMirror(revisionID: target.metricsID, result: .droppedFull, durationNs: 0)
            return nil
        }
        let shadow = mirrors.free.popLast() ?? ShadowDownstream(worker: self)
        shadow.prepare(target: target, generation: routeGeneration, head: head, maxBytes: bound.maxRequestBytes, buffer: buffers.take())
        return shadow
    }

    /// The primary's request is complete and copied: the mirror goes.
    func launchMirror(_ shadow: ShadowDownstream) { shadow.launch() }

    /// The copy cannot be completed (too large, the client's body never ended): counted and dropped.
    func dropMirror(_ shadow: ShadowDownstream, _ result: MirrorResult) { shadow.end(result) }

    /// A concurrency slot for a mirror at `pool`'s endpoint or another of the revision's; nil: all taken (the
    /// mirror is dropped, never queued ahead of client requests).
    fileprivate func claimMirrorSlot(_ revision: Revision, pool: ConnectionPool) -> ConnectionPool? {
        let limit = revision.containerConcurrency
        if pool.health.claimSlot(limit: limit) { return pool }
        let now = loop.now
        for index in revision.endpointIndices where index < pools.count {
            let other = pools[index]
            guard other !== pool, !other.health.isEjected(nowMs: now), other.health.claimSlot(limit: limit) else { continue }
            return other
        }
        return nil
    }

    /// The sweep: timers of the mirrors in flight (backwards: one that ends is replaced by the last, checked already).
    func checkMirrorDeadlines(now: Int64) {
        var i = mirrors.active.count
        while i > 0 {
            i -= 1
            if i < mirrors.active.count { mirrors.active[i].checkDeadline(now: now) }
        }
    }

    /// The loop is stopping: mirrors in flight are cut (nobody waits for them), uncounted.
    func abandonMirrors() {
        for shadow in mirrors.active { shadow.cut() }
    }
}
