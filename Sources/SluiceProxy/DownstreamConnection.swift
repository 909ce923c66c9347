// Proxy layer: one client connection speaking HTTP/1.1 (handed over by ClientAcceptor once the protocol is known) —
// reads requests, routes each to a revision and a pod, streams the body both ways with backpressure, answers in
// order (pipelining) with keep-alive, and ends by a lingering close after an error answer.
import SluiceHTTP1
import SluiceIO
import SluiceRouting
#if canImport(Glibc)
import Glibc
#endif

final class DownstreamConnection: QueuedRequest, EventHandler, ExchangeDownstream, RequestOwner, ClosableOnDrain {
    /// Where the connection is in its life; each request goes awaitingRequest → exchanging → awaitingRequest.
    enum Phase {
        /// Between requests, or while the request head arrives.
        case awaitingRequest
        /// A request is routed: its body and the response stream through `exchange`.
        case exchanging
        /// The request's revision is at its containerConcurrency: it waits in the revision's queue, its head parsed
        /// and still in `input`; nothing more is read from the client meanwhile.
        case queued
        /// The last response is being written; the connection closes once it is out.
        case closing
        /// Lingering close (nginx's): the response is out and our side shut down; what the client still sends (the
        /// rest of an upload we refused) is read and dropped until its FIN or a bounded time, so that closing with
        /// unread bytes cannot turn into a RST that destroys the answer before the client read it.
        case lingering
        case closed
    }

    let fd: Int32
    /// unowned(unsafe), as a checked reference costs a retain per use. Invariant: the worker outlives its connections
    /// — it closes every one at the drain deadline (Worker.drainDeadlinePassed) before its loop returns, and lives
    /// until its thread ends. Exercised under AddressSanitizer by DrainTests (a request cut at the deadline).
    unowned(unsafe) let worker: Worker
    private var registration: Registration?
    private(set) var phase: Phase = .awaitingRequest
    /// Client → gateway bytes; a pooled buffer held only while there is something in it.
    var input: ByteBuffer?
    /// Gateway → client bytes.
    var output: ByteBuffer?
    var parser: RequestParser
    var requestDecoder = ChunkedDecoder()
    /// The client's address as text, for X-Forwarded-For (rendered once per connection).
    let peerIP: [UInt8]
    /// Edge-triggered reads: true until a read returns EAGAIN or a short count.
    var mayBeReadable = true
    var requestsServed = 0
    var deadline: Int64 = .max
    var deadlineKind: DeadlineKind = .none
    /// When the connection last fell idle between requests (the loop's clock), for the drain's grace.
    private var idleSince: Int64 = 0
    /// A connection idle this long when the drain starts closes at once; one that just carried a request is given the
    /// rest of it, since its client's next request may already be on the wire: answered (with Connection: close) it
    /// is a request served, met by our FIN it is a request lost. Longer than a client's turnaround plus a round trip
    /// on the networks a gateway serves, short against any shutdownTimeout. A takeover under load depends on it.
    static let drainIdleGraceMs: Int64 = 500
    /// The request in flight (nil between requests).
    var exchange: Exchange?
    /// The request's X-Request-Id (the client's, or one we made), reused across requests.
    var requestId: [UInt8] = []
    /// Plain TCP or TLS: every client byte goes through it.
    private var transport: Transport
    var isTLS: Bool { transport.isTLS }
    /// The request in flight keeps the connection open afterwards (RFC 9112 §9.3).
    var requestKeepAlive = true
    /// The revision whose queue the request waits in (phase `.queued`).
    private var queuedRevision: Revision?
    var requestIsHTTP10 = false
    /// The response in flight is re-framed as chunked (chunked or close-delimited from the pod, HTTP/1.1 client).
    var rechunkResponse = false
    /// The client sent its FIN (EPOLLRDHUP): once the socket is drained, nothing more will come from it.
    private(set) var clientFinishedSending = false
    /// The connection closes after an answer while the client may still be sending (an error answer, a response
    /// before the end of the upload): close by lingering, not at once.
    private var lingerOnClose = false
    /// The request in progress (RequestLifecycle.swift), open from its first byte to its finish; its storage is the
    /// worker's, lent while the request runs.
    private var recordBox: RequestRecordBox?
    var record: RequestRecord {
        get { recordBox?.record ?? RequestRecord.empty }
        _modify {
            if recordBox == nil { recordBox = worker.takeRecordBox() }
            yield &recordBox!.record
        }
    }
    var isRequestOpen = false
    /// The request's trace context, read without copying the whole record out of its box.
    var trace: TraceContext { recordBox?.record.trace ?? TraceContext() }

    func recordFinished() {
        if let recordBox { worker.giveRecordBox(recordBox) }
        recordBox = nil
    }

    /// Takes over a client connection whose first bytes are HTTP/1.1 (ClientAcceptor): its transport, its
    /// registration, the bytes read so far and the request-head deadline that started at accept (or handshake).
    static func adopt(transport: Transport, registration: Registration, peerIP: [UInt8], worker: Worker,
                      received: ByteBuffer?, mayBeReadable: Bool, clientFinishedSending: Bool, requestHeadDeadline: Int64) {
        let connection = DownstreamConnection(transport: transport, peerIP: peerIP, worker: worker)
        connection.registration = registration
        worker.loop.replaceHandler(of: registration, with: connection)
        connection.input = received
        connection.mayBeReadable = mayBeReadable
        connection.clientFinishedSending = clientFinishedSending
        connection.deadline = requestHeadDeadline
        connection.deadlineKind = .requestHead
        connection.idleSince = worker.loop.now
        connection.advance()
    }

    private init(transport: Transport, peerIP: [UInt8], worker: Worker) {
        self.fd = transport.fd
        self.transport = transport
        self.peerIP = peerIP
        self.worker = worker
        self.parser = RequestParser(limits: worker.headLimits, storage: worker.parserStorage.take())
    }

    // MARK: Events

    func handle(events: UInt32) {
        if phase == .closed { return }
        // A reset (EPOLLERR/EPOLLHUP: we never shut down our side before lingering) ends the request in flight at
        // once — its pod's work is cancelled rather than finished for nobody; between requests, readable bytes first.
        if events & (Readiness.error | Readiness.hangup) != 0 && (events & Readiness.readable == 0 || phase == .exchanging) {
            abort()
            return
        }
        if events & Readiness.readHangup != 0 { clientFinishedSending = true }
        if phase == .lingering {
            discardInput()
            return
        }
        if events & Readiness.writable != 0, transport.readWaitsForWritable {
            // A TLS read stopped because OpenSSL had to write first (KeyUpdate): the room to write is also read progress.
            mayBeReadable = true
            advance()
            if phase == .closed { return }
        }
        if events & Readiness.writable != 0 {
            flush()
            if phase == .closed { return }
            // Room again for the response: let the exchange read more from the pod (only from the event, so that
            // flushing from inside the pump cannot recurse into it).
            if phase == .exchanging, let output, output.isEmpty { exchange?.clientDrained() }
        }
        if events & (Readiness.readable | Readiness.readHangup) != 0 {
            mayBeReadable = true
            advance()
        }
    }

    func checkDeadline(now: Int64) {
        if worker.isDraining && phase == .awaitingRequest && (input?.isEmpty ?? true) {
            // Draining: a connection between requests closes once idle for the grace; a busy one after its response.
            if now - idleSince >= DownstreamConnection.drainIdleGraceMs { close() }
            return
        }
        guard now >= deadline else { return }
        let kind = deadlineKind
        deadline = .max
        deadlineKind = .none
        switch kind {
        case .none:
            return
        case .keepAliveIdle, .lingering:
            close()
        case .requestHead:
            if let input, !input.isEmpty {
                respondLocally(.requestTimeout, closeAfter: true)
            } else {
                close()
            }
        case .requestBodyIdle:
            if let exchange, !exchange.responseStarted {
                releaseExchange()
                respondLocally(.requestTimeout, closeAfter: true)
            } else {
                abort(.streamIdleTimeout)
            }
        case .upstreamConnect:
            exchange?.connectTimedOut()
        case .upstreamResponse:
            exchange?.responseTimedOut()
        case .responseBodyIdle:
            abort(.streamIdleTimeout)
        case .queued:
            leaveQueue()
            finishLocally(.queueTimeout, closeAfter: parser.head.framing != .none || !parser.head.keepAlive)
        }
    }

    /// The revision this connection's request waits for, while it is queued.
    private func leaveQueue() {
        guard phase == .queued, let revision = queuedRevision else { return }
        worker.dequeue(self, revision: revision)
        queuedRevision = nil
        phase = .awaitingRequest
    }

    /// A slot may be free: routes the parked request again.
    func resumeRouting() {
        guard phase == .queued else { return }
        queuedRevision = nil
        phase = .awaitingRequest
        startExchange(resumed: true)
        advance()  // the body (some of it already read) flows as it does after a first routing
    }


    // MARK: Reading requests

    /// Drives the connection as far as the bytes at hand allow, reading more while that is useful.
    func advance() {
        while true {
            switch phase {
            case .closed, .closing, .lingering, .queued:
                return
            case .exchanging:
                exchange?.pumpRequestBody()
                return
            case .awaitingRequest:
                if let input, !input.isEmpty {
                    if !isRequestOpen { openRequest(.http11, isTLS: isTLS, client: peerIP) }
                    if !parser.hasStorage { parser.adoptStorage(worker.parserStorage.take()) }
                    switch parser.parse(input.readable) {
                    case .complete:
                        startExchange()
                        continue
                    case .failed(let error):
                        respondLocally(ErrorResponse(parseError: error), closeAfter: true)
                        return
                    case .incomplete:
                        break
                    }
                }
                guard mayBeReadable else {
                    if clientFinishedSending {
                        // FIN and a drained socket: no (further) request can come. An incomplete head is dropped.
                        clientLeftBetweenRequests()
                        return
                    }
                    releaseIdleBuffers()
                    return
                }
                switch readClient(limit: worker.settings.limits.maxHeaderBytes + 1) {
                case .progress:
                    continue
                case .noData:
                    if clientFinishedSending { clientLeftBetweenRequests(); return }
                    releaseIdleBuffers()
                    return
                case .gone:
                    clientLeftBetweenRequests()
                    return
                }
            }
        }
    }

    /// The client will send nothing more and no request is running: what is still buffered for it goes out, then the
    /// connection closes. A request head it began and never finished ends its record as the client's abort.
    private func clientLeftBetweenRequests() {
        finishRequest(.aborted, flags: .downstreamConnectionTermination)
        input?.clear()
        if let output, !output.isEmpty {
            phase = .closing
            flush()
        } else {
            close()
        }
    }

    enum ReadOutcome { case progress, noData, gone }

    /// Reads once from the client into `input`, keeping at most `limit` unread bytes buffered.
    func readClient(limit: Int) -> ReadOutcome {
        if input == nil { input = worker.buffers.take() }
        let input = self.input!
        let wasEmpty = input.isEmpty
        let room = limit - input.readableBytes
        guard room > 0 else { return .noData }
        input.reserve(min(room, 16 * 1024))
        let want = min(room, input.writableBytes)
        switch transport.read(into: input, limit: want) {
        case .bytes(let n):
            if transport.isDrained(afterReading: n, of: want) { mayBeReadable = false }
            if wasEmpty && phase == .awaitingRequest {
                // RFC 9112 §9.3 keep-alive: the idle timer stops and the header timer starts at the first byte.
                setDeadline(.requestHead, after: worker.settings.timeouts.requestHeaderMs)
            }
            return .progress
        case .wouldBlock:
            mayBeReadable = false
            return .noData
        case .endOfFile, .failed:
            mayBeReadable = false
            return .gone
        }
    }

    /// Between requests with nothing buffered, the connection keeps no buffer and no field list: an idle keep-alive
    /// connection costs its object and little else (benchmarks/idle_memory.py).
    private func releaseIdleBuffers() {
        guard phase == .awaitingRequest, exchange == nil else { return }
        if let b = input, b.isEmpty { worker.buffers.give(b); input = nil }
        if let b = output, b.isEmpty { worker.buffers.give(b); output = nil }
        if input == nil && parser.hasStorage && parser.isBetweenRequests { worker.parserStorage.give(parser.lendStorage()) }
    }

    // MARK: Routing a request

    private func startExchange(resumed: Bool = false) {
        let head = parser.head
        let input = self.input!
        let base = input.readable.baseAddress!
        let settings = worker.settings
        let policy = RequestPolicy(settings: settings)
        @inline(__always) func bytes(_ span: ByteSpan?) -> UnsafeRawBufferPointer {
            guard let span else { return UnsafeRawBufferPointer(start: nil, count: 0) }
            return UnsafeRawBufferPointer(start: base + span.start, count: span.count)
        }
        if !resumed {  // a request back from the queue keeps what was noted, its trace decision first of all
            record.noteHead(method: bytes(head.method), authority: bytes(head.host), path: bytes(head.target))
            ForwardedHeaders.noteHead(&record, fields: head.headers, base: base, random: &worker.random, sampleRate: settings.tracing.sampleRate)
        }
        let hasBody: Bool
        switch head.framing {
        case .none: hasBody = false
        case .contentLength(let n):
            hasBody = n > 0
            if policy.maxRequestBodyBytes > 0 && n > policy.maxRequestBodyBytes {
                finishLocally(.payloadTooLarge, closeAfter: true)
                return
            }
        case .chunked: hasBody = true
        }
        guard let hostSpan = head.host else {
            finishLocally(.badRequest("missing host"), closeAfter: true)
            return
        }
        let host = UnsafeRawBufferPointer(start: base + hostSpan.start, count: hostSpan.count)
        var tagHeader: UnsafeRawBufferPointer? = nil
        if let field = head.headers.first(where: { $0.kind == .knativeServingTag }) {
            tagHeader = UnsafeRawBufferPointer(start: base + field.value.start, count: field.value.count)
        }
        switch worker.route(host: host, tagHeader: tagHeader, fields: head.headers, fieldBytes: base) {
        case .refused(let error, let revision, let tag):
            if let revision { record.noteRoute(revision: revision, tag: tag) }
            finishLocally(error, closeAfter: hasBody || !head.keepAlive)
        case .queued(let revision, let tag):
            record.noteRoute(revision: revision, tag: tag)
            guard worker.enqueue(self, revision: revision, front: resumed) else {
                finishLocally(.queueFull, closeAfter: hasBody || !head.keepAlive)
                return
            }
            queuedRevision = revision
            phase = .queued
            if !resumed { setDeadline(.queued, after: settings.revisionQueue.timeoutMs) }
        case .routedH2:
            // Unreachable: HTTP/1.1 requests are never routed as gRPC (gRPC needs HTTP/2 end to end).
            finishLocally(.noEndpoint, closeAfter: true)
        case .routed(let route, let upstream):
            record.noteRoute(revision: route.revision, tag: route.tag)
            requestKeepAlive = head.keepAlive
            requestIsHTTP10 = head.version == .http10
            rechunkResponse = false
            requestDecoder.reset()
            let closeAfter = !head.keepAlive || requestsServed + 1 >= settings.limits.maxRequestsPerConnection
            let exchange = worker.exchanges.take(for: worker)
            exchange.start(downstream: self, route: route, upstream: upstream, head: head, methodBytes: bytes(head.method),
                           policy: policy, closeAfterResponse: closeAfter)
            self.exchange = exchange
            phase = .exchanging
            // The head leaves the input buffer before anything can end the request: `begin` copies every byte it
            // needs before it first writes to the pod, and a failure from there on may answer the client, close the
            // connection and give `input` back to the worker's pool (bug: consuming it afterwards corrupted a buffer
            // that another connection then owned). The head's bytes stay in place until the next read into `input`.
            input.consume(head.headLength)
            exchange.begin(head: head, headBytes: base, trace: trace)
            // Nothing reads `head` after the reset: a live copy would share its field array and make the reset
            // allocate a new one (copy on write) for every request.
            let expectsContinue = head.expectsContinue
            parser.reset()
            if isRequestOpen { record.requestId.set(requestId) }
            guard self.exchange === exchange, phase == .exchanging else { return }  // ended already (answered or closed)
            if expectsContinue, !exchange.requestBodyDone {
                // We read the body ourselves, so we answer 100 Continue ourselves (RFC 9110 §10.1.1) and drop Expect.
                if output == nil { output = worker.buffers.take() }
                output!.append("HTTP/1.1 100 Continue\r\n\r\n")
                flush()
            }
        }
    }

    /// Answers the request in the parser without forwarding it.
    private func finishLocally(_ response: ErrorResponse, closeAfter: Bool) {
        let head = parser.head
        input?.consume(head.headLength)
        parser.reset()
        requestsServed += 1
        respondLocally(response, closeAfter: closeAfter || !head.keepAlive)
    }

    /// Writes a gateway-made response; errors become responses here and nowhere else.
    func respondLocally(_ response: ErrorResponse, closeAfter: Bool) {
        if !isRequestOpen { openRequest(.http11, isTLS: isTLS, client: peerIP) }
        finishRequest(answered: response)
        if output == nil { output = worker.buffers.take() }
        response.write(into: output!, close: closeAfter)
        if closeAfter {
            phase = .closing
            lingerOnClose = true
            // Whatever else the client sent is discarded: after a framing error nothing after it can be trusted.
            input?.clear()
            setDeadline(.keepAliveIdle, after: 5_000)
        } else {
            phase = .awaitingRequest
            idleSince = worker.loop.now
            setDeadline(.keepAliveIdle, after: worker.settings.timeouts.keepAliveIdleMs)
        }
        flush()
    }

    // MARK: Exchange outcomes

    /// The exchange ended with a complete response; the connection waits for the next request or closes.
    func exchangeFinished(closeAfter: Bool) {
        if let exchange, !exchange.requestBodyDone { lingerOnClose = true }  // the pod answered before the upload ended
        releaseExchange()
        finishRequest(.completed)
        requestsServed += 1
        if closeAfter || worker.isDraining {
            phase = .closing
            input?.clear()
            setDeadline(.keepAliveIdle, after: 5_000)
            flush()
            return
        }
        phase = .awaitingRequest
        idleSince = worker.loop.now
        if let input, !input.isEmpty {
            setDeadline(.requestHead, after: worker.settings.timeouts.requestHeaderMs)
        } else {
            setDeadline(.keepAliveIdle, after: worker.settings.timeouts.keepAliveIdleMs)
        }
        flush()
        if phase == .awaitingRequest { advance() }
    }

    /// The exchange failed before any response byte reached the client: answer with a gateway error.
    func failExchange(_ response: ErrorResponse) {
        guard let exchange else { return }
        if exchange.responseStarted {
            abort(response.answer.flags)
            return
        }
        let bodyDone = exchange.requestBodyDone
        releaseExchange()
        requestsServed += 1
        respondLocally(response, closeAfter: !bodyDone || !requestKeepAlive)
    }

    // MARK: Writing

    /// Writes what is buffered for the client; closes once a closing connection's last byte is out.
    func flush() {
        guard phase != .closed else { return }
        if let output {
            while !output.isEmpty {
                switch transport.write(from: output) {
                case .bytes:
                    continue
                case .wouldBlock:
                    return
                case .endOfFile, .failed:
                    abort()
                    return
                }
            }
        }
        if phase == .closing { linger() }
    }

    // MARK: Lingering close

    /// After the last response: shut down our side and drain what the client still sends (bounded in time and by
    /// its FIN), as nginx's lingering_close does; a client that has finished sending is closed at once.
    private func linger() {
        input?.clear()
        if !lingerOnClose || (clientFinishedSending && !mayBeReadable) {
            close()
            return
        }
        // A TLS client gets close_notify first; what follows is read raw and dropped.
        transport.shutdownWrite()
        phase = .lingering
        setDeadline(.lingering, after: DownstreamConnection.lingeringMs)
        discardInput()
    }

    /// How long, and how much of, a refused upload is read and dropped after the answer (nginx: lingering_timeout
    /// 5 s, no byte bound; a byte bound keeps a fast client from making us read for the whole time).
    static let lingeringMs = 5_000
    static let lingeringBytes = 16 * 1024 * 1024
    private var lingeredBytes = 0

    private func discardInput() {
        let scratch = input ?? worker.buffers.take()
        input = scratch
        for _ in 0..<64 {  // ~2 MiB per wake-up; the deadline ends a client that never stops
            scratch.clear()
            switch transport.read(into: scratch, limit: scratch.capacity) {
            case .bytes(let n):
                lingeredBytes += n
                if lingeredBytes > DownstreamConnection.lingeringBytes { close(); return }
                continue
            case .wouldBlock:
                scratch.clear()
                return
            case .endOfFile, .failed:
                close()
                return
            }
        }
        scratch.clear()
    }

    // MARK: Closing

    /// Drops the connection at once, and whatever exchange it carried (the upstream is closed, never pooled);
    /// `flags` say why, for the request's record.
    func abort(_ flags: RequestRecord.Flags = .downstreamConnectionTermination) {
        releaseExchange()
        finishRequest(.aborted, flags: flags)
        close(clean: false)
    }

    func close() { close(clean: exchange == nil) }

    func closeAtDrainDeadline() { abort(.draining) }

    /// `clean`: the connection ends between responses, so TLS says close_notify; an aborted response must not.
    private func close(clean: Bool) {
        guard phase != .closed else { return }
        leaveQueue()
        releaseExchange()
        finishRequest(.aborted, flags: .downstreamConnectionTermination)
        phase = .closed
        if let registration { worker.loop.deregister(fd: fd, registration: registration) }
        registration = nil
        transport.close(clean: clean)
        if let b = input { worker.buffers.give(b); input = nil }
        if let b = output { worker.buffers.give(b); output = nil }
        if parser.hasStorage {
            parser.reset()
            worker.parserStorage.give(parser.lendStorage())
        }
        worker.connectionClosed()
    }
}
