// Proxy layer: one request/response pair between a client and a pod, whatever protocol the client speaks —
// serialises the request head for the pod, streams both bodies with backpressure, parses and relays the response,
// pools (or retries on) the upstream connection and keeps the deadlines. The client side plugs in through
// ExchangeDownstream: DownstreamConnection for HTTP/1.1, H2Stream for HTTP/2, ShadowDownstream for a mirror's copy
// (which the client's exchange makes as it sends the request).
import SluiceHTTP1
import SluiceIO
import SluiceRouting
#if canImport(Glibc)
import Glibc
#endif

/// One try toward one endpoint: its pool, its connection, and when that connection was ready for the request.
/// The Exchange owns its attempts (one at a time); the replay buffer stays with the Exchange, so a failed attempt can
/// be followed by another — on a fresh connection, or toward another endpoint — before any response byte reached
/// the client.
struct UpstreamAttempt {
    let pool: ConnectionPool
    var upstream: UpstreamConnection?
    /// Monotonic ns when the connection was ready (pooled: at once; new: when the connect finished); 0 before.
    var connectedNs: UInt64 = 0
    /// Counted in `pool.outstanding` (power of two choices) until it ends.
    private var isOutstanding = false

    init(pool: ConnectionPool, upstream: UpstreamConnection) {
        self.pool = pool
        self.upstream = upstream
    }

    mutating func markOutstanding() {
        guard !isOutstanding else { return }
        isOutstanding = true
        pool.outstanding += 1
    }

    /// The attempt is over: the pool's count drops; the connection is the caller's to pool or close.
    mutating func end() {
        if isOutstanding { pool.outstanding -= 1; isOutstanding = false }
    }
}

final class Exchange: UpstreamDelegate {
    /// The request body as framed toward the pod (Sluice computes it: RFC 9112 §6.3, RFC 9113 §8.2).
    enum RequestBody {
        case contentLength(remaining: Int)
        case chunked
        case done
    }

    enum ResponseBody {
        case awaitingHead
        case contentLength(remaining: Int)
        case chunked
        case untilClose
        case done
    }

    /// unowned(unsafe). Invariant: the downstream owns the exchange and ends it (abandonUpstream, from every way out
    /// of the request: RequestLifecycle.swift) before it goes away; a pump keeps a strong reference for its own
    /// duration. Exercised under AddressSanitizer by RequestLifecycleTests (a client reset while its request is at
    /// the pod) and StreamingTests (a client leaving mid-response).
    /// Set by `start` for each request (an exchange is recycled by its worker once the request is over).
    private(set) unowned(unsafe) var downstream: (any ExchangeDownstream)!
    /// unowned(unsafe): the worker outlives every exchange (its downstreams are closed before the loop returns).
    unowned(unsafe) let worker: Worker
    /// The attempt in progress (or the last one).
    private(set) var attempt: UpstreamAttempt!
    private(set) var attemptCount = 1
    var pool: ConnectionPool { attempt.pool }
    private(set) var upstream: UpstreamConnection? {
        get { attempt.upstream }
        set { attempt.upstream = newValue }
    }
    var upstreamConnectedNs: UInt64 { attempt.connectedNs }
    /// Monotonic ns when the pod's final response head was parsed; 0 before.
    private(set) var firstResponseByteNs: UInt64 = 0
    /// The routes this request started with (a hand-over mid-request does not move it), the endpoints it tried, and
    /// where it is now: a retry may move it to another endpoint, or another revision of its service.
    /// What another attempt chooses from, kept as plain fields (a `Route` held here was copied, and each of its
    /// references counted, at every read): the service (unowned(unsafe): read only while `routeGeneration` is the
    /// worker's, see Route), the revision's index in it, the endpoints tried.
    private unowned(unsafe) var service: ServiceRoute?
    private var revisionIndex = 0
    private var routeGeneration = 0
    private var tried = TriedEndpoints()
    private(set) var revision: Revision!
    private(set) var tag: TagRoute?
    /// The containerConcurrency slot held at the current attempt's endpoint.
    private var concurrencySlot: EndpointHealthSlot?
    /// The endpoint `retry` chose, between choosing it and starting the attempt there.
    private var nextPool: ConnectionPool?
    private(set) var requestWasHEAD = false
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2): `reset-idempotent` retries these.
    private var requestIsIdempotent = false
    private(set) var requestBody: RequestBody = .done
    private(set) var requestBodyBytes = 0
    private(set) var response: ResponseBody = .awaitingHead
    /// The downstream closes after this response (HTTP/1.1 only; the H1 sink may set it while writing the head).
    var closeAfterResponse = false
    private var upstreamKeepAlive = true
    private(set) var responseStarted = false
    /// A copy of every request byte sent so far, kept while it stays within the replay bound, so that a failed
    /// attempt can be followed by another.
    private var replay = ReplayBuffer()
    private var isPumpingResponse = false
    /// Timeouts, limits and retries, resolved when the request was routed.
    private(set) var policy: RequestPolicy
    private var bufferBytes: Int { policy.bufferBytes }
    /// The revision this request counts under in its worker's retry budget (`Revision.metricsID`), and whether it
    /// counts as a retry there (from its first retry to its end); -1 when it no longer counts.
    private var loadID = -1
    private var isRetrying = false
    /// Loop-clock ms: the end of the response timeout over all attempts, and of the current try's; 0 when unset.
    private var responseDeadlineMs: Int64 = 0
    private var tryDeadlineMs: Int64 = 0
    /// The mirror copying this request as it is sent (ShadowExchange.swift), until the request is complete and the
    /// mirror goes, or it is dropped; nil for a request that is not mirrored.
    private var shadow: ShadowDownstream?
    /// Parsing state for the pod's response. It lives here, in the worker's recycled exchanges, and not in the
    /// downstream: an idle client connection holds none of it, and an HTTP/2 stream does not allocate its own.
    private(set) var responseParser: ResponseParser
    private var responseDecoder = ChunkedDecoder()

    /// An exchange for `worker`'s requests; `start` readies it for each one (ExchangeRecycler.take).
    init(worker: Worker) {
        self.worker = worker
        policy = RequestPolicy(settings: worker.settings)  // replaced by each request's own in `start`
        responseParser = ResponseParser(limits: worker.headLimits)
    }

    /// Readies the exchange for one request: every per-request field is set here, for a new and a recycled
    /// exchange alike.
    func start(downstream: any ExchangeDownstream, route: Route, upstream: UpstreamConnection, head: RequestHead,
               methodBytes: UnsafeRawBufferPointer, policy: RequestPolicy, closeAfterResponse: Bool) {
        var policy = policy
        policy.resolve(service: route.service, revision: route.revision)
        prepare(downstream, pool: route.pool, upstream: upstream, policy: policy, revision: route.revision, slot: route.slot,
                requestWasHEAD: head.isHEAD, closeAfterResponse: closeAfterResponse)
        attemptCount = route.tried.count
        tag = route.tag
        service = route.service
        revisionIndex = route.revisionIndex
        routeGeneration = route.generation
        tried = route.tried
        requestIsIdempotent = Self.isIdempotent(methodBytes)
        switch head.framing {
        case .none: requestBody = .done
        case .contentLength(let n): requestBody = n > 0 ? .contentLength(remaining: n) : .done
        case .chunked: requestBody = .chunked
        }
        loadID = route.revision.metricsID
        isRetrying = attemptCount > 1
        worker.retryLoadBegin(loadID)
        if isRetrying { worker.retryLoadStartRetrying(loadID) }
        // Mirroring: default-host requests only (no tag), and not those the split sent to the mirror revision itself.
        if let mirror = route.service.mirror, route.tag == nil, route.revisionIndex != mirror.revisionIndex {
            shadow = worker.beginMirror(mirror, service: route.service, head: head)
        }
    }

    /// Readies the exchange for a mirrored request (ShadowExchange.swift) and sends it: `request` is the whole
    /// request as the mirror revision gets it, copied; no retry, no retry budget, the mirror's own timeout.
    func startShadow(downstream: ShadowDownstream, pool: ConnectionPool, upstream: UpstreamConnection, revision: Revision,
                     slot: EndpointHealthSlot?, requestWasHEAD: Bool, request: ByteBuffer) {
        var policy = RequestPolicy(settings: worker.settings)
        policy.resolveShadow(revision: revision, mirror: worker.settings.mirror)
        prepare(downstream, pool: pool, upstream: upstream, policy: policy, revision: revision, slot: slot,
                requestWasHEAD: requestWasHEAD, closeAfterResponse: false)
        attemptCount = 1
        tag = nil
        service = nil
        revisionIndex = 0
        routeGeneration = worker.routeGeneration
        tried = TriedEndpoints()
        requestIsIdempotent = false
        requestBody = .done
        loadID = -1
        isRetrying = false
        shadow = nil
        replay = ReplayBuffer()
        upstream.attach(self)
        upstream.output!.append(request.readable)
        startSending(upstream, flush: true)
    }

    /// The per-request fields a client's request (`start`) and a mirror's (`startShadow`) set alike: the first
    /// attempt, the policy, the revision and its concurrency slot, and a response not begun.
    @inline(__always)
    private func prepare(_ downstream: any ExchangeDownstream, pool: ConnectionPool, upstream: UpstreamConnection,
                         policy: RequestPolicy, revision: Revision, slot: EndpointHealthSlot?, requestWasHEAD: Bool,
                         closeAfterResponse: Bool) {
        self.downstream = downstream
        attempt = UpstreamAttempt(pool: pool, upstream: upstream)
        firstResponseByteNs = 0
        self.policy = policy
        self.revision = revision
        concurrencySlot = slot
        self.requestWasHEAD = requestWasHEAD
        requestBodyBytes = 0
        response = .awaitingHead
        self.closeAfterResponse = closeAfterResponse
        upstreamKeepAlive = true
        responseStarted = false
        isPumpingResponse = false
        responseDeadlineMs = 0
        tryDeadlineMs = 0
        // A reload may have changed the head limits since this (recycled) exchange was made.
        if responseParser.limits != worker.headLimits { responseParser = ResponseParser(limits: worker.headLimits) }
        responseParser.reset()
        responseDecoder.reset()
    }

    /// The attempt is under way: a connect in progress has its timer (the send follows on connect), an open
    /// connection starts the request's timer and, when `flush`, sends what is buffered.
    private func startSending(_ upstream: UpstreamConnection, flush: Bool) {
        attempt.markOutstanding()
        if upstream.state == .connecting {
            downstream.setDeadline(.upstreamConnect, after: policy.upstreamConnectMs)
        } else {
            attempt.connectedNs = MonotonicClock.nanoseconds()
            armRequestDeadline()
            if flush { upstream.flush() }
        }
    }

    /// The request is complete (its body all sent): a mirror that copied it goes now; one that could not copy
    /// it is dropped.
    private func releaseShadow(complete: Bool) {
        guard let shadow else { return }
        self.shadow = nil
        if complete { worker.launchMirror(shadow) } else { worker.dropMirror(shadow, .droppedBody) }
    }

    /// RFC 9110 §9.2.2's idempotent methods.
    private static func isIdempotent(_ method: UnsafeRawBufferPointer) -> Bool {
        switch method.count {
        case 3: return equalsBytes(method, "GET") || equalsBytes(method, "PUT")
        case 4: return equalsBytes(method, "HEAD")
        case 5: return equalsBytes(method, "TRACE")
        case 6: return equalsBytes(method, "DELETE")
        case 7: return equalsBytes(method, "OPTIONS")
        default: return false
        }
    }

    /// The request is over (its downstream let go of it): what it still refers to is dropped, so that a recycled
    /// exchange keeps no route table, pool or connection alive.
    func clear() {
        precondition(upstream == nil && replay.bytes == nil && loadID < 0, "an exchange is recycled with its pod connection, replay buffer or retry load")
        downstream = nil
        attempt = nil  // `shadow` is nil already: every way out of a request passes abandonUpstream
        service = nil
        revision = nil
        tag = nil
        nextPool = nil
    }

    /// The request stops counting in its revision's retry budget (its last attempt ended).
    private func endLoad() {
        if let slot = concurrencySlot {
            concurrencySlot = nil
            worker.concurrencySlotReleased(slot)
        }
        guard loadID >= 0 else { return }
        worker.retryLoadEnd(loadID, wasRetrying: isRetrying)
        loadID = -1
        isRetrying = false
    }

    var requestBodyDone: Bool {
        if case .done = requestBody { return true }
        return false
    }

    // MARK: Request

    /// Serialises the request head for the pod (never the client's bytes: RFC 9112 §6.3, hardening.md §1.7),
    /// then starts sending. `base` is where the head's spans point; `trace` is the request's context (its
    /// `traceparent` is ours: the caller's trace, our span id).
    func begin(head: RequestHead, headBytes base: UnsafeRawPointer, trace: TraceContext) {
        let upstream = self.upstream!
        upstream.attach(self)
        let out = upstream.output!
        @inline(__always) func bytes(_ span: ByteSpan) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + span.start, count: span.count)
        }
        out.append(bytes(head.method))
        out.append(byte: 0x20)
        if head.targetIsEmptyPath { out.append(byte: 0x2F) } else { out.append(bytes(head.target)) }
        out.append(" HTTP/1.1\r\nHost: ")
        out.append(bytes(head.host!))
        out.append("\r\n")
        ForwardedHeaders.resolveRequestId(&downstream.requestId, fields: head.headers, base: base, random: &worker.random)
        for field in head.headers {
            switch ForwardedHeaders.action(field, name: bytes(field.name)) {
            case .forward:
                out.append(bytes(field.name))
                out.append(": ")
                out.append(bytes(field.value))
                out.append("\r\n")
            case .tracestate where trace.isContinued:
                out.append(bytes(field.name))
                out.append(": ")
                out.append(bytes(field.value))
                out.append("\r\n")
            case .drop, .joinForwardedFor, .requestId, .traceparent, .tracestate:
                continue  // X-Forwarded-For, X-Request-Id and traceparent are ours, written once below; a restarted trace's tracestate goes
            }
        }
        out.append("X-Forwarded-For: ")
        ForwardedHeaders.appendForwardedFor(fields: head.headers, base: base, peerIP: downstream.peerIP, into: out)
        out.append("\r\nX-Forwarded-Proto: ")
        out.append(ForwardedHeaders.forwardedProto(isTLS: downstream.isTLS))
        out.append("\r\nX-Request-Id: ")
        out.append(downstream.requestId)
        out.append("\r\n")
        ForwardedHeaders.appendTraceparent(trace, into: out)
        if let tag { out.append(tag.upstreamHeader) }
        out.append(revision.upstreamHeaders)
        switch head.framing {
        case .none:
            break
        case .contentLength(let n):
            out.append("Content-Length: ")
            out.append(decimal: n)
            out.append("\r\n")
        case .chunked:
            out.append("Transfer-Encoding: chunked\r\n")
        }
        out.append("\r\n")
        if let shadow, !shadow.copyHead(out.readable, primary: revision) { self.shadow = nil; worker.dropMirror(shadow, .droppedBody) }
        replay = ReplayBuffer()
        if policy.retries.attempts > 0 {
            replay.start(worker.buffers)
            replay.keep(out.readable, limit: policy.retries.maxReplayBytes, worker.buffers)
        }
        // With a body to come, the pump flushes head and body together: one send per request, not two.
        startSending(upstream, flush: requestBodyDone)
        // After the primary's own send (or its connect, under way): the mirror never goes ahead of it.
        if shadow != nil && requestBodyDone { releaseShadow(complete: true) }
    }

    private func armRequestDeadline() {
        // While the pod's connection is still connecting (TCP, then the TLS handshake for https), the connect
        // deadline stands: the first body pump right after `begin` must not replace it with the response timeout.
        // upstreamConnected arms this one once the connection is open.
        if upstream?.state == .connecting { return }
        if requestBodyDone {
            if !responseStarted { armResponseDeadline() }
        } else {
            downstream.setDeadline(.requestBodyIdle, after: policy.bodyIdleMs)
        }
    }

    /// The wait for the response head: the sooner of the overall response timeout (from the first send, over all
    /// attempts) and the current try's `perTryTimeout`.
    private func armResponseDeadline() {
        let now = worker.loop.now
        if responseDeadlineMs == 0 && policy.upstreamResponseMs > 0 { responseDeadlineMs = now + Int64(policy.upstreamResponseMs) }
        if tryDeadlineMs == 0 && policy.retries.perTryTimeoutMs > 0 { tryDeadlineMs = now + Int64(policy.retries.perTryTimeoutMs) }
        var end = responseDeadlineMs
        if tryDeadlineMs > 0 && (end == 0 || tryDeadlineMs < end) { end = tryDeadlineMs }
        downstream.setDeadline(.upstreamResponse, after: end == 0 ? 0 : max(1, Int(end - now)))
    }

    /// The downstream's `.upstreamResponse` timer fired: a try ran past `perTryTimeout` (another attempt, when one
    /// is left) or the request past its response timeout (504).
    func responseTimedOut() {
        let now = worker.loop.now
        let overall = responseDeadlineMs > 0 && now >= responseDeadlineMs
        worker.recordGatewayFailure(pool, revision: revision, timedOut: true)
        if !overall && tryDeadlineMs > 0 && retry(after: .perTryTimeout) { return }
        failBeforeResponse(.upstreamTimeout)
    }

    /// The downstream's `.upstreamConnect` timer fired.
    func connectTimedOut() {
        pool.connectFailedLater()
        worker.recordGatewayFailure(pool, revision: revision, timedOut: true)
        if retry(after: .connectFailure) { return }
        failBeforeResponse(.upstreamConnectTimeout)
    }

    /// Writes request body bytes toward the pod in the pod's framing. For a Content-Length body, `bytes` must not
    /// run past the remaining length (the source cuts it).
    func forwardRequestBody(_ bytes: UnsafeRawBufferPointer, into out: ByteBuffer) {
        guard bytes.count > 0 else { return }
        switch requestBody {
        case .done:
            return
        case .contentLength(let remaining):
            precondition(bytes.count <= remaining, "request body source ran past Content-Length")
            out.append(bytes)
            requestBody = remaining == bytes.count ? .done : .contentLength(remaining: remaining - bytes.count)
        case .chunked:
            out.append(hex: bytes.count)
            out.append("\r\n")
            out.append(bytes)
            out.append("\r\n")
        }
        requestBodyBytes += bytes.count
    }

    /// The client's body ended: the last chunk for a chunked body (a Content-Length body ends by its count).
    func forwardRequestBodyEnd(into out: ByteBuffer) {
        if case .chunked = requestBody { out.append("0\r\n\r\n") }
        requestBody = .done
    }

    /// Bytes of a Content-Length body still to come (Int.max for chunked).
    var requestBodyRemaining: Int {
        switch requestBody {
        case .done: return 0
        case .contentLength(let remaining): return remaining
        case .chunked: return .max
        }
    }

    /// Moves request body bytes from the client to the pod until one side has nothing or no room.
    func pumpRequestBody() {
        guard let upstream, let out = upstream.output else { return }
        var progressed = false
        while !requestBodyDone {
            if out.readableBytes >= bufferBytes {
                if upstream.state == .open { upstream.flush() }
                // The flush may have failed the attempt and started another (its own pump took over from here).
                if self.upstream !== upstream { return }
                if out.readableBytes >= bufferBytes { break }  // the pod is slow: wait for its EPOLLOUT
            }
            let before = out.readableBytes
            switch downstream.pullRequestBody(for: self, into: out) {
            case .moved:
                break
            case .noData:
                if progressed || requestBodyDone { armRequestDeadline() }
                flushRequest(upstream)
                if shadow != nil && requestBodyDone { releaseShadow(complete: true) }
                return
            case .failed(let error):
                downstream.failExchange(error)
                return
            case .gone:
                // The client left before sending its whole body: nothing can be answered.
                downstream.abortExchange(.downstreamConnectionTermination)
                return
            }
            if policy.maxRequestBodyBytes > 0 && requestBodyBytes > policy.maxRequestBodyBytes {
                downstream.failExchange(.payloadTooLarge)
                return
            }
            if replay.bytes != nil {
                // What this step appended is the tail of `out` (appending may compact, so count from the end).
                let appended = out.readableBytes - before
                replay.keep(UnsafeRawBufferPointer(rebasing: out.readable[(out.readableBytes - appended)...]), limit: policy.retries.maxReplayBytes, worker.buffers)
            }
            if let shadow {
                let appended = out.readableBytes - before
                if !shadow.copyBody(UnsafeRawBufferPointer(rebasing: out.readable[(out.readableBytes - appended)...])) { releaseShadow(complete: false) }
            }
            progressed = true
        }
        if progressed || requestBodyDone { armRequestDeadline() }
        flushRequest(upstream)
        if shadow != nil && requestBodyDone { releaseShadow(complete: true) }
    }

    /// Sends what is buffered for the pod; tells the source when the socket took all of it (HTTP/2 flow control).
    private func flushRequest(_ upstream: UpstreamConnection) {
        guard upstream.state == .open else { return }
        upstream.flush()
        if upstream.output?.isEmpty ?? false { downstream.upstreamTookRequestBytes() }
    }

    /// Request body bytes the pod's socket has not taken yet (HTTP/2 grants flow-control window only for what it took).
    var upstreamPendingBytes: Int { upstream?.output?.readableBytes ?? 0 }

    private func dropReplay() {
        replay.giveUp(worker.buffers)
    }

    // MARK: Upstream events

    func upstreamConnected(_ upstream: UpstreamConnection) {
        attempt.connectedNs = MonotonicClock.nanoseconds()
        armRequestDeadline()
        upstream.flush()
        if !requestBodyDone { pumpRequestBody() }
    }

    func upstreamDrained(_ upstream: UpstreamConnection) {
        // Room toward the pod again: take more of the request body from the client.
        if !requestBodyDone { pumpRequestBody() }
        downstream.upstreamTookRequestBytes()
    }

    func upstreamReadable(_ upstream: UpstreamConnection) {
        pumpResponse()
    }

    func upstreamFailed(_ upstream: UpstreamConnection, errno: Int32) {
        upstreamEnded(errno: errno)
    }

    /// The client took what we had for it: read more of the response.
    func clientDrained() {
        if upstream != nil { pumpResponse() }
    }

    // MARK: Response

    private func pumpResponse() {
        // HTTP/2: flushing can let nghttp2 drain this stream and wake it again; the running pump goes on by itself.
        guard !isPumpingResponse, let upstream, let input = upstream.input else { return }
        isPumpingResponse = true
        defer { isPumpingResponse = false }
        // Strong references for the pump's duration: a flush may close an HTTP/2 stream under us, and end this
        // request (the exchange is recycled only at the end of the loop's tick).
        let downstream: any ExchangeDownstream = self.downstream
        while true {
            switch response {
            case .done:
                return
            case .awaitingHead:
                if !input.isEmpty {
                    switch responseParser.parse(input.readable, requestWasHEAD: requestWasHEAD) {
                    case .complete:
                        let head = responseParser.head
                        if head.status < 200 {
                            // 1xx interim responses: 100 Continue was already answered by us, 101 cannot happen
                            // because Upgrade is never forwarded, others (103) are not relayed.
                            if head.status == 101 { failBeforeResponse(.upstreamInvalid); return }
                            input.consume(head.headLength)
                            responseParser.reset()
                            continue
                        }
                        worker.recordAnswer(pool, status: head.status, revision: revision)
                        if policy.retries.retries(status: head.status), requestBodyDone, retry(after: .status(head.status)) {
                            return  // the answer is dropped with its connection; the next attempt's comes instead
                        }
                        startResponse(head, base: input.readable.baseAddress!)
                        input.consume(head.headLength)
                        if case .done = response { finishResponse(); return }
                        continue
                    case .failed:
                        failBeforeResponse(.upstreamInvalid)
                        return
                    case .incomplete:
                        break
                    }
                }
            case .contentLength(let remaining):
                if !input.isEmpty {
                    let n = min(remaining, input.readableBytes)
                    downstream.writeResponseBody(UnsafeRawBufferPointer(rebasing: input.readable[0..<n]))
                    input.consume(n)
                    if n == remaining { finishResponse(); return }
                    response = .contentLength(remaining: remaining - n)
                }
            case .chunked:
                var ended = false
                while !input.isEmpty {
                    let (consumed, step) = responseDecoder.next(input.readable)
                    switch step {
                    case .data(let span):
                        downstream.writeResponseBody(UnsafeRawBufferPointer(rebasing: input.readable[span.start..<(span.start + span.count)]))
                    case .needMore:
                        break
                    case .end:
                        ended = true
                    case .failed:
                        // Framing broke mid-body: the client cannot be told more than by closing.
                        upstreamKeepAlive = false
                        downstream.abortExchange(.upstreamProtocolError)
                        return
                    }
                    input.consume(consumed)
                    if ended { break }
                }
                if ended { finishResponse(); return }
            case .untilClose:
                if !input.isEmpty {
                    downstream.writeResponseBody(input.readable)
                    input.consume(input.readableBytes)
                }
            }
            // Everything at hand is relayed; read more only while the client keeps up.
            if downstream.responseBufferedBytes >= bufferBytes {
                downstream.flushResponse()
                // The flush may have ended the exchange (client gone): then the upstream and its buffers are gone too.
                if self.upstream !== upstream { return }
                if downstream.responseBufferedBytes >= bufferBytes { return }  // the client is slow: wait for it
            }
            guard upstream.mayBeReadable else { break }
            switch upstream.readOnce(limit: bufferBytes) {
            case .bytes:
                if responseStarted {
                    downstream.setDeadline(.responseBodyIdle, after: policy.bodyIdleMs)
                }
                continue
            case .wouldBlock:
                break
            case .endOfFile:
                upstreamEnded(errno: 0)
                return
            case .failed(let e):
                upstreamEnded(errno: e)
                return
            }
            break
        }
        downstream.flushResponse()
    }

    /// The pod closed the connection (errno 0) or it failed.
    private func upstreamEnded(errno: Int32) {
        upstreamKeepAlive = false
        switch response {
        case .untilClose where errno == 0:
            finishResponse()
        case .awaitingHead:
            let neverAnswered = (upstream?.input?.isEmpty ?? true)
            let connected = upstream?.everConnected == true
            let failure: AttemptFailure
            if !connected {
                failure = .connectFailure
                pool.connectFailedLater()
                worker.recordGatewayFailure(pool, revision: revision)
            } else if errno != 0 || !requestBodyDone || !(upstream?.output?.isEmpty ?? true) {
                // An error (ECONNRESET, EPIPE) rather than a FIN means the pod's kernel refused our bytes — unread at
                // its close, or sent after it: on a reused connection, the idle-close race; the pod never had the whole
                // request, or it could not have ended its read with a FIN. So does a body not yet all sent.
                failure = .resetBeforeRequest
                if (upstream?.exchanges ?? 0) == 0 { worker.recordGatewayFailure(pool, revision: revision) }
            } else {
                // A FIN after the whole request: the pod may have read it (and died, or closed on purpose).
                failure = .resetAfterRequest
                worker.recordGatewayFailure(pool, revision: revision)
            }
            if neverAnswered && retry(after: failure) { return }
            failBeforeResponse(connected ? .upstreamClosed : .upstreamConnectFailed)
        case .done:
            return
        case .contentLength, .chunked, .untilClose:
            downstream.abortExchange(.upstreamConnectionTermination)
        }
    }

    /// Why an attempt failed, as the retry conditions name it.
    enum AttemptFailure {
        case connectFailure, resetBeforeRequest, resetAfterRequest, perTryTimeout
        case status(Int)
    }

    /// Starts another attempt if the request's retry policy allows one for `failure`: attempts left, nothing of the
    /// response sent to the client, every request byte sent still held, the revision's retry budget not spent, and an
    /// endpoint not tried yet (another revision's for an untagged request, when its own has none left).
    private func retry(after failure: AttemptFailure) -> Bool {
        let retries = policy.retries
        guard !responseStarted, attemptCount <= retries.attempts, let replayable = replay.replayable else { return false }
        switch failure {
        case .connectFailure: guard retries.retryOn.contains(.connectFailure) else { return false }
        case .resetBeforeRequest: guard retries.retryOn.contains(.resetBeforeRequest) else { return false }
        case .resetAfterRequest:
            guard retries.retryOn.contains(.reset) || (requestIsIdempotent && retries.retryOn.contains(.resetIdempotent)) else { return false }
        case .perTryTimeout: break
        case .status(let status): guard retries.retries(status: status) else { return false }
        }
        guard isRetrying || worker.retryBudgetAllows(loadID, retries) else { return false }
        guard routeGeneration == worker.routeGeneration, let service = self.service else {
            // The routes were swapped since: the indices mean other endpoints now, and the service may be gone (it is
            // not read, so not retained, here). The same endpoint again, on a fresh connection.
            attemptCount += 1
            guard let fresh = pool.connect() else {
                worker.recordGatewayFailure(pool, revision: revision)
                return false
            }
            nextPool = pool
            startAttempt(on: fresh, replaying: replayable)
            return true
        }
        var next = Route(service: service, revisionIndex: revisionIndex, revision: revision, tag: tag, pool: pool,
                         tried: tried, generation: routeGeneration, slot: concurrencySlot)
        while attemptCount <= retries.attempts {
            guard worker.nextTarget(&next) else { return false }
            if next.revision.containerConcurrency > 0 || next.slot != nil {
                // The slot goes with the endpoint: give the old one back, take one where the retry goes.
                if let slot = next.slot { next.slot = nil; concurrencySlot = nil; worker.concurrencySlotReleased(slot) }
                if next.revision.containerConcurrency > 0 && !worker.claimConcurrencySlot(&next) { adopt(next); return false }
            }
            next.tried.add(next.pool)
            attemptCount += 1
            guard let fresh = next.pool.connect() else {
                worker.recordGatewayFailure(next.pool, revision: next.revision)
                guard retries.retryOn.contains(.connectFailure) else { break }
                continue
            }
            adopt(next)
            startAttempt(on: fresh, replaying: replayable)
            return true
        }
        adopt(next)
        return false
    }

    /// The request's route is now `next` (its endpoint, revision and slot for the next attempt).
    private func adopt(_ next: Route) {
        revision = next.revision
        revisionIndex = next.revisionIndex
        concurrencySlot = next.slot
        tried = next.tried
        nextPool = next.pool
    }

    /// Ends the current attempt and sends the request again on `fresh` (a new connection to the route's endpoint).
    private func startAttempt(on fresh: UpstreamConnection, replaying replayable: ByteBuffer) {
        upstream?.close()
        attempt.end()
        attempt = UpstreamAttempt(pool: nextPool!, upstream: fresh)
        nextPool = nil
        attempt.markOutstanding()
        if !isRetrying {
            isRetrying = true
            worker.retryLoadStartRetrying(loadID)
        }
        tryDeadlineMs = 0
        upstreamKeepAlive = true
        responseParser.reset()
        responseDecoder.reset()
        fresh.attach(self)
        fresh.output!.append(replayable.readable)
        if fresh.state == .open {
            attempt.connectedNs = MonotonicClock.nanoseconds()
            armRequestDeadline()
            fresh.flush()
            // The rest of the body may be waiting in the client's buffer already, with no event to come for it.
            if !requestBodyDone { pumpRequestBody() }
        } else {
            downstream.setDeadline(.upstreamConnect, after: policy.upstreamConnectMs)
        }
    }

    private func failBeforeResponse(_ error: ErrorResponse) {
        upstreamKeepAlive = false
        downstream.failExchange(error)
    }

    /// Takes the pod's final head: sets the body state, then lets the sink write the head its own way.
    private func startResponse(_ head: ResponseHead, base: UnsafeRawPointer) {
        responseStarted = true
        firstResponseByteNs = MonotonicClock.nanoseconds()
        upstreamKeepAlive = head.keepAlive
        switch head.framing {
        case .none: response = .done
        case .contentLength(let n): response = n > 0 ? .contentLength(remaining: n) : .done
        case .chunked: response = .chunked
        case .untilClose: response = .untilClose
        }
        downstream.writeResponseHead(head, base: base, for: self)
        downstream.setDeadline(.responseBodyIdle, after: policy.bodyIdleMs)
    }

    private func finishResponse() {
        if shadow != nil { releaseShadow(complete: false) }  // answered before its body ended: the copy can never be whole
        response = .done
        downstream.endResponseBody()
        attempt.end()
        endLoad()
        dropReplay()
        if let upstream {
            let reusable = upstreamKeepAlive && requestBodyDone && upstream.isUsable && (upstream.input?.isEmpty ?? true)
            if reusable { upstream.detachAndPool() } else { upstream.close() }
            self.upstream = nil
        }
        downstream.exchangeFinished(closeAfter: closeAfterResponse || !requestBodyDone)
    }

    /// Ends the exchange without a response: the upstream connection is closed, never pooled. Nothing to do once
    /// the exchange is over (finished, or abandoned already): its downstream releases every exchange through here.
    func abandonUpstream() {
        // A request that was complete is still mirrored (its copy is whole) even if its own exchange failed after.
        if shadow != nil { releaseShadow(complete: requestBodyDone) }
        if case .done = response, upstream == nil { endLoad(); return }
        attempt.end()
        endLoad()
        dropReplay()
        upstream?.close()
        upstream = nil
        response = .done
    }
}

/// Byte-for-byte comparison of raw bytes with a literal.
@inline(__always)
func equalsBytes(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
    guard bytes.count == literal.utf8CodeUnitCount else { return false }
    let l = literal.utf8Start
    for i in 0..<bytes.count where bytes[i] != l[i] { return false }
    return true
}

/// ASCII case-insensitive comparison of raw bytes with a lower-case literal.
@inline(__always)
func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
    guard bytes.count == lower.utf8CodeUnitCount else { return false }
    let l = lower.utf8Start
    for i in 0..<bytes.count {
        var c = bytes[i]
        if c >= 0x41 && c <= 0x5A { c |= 0x20 }
        if c != l[i] { return false }
    }
    return true
}

/// The worker's Exchange objects, reused so that a steady-state request allocates none. One whose request ended
/// goes back to the free list at the end of the loop's tick, and only when nothing else still holds it, so that no
/// frame still on the stack (a pump that just finished the response) can see it start another request.
final class ExchangeRecycler: DeferredTask {
    private var free: [Exchange] = []
    private var ended: [Exchange] = []
    private let maxFree = 1024

    init() {
        free.reserveCapacity(64)
        ended.reserveCapacity(64)
    }

    func take(for worker: Worker) -> Exchange {
        free.popLast() ?? Exchange(worker: worker)
    }

    /// The downstream let go of `exchange` (its request finished, answered or aborted).
    func recycle(_ exchange: Exchange, loop: EventLoop) {
        if ended.isEmpty { loop.runAfterThisBatch(self) }
        ended.append(exchange)
    }

    func runDeferred() {
        for i in ended.indices where free.count < maxFree && isKnownUniquelyReferenced(&ended[i]) {
            ended[i].clear()
            free.append(ended[i])
        }
        ended.removeAll(keepingCapacity: true)
    }
}
