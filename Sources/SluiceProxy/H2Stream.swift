// Proxy layer: one HTTP/2 request/response on an H2Connection — collects the request head, routes it like an
// HTTP/1.1 request (`:authority` for Host), and runs it through an Exchange toward an HTTP/1.1 pod (RFC 9113 §8.2
// downgrade, framing computed by Sluice). Request body bytes are granted back to the client (flow control) only
// once the pod's socket took them; the response comes back as HEADERS + DATA pulled from a bounded buffer.
import SluiceHTTP1
import SluiceHTTP2
import SluiceIO
import SluiceRouting

final class H2Stream: QueuedRequest, ExchangeDownstream, RequestOwner {
    enum Phase {
        /// The request head is arriving.
        case receivingHead
        /// The head is complete; the stream is routed once the bytes at hand are processed, so that a stream the
        /// client resets in the same read (rapid reset) never reaches a pod.
        case awaitingRoute
        /// Routed: the exchange runs.
        case exchanging
        /// The response (from the pod or the gateway) is complete on our side; nghttp2 is sending the rest.
        case responded
        case closed
    }

    let id: Int32
    /// unowned(unsafe). Invariant: the connection owns its streams and closes each one (`closed(errorCode:)`)
    /// before it goes away, in `finish` and `close` alike. Exercised under AddressSanitizer by H2AttackTests (floods
    /// that end the connection with streams open) and RequestLifecycleTests.
    unowned(unsafe) let connection: H2Connection
    var worker: Worker { connection.worker }
    var peerIP: [UInt8] { connection.peerIP }
    var isTLS: Bool { connection.isTLS }
    private var session: H2Session { connection.session }
    private(set) var phase: Phase = .receivingHead
    var requestId: [UInt8] = []
    var exchange: Exchange?
    /// A gRPC call relayed to an h2c pod (instead of `exchange`).
    private var grpc: H2UpstreamStream?
    /// Response trailers from the pod, held until the last DATA is out: field bytes and (name, value) spans.
    private var trailerBytes: ByteBuffer?
    private var trailerFields: [(name: ByteSpan, value: ByteSpan)] = []
    /// For one retry of a gRPC call on a fresh connection: the request body sent so far (while it stays within
    /// bufferBytes), and the route it took.
    private var grpcReplay = ReplayBuffer()
    private var grpcRoute: (pool: ConnectionPool, revision: Revision, tag: TagRoute?, host: ByteSpan)?
    /// The endpoints this gRPC call tried, so that its retry goes elsewhere.
    private var grpcTried = TriedEndpoints()
    /// This request's timeouts and limits, resolved when the stream opened (its Exchange runs under the same).
    private var policy: RequestPolicy
    /// Bytes at the front of `requestBody` that are replayed: the client's window was granted for them already.
    private var granted = 0

    // Request head: field bytes copied out of nghttp2's buffers, with spans into them.
    private var headBytes: ByteBuffer
    /// The request's fields, in a field list borrowed from the worker (ParserStoragePool) and given back at close.
    private var fields: [HeaderField] {
        get { fieldStorage.headers }
        _modify { yield &fieldStorage.headers }
    }
    private var fieldStorage: RequestParserStorage
    private var method = ByteSpan.empty
    private var path = ByteSpan.empty
    private var authority: ByteSpan?
    private var hostField: ByteSpan?
    private var contentLength: Int?
    private var isMalformed = false
    /// `content-type: application/grpc` (or `application/grpc+proto`, `;…`): gateway errors answer as gRPC does.
    private(set) var isGRPC = false
    private var headEndedStream = false

    /// DATA bytes received and not yet moved toward the pod (at most the stream window, 64 KiB).
    private var requestBody: ByteBuffer?
    private var requestDone = false
    /// Bytes moved into the pod connection's buffer but not yet written to its socket, so not yet granted back.
    private var ungranted = 0
    /// Response body bytes waiting for nghttp2 to frame them as DATA.
    private var responseBody: ByteBuffer?
    private var responseDone = false
    /// The client reset the stream or the connection went away.
    private var isReset = false
    /// The response is complete but the request is not: RST_STREAM(NO_ERROR) once the last DATA is out (RFC 9113 §8.1).
    private var resetWhenSent = false

    var deadline: Int64 = .max
    var deadlineKind: DeadlineKind = .none
    /// This stream's request (RequestLifecycle.swift): open from the stream's first HEADERS to its finish.
    var record = RequestRecord()
    var isRequestOpen = false
    func recordFinished() {}  // the stream is the request: its record goes with it

    init(id: Int32, connection: H2Connection) {
        self.id = id
        self.connection = connection
        headBytes = connection.worker.buffers.take()
        fieldStorage = connection.worker.parserStorage.take()
        policy = RequestPolicy(settings: connection.worker.settings)
        openRequest(.h2, isTLS: connection.isTLS, client: peerIP)
    }

    // MARK: Request head

    func addHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard case .receivingHead = phase else { return }
        let nameSpan = ByteSpan(start: headBytes.readableBytes, count: name.count)
        headBytes.append(name)
        let valueSpan = ByteSpan(start: headBytes.readableBytes, count: value.count)
        headBytes.append(value)
        if name.first == 0x3A {  // ":" pseudo-header (nghttp2 checked order, duplicates and the allowed set)
            let bytes = headBytes.readable
            if bytes.span(nameSpan, equalsBytes: ":method") { method = valueSpan }
            else if bytes.span(nameSpan, equalsBytes: ":path") { path = valueSpan }
            else if bytes.span(nameSpan, equalsBytes: ":authority") { authority = valueSpan }
            return
        }
        if name.count == 12 && equalsIgnoringCase(name, "content-type") { isGRPC = Self.isGRPCContentType(value) }
        let kind = HeaderKind.classify(headBytes.readable, nameSpan)
        // Names with "_" are dropped as for HTTP/1.1 (CGI aliasing, hardening.md §1 item 13).
        let hasUnderscore = name.contains(0x5F)
        switch kind {
        case .host:
            if hostField != nil { isMalformed = true }
            hostField = valueSpan
        case .contentLength:
            var n = 0
            for b in value { n = n &* 10 &+ Int(b &- 0x30) }  // digits only: nghttp2 validated content-length
            if contentLength != nil && contentLength != n { isMalformed = true }
            contentLength = n
        default:
            break
        }
        fields.append(HeaderField(name: nameSpan, value: valueSpan, kind: kind, dropOnForward: kind.isDroppedOnForward || hasUnderscore))
    }

    /// `application/grpc`, alone or followed by `+subtype` or parameters (not `application/grpc-web`).
    static func isGRPCContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        let prefix: StaticString = "application/grpc"
        let n = prefix.utf8CodeUnitCount
        guard value.count >= n else { return false }
        for i in 0..<n {
            var c = value[i]
            if c >= 0x41 && c <= 0x5A { c |= 0x20 }
            if c != prefix.utf8Start[i] { return false }
        }
        return value.count == n || value[n] == 0x2B || value[n] == 0x3B  // "+" or ";"
    }

    func headersComplete(endStream: Bool) {
        guard case .receivingHead = phase else { return }
        requestDone = endStream
        headEndedStream = endStream
        phase = .awaitingRoute
        connection.routeAfterReceive(self)
    }

    /// The revision whose containerConcurrency queue this stream waits in (phase still `.awaitingRoute`).
    private var queuedRevision: Revision?

    /// A slot may be free: routes the parked stream again.
    func resumeRouting() {
        guard queuedRevision != nil else { return }
        queuedRevision = nil
        route(resumed: true)
    }

    private func leaveQueue() {
        guard let revision = queuedRevision else { return }
        worker.dequeue(self, revision: revision)
        queuedRevision = nil
    }

    /// Routes the request and starts its exchange (or answers it), unless the client reset it meanwhile.
    func route(resumed: Bool = false) {
        guard case .awaitingRoute = phase, queuedRevision == nil else { return }
        let endStream = headEndedStream
        var bytes = headBytes.readable
        if isGRPC { record.clientProtocol = .grpc }
        if !resumed {  // a stream back from the queue keeps what was noted, its trace decision first of all
            record.noteHead(method: bytes.bytes(method), authority: (authority ?? hostField).map { bytes.bytes($0) } ?? UnsafeRawBufferPointer(start: nil, count: 0),
                            path: bytes.bytes(path))
            ForwardedHeaders.noteHead(&record, fields: fields, base: bytes.baseAddress!, random: &worker.random,
                                      sampleRate: worker.settings.tracing.sampleRate)
        }
        // RFC 9113 §8.3.1: `:authority` replaces Host; a Host field that differs makes the request malformed.
        if let authority, let hostField, !bytes.span(authority, equalsIgnoringCase: hostField) { isMalformed = true }
        guard !isMalformed, let host = authority ?? hostField, method.count > 0 else {
            respondLocally(.badRequest("malformed request"))
            return
        }
        if bytes.span(method, equalsBytes: "CONNECT") {
            respondLocally(.connectNotSupported)
            return
        }
        // RFC 9113 §8.2 downgrade framing, computed by Sluice: the client's length, or none when the body ended
        // with the headers (a zero length for methods that carry content), else chunked.
        let framing: RequestBodyFraming
        if let contentLength {
            framing = .contentLength(contentLength)
        } else if endStream {
            let carriesContent = bytes.span(method, equalsBytes: "POST") || bytes.span(method, equalsBytes: "PUT") || bytes.span(method, equalsBytes: "PATCH")
            framing = carriesContent ? .contentLength(0) : .none
        } else {
            framing = .chunked
        }
        joinCookies()
        bytes = headBytes.readable  // the join appends to the buffer, which may move it (spans are offsets: still valid)
        if let contentLength, policy.maxRequestBodyBytes > 0, contentLength > policy.maxRequestBodyBytes {
            respondLocally(.payloadTooLarge)
            return
        }
        var tagHeader: UnsafeRawBufferPointer? = nil
        if let field = fields.first(where: { $0.kind == .knativeServingTag }) { tagHeader = bytes.bytes(field.value) }
        switch worker.route(host: bytes.bytes(host), tagHeader: tagHeader, fields: fields, fieldBytes: bytes.baseAddress,
                            isGRPC: isGRPC) {
        case .refused(let error, let revision, let tag):
            if let revision { record.noteRoute(revision: revision, tag: tag) }
            respondLocally(error)
        case .queued(let revision, let tag):
            record.noteRoute(revision: revision, tag: tag)
            guard worker.enqueue(self, revision: revision, front: resumed) else {
                respondLocally(.queueFull)
                return
            }
            queuedRevision = revision
            if !resumed { setDeadline(.queued, after: worker.settings.revisionQueue.timeoutMs) }
        case .routedH2(let pool, let revision, let tag, let service):
            record.noteRoute(revision: revision, tag: tag)
            policy.resolve(service: service, revision: revision)
            grpcTried = TriedEndpoints()
            startGRPC(pool: pool, revision: revision, tag: tag, host: host)
        case .routed(let route, let upstream):
            record.noteRoute(revision: route.revision, tag: route.tag)
            let head = RequestHead(method: method, isHEAD: bytes.span(method, equalsBytes: "HEAD"), target: path, host: host,
                                   headers: fields, framing: framing)
            let exchange = worker.exchanges.take(for: worker)
            exchange.start(downstream: self, route: route, upstream: upstream, head: head, methodBytes: bytes.bytes(method),
                           policy: policy, closeAfterResponse: false)
            self.exchange = exchange
            phase = .exchanging
            exchange.begin(head: head, headBytes: bytes.baseAddress!, trace: record.trace)
            record.requestId.set(requestId)
            if self.exchange === exchange, !exchange.requestBodyDone { exchange.pumpRequestBody() }
        }
    }

    /// RFC 9113 §8.2.3: HTTP/2 may split `cookie` into several fields; HTTP/1.1 wants one, joined with "; ".
    private func joinCookies() {
        var first = -1, count = 0
        for i in fields.indices where !fields[i].dropOnForward && headBytes.readable.span(fields[i].name, equalsBytes: "cookie") {
            if first < 0 { first = i }
            count += 1
        }
        guard count > 1 else { return }
        let start = headBytes.readableBytes
        var separator = false
        for i in fields.indices where i >= first && !fields[i].dropOnForward && headBytes.readable.span(fields[i].name, equalsBytes: "cookie") {
            if separator { headBytes.append("; ") }
            // Copy out first: appending may move the buffer.
            let value = fields[i].value
            headBytes.reserve(value.count)
            headBytes.append(UnsafeRawBufferPointer(rebasing: headBytes.readable[value.start..<value.end]))
            separator = true
            if i != first { fields[i].dropOnForward = true }
        }
        fields[first].value = ByteSpan(start: start, count: headBytes.readableBytes - start)
    }

    // MARK: Request body

    func receiveBody(_ bytes: UnsafeRawBufferPointer) {
        switch phase {
        case .awaitingRoute, .exchanging:
            // Held within the stream window until the pod's socket takes it (not routed yet: until it is).
            if requestBody == nil { requestBody = worker.buffers.take() }
            requestBody!.append(bytes)
            if grpc != nil || exchange == nil { record.requestBodyBytes += bytes.count }  // an Exchange counts its own
            exchange?.pumpRequestBody()
            if let grpc {
                // While the pod's connection is still connecting, its connect deadline stands (a DATA frame read
                // apart from the HEADERS used to replace it with the body timeout: no connect timeout at all).
                if !grpc.responseStarted && !requestDone && !grpc.isConnecting { setDeadline(.requestBodyIdle, after: policy.bodyIdleMs) }
                grpc.requestBodyAvailable()
            }
        case .receivingHead, .responded, .closed:
            session.consume(id, bytes.count)  // answered already (or refused): the bytes go nowhere
        }
    }

    func requestEnded() {
        requestDone = true
        if case .exchanging = phase {
            exchange?.pumpRequestBody()
            if let grpc {
                if !grpc.responseStarted && !grpc.isConnecting { setDeadline(.upstreamResponse, after: policy.upstreamResponseMs) }
                grpc.requestBodyAvailable()
            }
        }
    }

    func pullRequestBody(for exchange: Exchange, into out: ByteBuffer) -> RequestBodyPull {
        if let body = requestBody, !body.isEmpty {
            let n = min(body.readableBytes, exchange.requestBodyRemaining)
            exchange.forwardRequestBody(UnsafeRawBufferPointer(rebasing: body.readable[0..<n]), into: out)
            body.consume(n)
            ungranted += n
            if body.isEmpty { worker.buffers.give(body); requestBody = nil }
            return .moved
        }
        if requestDone {
            exchange.forwardRequestBodyEnd(into: out)
            return .moved
        }
        return isReset ? .gone : .noData
    }

    /// The request body goes nowhere any more (answered, failed, reset): whatever of it is held or still
    /// ungranted is given back to the connection window, or a few such streams would stall every other one.
    private func releaseRequestWindow() {
        let held = ungranted + (requestBody?.readableBytes ?? 0) - granted
        ungranted = 0
        granted = 0
        grpcReplay.release(worker.buffers)
        if let b = requestBody { worker.buffers.give(b); requestBody = nil }
        if held > 0 { session.consume(id, held) }
    }

    func upstreamTookRequestBytes() {
        guard ungranted > 0 else { return }
        // Flow control with real backpressure: the window reopens only for what the pod's socket took.
        session.consume(id, ungranted)
        ungranted = 0
        connection.scheduleFlush()
    }

    // MARK: Response sink

    func writeResponseHead(_ head: ResponseHead, base: UnsafeRawPointer, for exchange: Exchange) {
        let session = self.session
        session.beginHeaders()
        var hasRequestId = false
        var podContentLength: ByteSpan? = nil
        for field in head.headers {
            if field.kind == .contentLength { podContentLength = field.value }
            if field.dropOnForward { continue }
            if field.kind == .xRequestId { hasRequestId = true }
            if sendsTraceResponse && ForwardedHeaders.isTraceResponse(UnsafeRawBufferPointer(start: base + field.name.start, count: field.name.count)) { continue }
            session.addHeader(name: UnsafeRawBufferPointer(start: base + field.name.start, count: field.name.count),
                              value: UnsafeRawBufferPointer(start: base + field.value.start, count: field.value.count),
                              indexed: field.kind != .xRequestId)
        }
        switch head.framing {
        case .none:
            if let podContentLength, exchange.requestWasHEAD || head.status == 304 {
                session.addHeader(name: "content-length", value: UnsafeRawBufferPointer(start: base + podContentLength.start, count: podContentLength.count))
            }
        case .contentLength:
            if let podContentLength {
                session.addHeader(name: "content-length", value: UnsafeRawBufferPointer(start: base + podContentLength.start, count: podContentLength.count))
            }
        case .chunked, .untilClose:
            break  // DATA frames carry the body; END_STREAM ends it (RFC 9113 §8.1)
        }
        if !hasRequestId { requestId.withUnsafeBytes { session.addHeader(name: "x-request-id", value: $0, indexed: false) } }
        addTraceResponse()
        if exchange.policy.revisionHeader {
            // `Sluice-Revision: <name>\r\n`, pre-rendered by the route table: the value sits between ": " and CRLF.
            exchange.revision.responseHeader.withUnsafeBytes { line in
                session.addHeader(name: "sluice-revision", value: UnsafeRawBufferPointer(rebasing: line[17..<(line.count - 2)]))
            }
        }
        if exchange.policy.attemptCountHeader { addAttemptCount(exchange.attemptCount) }
        record.status = head.status
        var hasBody = true
        if case .done = exchange.response { hasBody = false; responseDone = true }
        hasPendingBodyEnd = hasBody
        session.submitResponse(id, status: head.status, hasBody: hasBody)
    }

    /// `x-envoy-attempt-count: N`, the digits written on the stack.
    private func addAttemptCount(_ count: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var n = max(0, count), i = 20
            repeat { i -= 1; digits[i] = UInt8(0x30 + n % 10); n /= 10 } while n > 0
            session.addHeader(name: "x-envoy-attempt-count", value: UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(digits)[i...]))
        }
    }

    /// `tracing.responseHeader`: the response carries our `traceresponse` (the pod's own is replaced).
    private var sendsTraceResponse: Bool { worker.settings.tracing.responseHeader }

    /// W3C Trace Context Level 2 `traceresponse: 00-<trace id>-<our span id>-<flags>`, when asked for.
    private func addTraceResponse() {
        guard sendsTraceResponse else { return }
        let session = self.session
        record.trace.withTraceparent { session.addHeader(name: "traceresponse", value: $0, indexed: false) }
    }

    func writeResponseBody(_ bytes: UnsafeRawBufferPointer) {
        record.responseBodyBytes += bytes.count
        if responseBody == nil { responseBody = worker.buffers.take() }
        responseBody!.append(bytes)
        session.resumeData(id)
    }

    func endResponseBody() {
        responseDone = true
        session.resumeData(id)
    }

    var responseBufferedBytes: Int { responseBody?.readableBytes ?? 0 }

    func flushResponse() { connection.scheduleFlush() }

    /// nghttp2 pulls DATA for this stream (inside the connection's send).
    func readResponseBody(into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        if let body = responseBody, !body.isEmpty {
            let n = min(body.readableBytes, buffer.count)
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: body.readable[0..<n]))
            let wasFull = body.readableBytes >= worker.settings.limits.bufferBytes
            body.consume(n)
            if body.isEmpty { worker.buffers.give(body); responseBody = nil }
            if wasFull && exchange != nil { connection.noteDrained(self) }
            grpc?.responseTaken(n)
            let isEnd = responseDone && responseBody == nil
            if isEnd { bodyEnded() }
            return (n, isEnd)
        }
        if responseDone { bodyEnded(); return (0, true) }
        return nil
    }

    private func bodyEnded() {
        hasPendingBodyEnd = false
        if resetWhenSent {
            resetWhenSent = false
            connection.resetAfterSend(id)
        }
    }

    /// The client took buffered response bytes: the exchange may read its pod again.
    func responseDrained() {
        exchange?.clientDrained()
    }

    // MARK: Outcomes

    func exchangeFinished(closeAfter: Bool) {
        releaseExchange()
        finishRequest(.completed)
        phase = .responded
        releaseRequestWindow()
        deadlineKind = .none
        deadline = .max
        // RFC 9113 §8.1: a complete response before the request ended; the rest of the request is not wanted.
        if !requestDone { endRequestAfterResponse() }
        connection.scheduleFlush()
    }

    func failExchange(_ response: ErrorResponse) {
        if let grpc {
            if grpc.responseStarted { abortExchange(response.answer.flags); return }
            grpc.cancel()
            self.grpc = nil
            respondLocally(response)
            return
        }
        guard let exchange else { return }
        if exchange.responseStarted { abortExchange(response.answer.flags); return }
        releaseExchange()
        respondLocally(response)
    }

    func abortExchange(_ flags: RequestRecord.Flags) {
        releaseExchange()
        finishRequest(.aborted, flags: flags)
        grpc?.cancel()
        grpc = nil
        phase = .responded
        releaseRequestWindow()
        session.resetStream(id, .internalError)
        connection.scheduleFlush()
    }

    /// A gateway-made response: the same statuses and JSON bodies as HTTP/1.1 (ErrorResponse); for a gRPC request a
    /// trailers-only gRPC response instead (HTTP 200, `grpc-status`, `grpc-message`), as gRPC clients expect.
    private func respondLocally(_ response: ErrorResponse) {
        if isGRPC { record.grpcStatus = response.grpcStatus }
        finishRequest(answered: response)
        phase = .responded
        releaseRequestWindow()
        if isGRPC {
            if let b = responseBody { worker.buffers.give(b); responseBody = nil }
            session.beginHeaders()
            let contentType: StaticString = "application/grpc"
            session.addHeader(name: "content-type", value: UnsafeRawBufferPointer(start: contentType.utf8Start, count: contentType.utf8CodeUnitCount))
            let scratch = worker.buffers.take()
            response.writeGRPCStatus(into: scratch)
            session.addHeader(name: "grpc-status", value: scratch.readable)
            var message = response.message
            message.withUTF8 { session.addHeader(name: "grpc-message", value: UnsafeRawBufferPointer($0)) }
            worker.buffers.give(scratch)
            responseDone = true
            hasPendingBodyEnd = false
            session.submitResponse(id, status: 200, hasBody: false)
            // RST_STREAM submitted now would discard the HEADERS not yet sent: it follows the next send instead.
            if !requestDone { connection.resetAfterSend(id) }
            deadlineKind = .none
            deadline = .max
            connection.flush()
            return
        }
        let body = responseBody ?? worker.buffers.take()
        responseBody = body
        body.clear()
        response.writeBody(into: body)
        session.beginHeaders()
        let contentType: StaticString = "application/json"
        session.addHeader(name: "content-type", value: UnsafeRawBufferPointer(start: contentType.utf8Start, count: contentType.utf8CodeUnitCount))
        var length: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &length) { scratch in
            var v = body.readableBytes, n = 0
            repeat { scratch[23 - n] = UInt8(48 + v % 10); v /= 10; n += 1 } while v > 0
            session.addHeader(name: "content-length", value: UnsafeRawBufferPointer(rebasing: scratch[(24 - n)...]))
        }
        if response.retryAfterSeconds != nil {
            let one: StaticString = "1"
            session.addHeader(name: "retry-after", value: UnsafeRawBufferPointer(start: one.utf8Start, count: one.utf8CodeUnitCount))
        }
        responseDone = true
        hasPendingBodyEnd = true
        session.submitResponse(id, status: response.status, hasBody: true)
        if !requestDone { endRequestAfterResponse() }
        deadlineKind = .none
        deadline = .max
        connection.scheduleFlush()
    }

    /// Resets the stream once the response is out: nghttp2 sends RST_STREAM ahead of queued DATA, so with body bytes
    /// still to go the reset waits for the end of the body (readResponseBody).
    private func endRequestAfterResponse() {
        if responseBody == nil && !hasPendingBodyEnd {
            session.resetStream(id, .noError)
        } else {
            resetWhenSent = true
        }
    }

    /// A data provider is still to report the end of the body.
    private var hasPendingBodyEnd = false

    // MARK: Deadlines

    func checkDeadline(now: Int64) {
        guard now >= deadline else { return }
        if case .closed = phase { return }  // closed by an earlier stream's flush during the same sweep
        let kind = deadlineKind
        deadline = .max
        deadlineKind = .none
        switch kind {
        case .none, .keepAliveIdle, .requestHead, .lingering:
            return  // connection-level timers: the H2Connection owns them
        case .requestBodyIdle:
            if let exchange, !exchange.responseStarted { failExchange(.requestTimeout) }
            else if let grpc, !grpc.responseStarted { failExchange(.requestTimeout) }
            else { abortExchange(.streamIdleTimeout) }
        case .upstreamConnect:
            if let exchange { exchange.connectTimedOut() } else {
                grpcRoute?.pool.connectFailedLater()
                failExchange(.upstreamConnectTimeout)
            }
        case .upstreamResponse:
            if let exchange { exchange.responseTimedOut() } else { failExchange(.upstreamTimeout) }
        case .responseBodyIdle:
            abortExchange(.streamIdleTimeout)
        case .queued:
            leaveQueue()
            respondLocally(.queueTimeout)
        }
    }

    // MARK: Closing

    /// nghttp2 closed the stream (normally, by the client's RST_STREAM, or with the connection): cancel the pod's work.
    func closed(errorCode: UInt32) {
        if case .closed = phase { return }
        leaveQueue()
        phase = .closed
        isReset = true
        releaseExchange()
        // The client reset the stream, or the connection went away, before the response was complete.
        finishRequest(.aborted, flags: .downstreamConnectionTermination)
        if let grpc {
            grpc.cancel()  // the client's RST_STREAM resets the pod's stream at once
            self.grpc = nil
        }
        releaseRequestWindow()
        if let b = responseBody { worker.buffers.give(b); responseBody = nil }
        if let b = trailerBytes { worker.buffers.give(b); trailerBytes = nil }
        worker.buffers.give(headBytes)
        fieldStorage.headers.removeAll(keepingCapacity: true)
        worker.parserStorage.give(fieldStorage)
        fieldStorage = .none
    }

    // MARK: gRPC toward an h2c pod

    /// Starts the call on a multiplexed HTTP/2 connection to the pod: the client's fields (hop-by-hop ones and our
    /// own dropped), `te: trailers`, and the same added fields as toward an HTTP/1.1 pod.
    private func startGRPC(pool: ConnectionPool, revision: Revision, tag: TagRoute?, host: ByteSpan, isRetry: Bool = false) {
        grpcRoute = (pool, revision, tag, host)
        record.attempts += 1
        record.endpoint = pool.endpoint
        let wasTried = grpcTried.contains(pool)
        grpcTried.add(pool)
        guard let upstreamConnection = wasTried ? pool.openH2() : pool.acquireH2() else {
            // Refused at once: never reached the pod; another endpoint if the policy allows.
            worker.recordGatewayFailure(pool, revision: revision)
            let retries = policy.retries
            if retries.retryOn.contains(.connectFailure), grpcTried.count <= retries.attempts,
               let next = worker.pickEndpoint(revision.grpcEndpointIndices, tried: grpcTried, skipEjected: true) {
                startGRPC(pool: next, revision: revision, tag: tag, host: host, isRetry: isRetry)
                return
            }
            respondLocally(.upstreamConnectFailed)
            return
        }
        let call = H2UpstreamStream(downstream: self, connection: upstreamConnection, pool: pool, revision: revision)
        // Every added value goes to one scratch buffer first; spans point into it (appending may move it).
        let scratch = worker.buffers.take()
        defer { worker.buffers.give(scratch) }
        var added: [(ByteSpan, ByteSpan)] = []
        added.reserveCapacity(12)
        func add(_ name: StaticString, _ value: (ByteBuffer) -> Void) {
            let n = ByteSpan(start: scratch.readableBytes, count: name.utf8CodeUnitCount)
            scratch.append(name)
            let start = scratch.readableBytes
            value(scratch)
            added.append((n, ByteSpan(start: start, count: scratch.readableBytes - start)))
        }
        func addLines(_ lines: [UInt8]) {
            // Pre-rendered `Name: value\r\n` lines (route table): lower-cased names for HTTP/2.
            var i = 0
            while i < lines.count {
                var colon = i
                while lines[colon] != 0x3A { colon += 1 }
                var end = colon
                while lines[end] != 0x0D { end += 1 }
                let n = ByteSpan(start: scratch.readableBytes, count: colon - i)
                for b in lines[i..<colon] { scratch.append(byte: b >= 0x41 && b <= 0x5A ? b | 0x20 : b) }
                let v = ByteSpan(start: scratch.readableBytes, count: end - colon - 2)
                lines.withUnsafeBytes { scratch.append(UnsafeRawBufferPointer(rebasing: $0[(colon + 2)..<end])) }
                added.append((n, v))
                i = end + 2
            }
        }
        let bytes = headBytes.readable
        if !isRetry {  // a retry keeps the first attempt's request id
            ForwardedHeaders.resolveRequestId(&requestId, fields: fields, base: bytes.baseAddress!, random: &worker.random)
            record.requestId.set(requestId)
        }
        add("te") { $0.append("trailers") }
        add("x-forwarded-for") { ForwardedHeaders.appendForwardedFor(fields: self.fields, base: self.headBytes.readable.baseAddress!, peerIP: self.peerIP, into: $0) }
        add("x-forwarded-proto") { $0.append(ForwardedHeaders.forwardedProto(isTLS: self.isTLS)) }
        add("x-request-id") { $0.append(self.requestId) }
        add("traceparent") { out in self.record.trace.withTraceparent { out.append($0) } }
        if let tag { addLines(tag.upstreamHeader) }
        addLines(revision.upstreamHeaders)
        // The field list: pseudo-headers, the client's forwarded fields, ours.
        let s = scratch.readable
        var list = upstreamConnection.requestFields
        list.removeAll(keepingCapacity: true)
        func pair(_ name: StaticString, _ value: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
            (UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), value)
        }
        list.append(pair(":method", bytes.bytes(method)))
        // The scheme of the hop to the pod (RFC 9113 §8.3.1): https over TLS (h2://), else http.
        let scheme: StaticString = pool.endpoint.isH2TLS ? "https" : "http"
        list.append(pair(":scheme", UnsafeRawBufferPointer(start: scheme.utf8Start, count: scheme.utf8CodeUnitCount)))
        list.append(pair(":authority", bytes.bytes(host)))
        list.append(pair(":path", bytes.bytes(path)))
        for field in fields {
            switch ForwardedHeaders.action(field, name: bytes.bytes(field.name)) {
            case .forward:
                list.append((bytes.bytes(field.name), bytes.bytes(field.value)))
            case .tracestate where record.trace.isContinued:
                list.append((bytes.bytes(field.name), bytes.bytes(field.value)))
            case .drop, .joinForwardedFor, .requestId, .traceparent, .tracestate:
                continue  // x-forwarded-for, x-request-id and traceparent are among ours, added once; a restarted trace's tracestate goes
            }
        }
        for (n, v) in added { list.append((s.bytes(n), s.bytes(v))) }
        upstreamConnection.requestFields = list
        grpc = call
        phase = .exchanging
        grpcReplay.start(worker.buffers)
        guard upstreamConnection.start(call, hasBody: !requestDone || !(requestBody?.isEmpty ?? true)) else {
            grpc = nil
            call.cancel()
            respondLocally(.upstreamConnectFailed)
            return
        }
        if call.isConnecting {
            setDeadline(.upstreamConnect, after: policy.upstreamConnectMs)
        } else {
            upstreamConnected()
        }
    }

    /// The pod's connection is up: the request is on its way.
    func upstreamConnected() {
        guard let grpc, !grpc.responseStarted else { return }
        record.upstreamConnectedNs = MonotonicClock.nanoseconds()
        if requestDone { setDeadline(.upstreamResponse, after: policy.upstreamResponseMs) }
        else { setDeadline(.requestBodyIdle, after: policy.bodyIdleMs) }
    }

    /// nghttp2 frames request DATA toward the pod: the client's window reopens for exactly what it took.
    func pullGRPCRequestBody(into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        if let body = requestBody, !body.isEmpty {
            let n = min(body.readableBytes, buffer.count)
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: body.readable[0..<n]))
            grpcReplay.keep(UnsafeRawBufferPointer(rebasing: body.readable[0..<n]), limit: policy.bufferBytes, worker.buffers)
            body.consume(n)
            if body.isEmpty { worker.buffers.give(body); requestBody = nil }
            let regrant = min(n, granted)
            granted -= regrant
            if n > regrant { session.consume(id, n - regrant) }
            connection.flush()
            return (n, requestDone && requestBody == nil)
        }
        if requestDone { return (0, true) }
        return nil
    }

    func grpcResponseHead(_ call: H2UpstreamStream, status: Int, endStream: Bool) {
        record.status = status
        record.firstResponseByteNs = MonotonicClock.nanoseconds()
        if endStream { record.grpcStatus = Self.grpcStatus(in: call) }
        let session = self.session
        session.beginHeaders()
        let base = call.fieldBytes.readable
        for (name, value) in call.fields where !(sendsTraceResponse && ForwardedHeaders.isTraceResponse(base.bytes(name))) {
            session.addHeader(name: base.bytes(name), value: base.bytes(value))
        }
        addTraceResponse()
        if policy.revisionHeader {
            call.revision.responseHeader.withUnsafeBytes { line in
                session.addHeader(name: "sluice-revision", value: UnsafeRawBufferPointer(rebasing: line[17..<(line.count - 2)]))
            }
        }
        hasPendingBodyEnd = !endStream
        session.submitResponse(id, status: status, hasBody: !endStream)
        setDeadline(.responseBodyIdle, after: policy.bodyIdleMs)
        if endStream {
            // Trailers-only (grpc-status in the headers): the call is over.
            responseDone = true
            grpcFinished(call, resetAfterSend: true)
        }
        connection.flush()
    }

    func grpcResponseData(_ bytes: UnsafeRawBufferPointer) {
        writeResponseBody(bytes)
        setDeadline(.responseBodyIdle, after: policy.bodyIdleMs)
        connection.flush()
    }

    func grpcResponseTrailers(_ call: H2UpstreamStream) {
        record.grpcStatus = Self.grpcStatus(in: call)
        let held = trailerBytes ?? worker.buffers.take()
        held.clear()
        trailerBytes = held
        trailerFields.removeAll(keepingCapacity: true)
        let base = call.fieldBytes.readable
        for (name, value) in call.fields {
            let n = ByteSpan(start: held.readableBytes, count: name.count)
            held.append(base.bytes(name))
            let v = ByteSpan(start: held.readableBytes, count: value.count)
            held.append(base.bytes(value))
            trailerFields.append((n, v))
        }
        grpcResponseEnded()
    }

    /// The pod's response ended (trailers or END_STREAM on DATA): the rest is nghttp2 sending what is buffered.
    func grpcResponseEnded() {
        responseDone = true
        session.resumeData(id)
        if let grpc { grpcFinished(grpc, resetAfterSend: false) }
        connection.flush()
    }

    /// The data provider reached the end of the body: trailers follow, when the pod sent any.
    func submitTrailers() -> Bool {
        guard let held = trailerBytes else { return false }
        session.beginHeaders()
        let base = held.readable
        for (name, value) in trailerFields { session.addHeader(name: base.bytes(name), value: base.bytes(value)) }
        session.submitTrailers(id)
        worker.buffers.give(held)
        trailerBytes = nil
        return true
    }

    /// The gRPC call's attempts are counted as they start (startGRPC); the endpoint is the last one's.
    private func noteAttempts(of call: H2UpstreamStream) {
        record.endpoint = call.pool.endpoint
    }

    /// The `grpc-status` among the fields `call` holds now (trailers, or the headers of a trailers-only answer).
    private static func grpcStatus(in call: H2UpstreamStream) -> Int {
        let base = call.fieldBytes.readable
        for (name, value) in call.fields where name.count == 11 && equalsIgnoringCase(base.bytes(name), "grpc-status") {
            var n = 0
            for b in base.bytes(value) {
                guard b >= 0x30 && b <= 0x39, n < 1000 else { return -1 }
                n = n * 10 + Int(b - 0x30)
            }
            return value.count > 0 ? n : -1
        }
        return -1
    }

    private func grpcFinished(_ call: H2UpstreamStream, resetAfterSend: Bool) {
        noteAttempts(of: call)
        finishRequest(.completed)
        grpc = nil
        grpcReplay.release(worker.buffers)
        // What is still buffered for the client stays bounded by this stream's window; the pod's connection
        // window must not wait for a slow client of a finished call.
        call.releaseWindow()
        // The pod answered before the request ended: the request body toward it ends here (empty DATA, END_STREAM).
        call.downstream = nil
        if !requestDone { call.connection.resumeData(call.streamId) }
        phase = .responded
        releaseRequestWindow()
        deadlineKind = .none
        deadline = .max
        if !requestDone {
            if resetAfterSend { connection.resetAfterSend(id) } else { endRequestAfterResponse() }
        }
    }

    /// The pod's stream or connection failed: before a response, a gRPC-shaped UNAVAILABLE; after, the client's
    /// stream is reset too.
    func grpcUpstreamFailed(_ call: H2UpstreamStream, errorCode: UInt32, connectFailed: Bool, mayRetry: Bool) {
        guard grpc === call else { return }
        grpc = nil
        let refused = errorCode == H2ErrorCode.refusedStream.rawValue
        if let route = grpcRoute, connectFailed || !refused { worker.recordGatewayFailure(route.pool, revision: route.revision) }
        if connectFailed { call.pool.connectFailedLater() }
        // connect-failure, refused-stream (RFC 9113 §8.7: not processed), or a reused connection that failed before
        // any answer (reset-before-request: the pod closing an idle connection as the stream started). The replay is
        // held once: a gRPC call gets one retry.
        let condition: RetryConditions = connectFailed ? .connectFailure : refused ? .refusedStream : .resetBeforeRequest
        let retries = policy.retries
        if (mayRetry || connectFailed) && !call.responseStarted && retries.retryOn.contains(condition),
           grpcTried.count <= retries.attempts, let route = grpcRoute, let replay = grpcReplay.take() {
            // What was sent goes again, ahead of what is still held: to another endpoint when there is one.
            granted += replay.readableBytes
            if let rest = requestBody { replay.append(rest.readable); worker.buffers.give(rest) }
            if replay.isEmpty { worker.buffers.give(replay); requestBody = nil } else { requestBody = replay }
            let next = worker.pickEndpoint(route.revision.grpcEndpointIndices, tried: grpcTried, skipEjected: true) ?? route.pool
            startGRPC(pool: next, revision: route.revision, tag: route.tag, host: route.host, isRetry: true)
            return
        }
        noteAttempts(of: call)
        if call.responseStarted {
            finishRequest(.aborted, flags: .upstreamConnectionTermination)
            phase = .responded
            releaseRequestWindow()
            session.resetStream(id, errorCode == H2ErrorCode.cancel.rawValue ? .cancel : .internalError)
            connection.flush()
        } else {
            respondLocally(connectFailed ? .upstreamConnectFailed : .upstreamClosed)
        }
    }
}
