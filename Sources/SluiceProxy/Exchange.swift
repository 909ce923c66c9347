// Proxy layer: one request/response pair between a client connection and a pod — serialises the request head,
// streams both bodies with backpressure, relays the response, and decides what may be reused afterwards.
import SluiceHTTP1
import SluiceIO
import SluiceRouting
#if canImport(Glibc)
import Glibc
#endif

final class Exchange: UpstreamDelegate {
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

    /// unowned(unsafe): the connection owns the exchange and ends it (abandonUpstream) before it goes away.
    unowned(unsafe) let downstream: DownstreamConnection
    let pool: ConnectionPool
    private(set) var upstream: UpstreamConnection?
    /// The routes this request started with: a hand-over mid-request does not move it.
    let revision: Revision
    let tag: TagRoute?
    let clientKeepAlive: Bool
    let clientIsHTTP10: Bool
    let requestWasHEAD: Bool
    private var requestBody: RequestBody
    private var requestBodyBytes = 0
    private var response: ResponseBody = .awaitingHead
    /// The response is re-framed as chunked toward the client (chunked or close-delimited from the pod, HTTP/1.1 client).
    private var rechunkResponse = false
    private var closeAfterResponse: Bool
    private var upstreamKeepAlive = true
    private(set) var responseStarted = false
    private var isOutstanding = true
    /// A copy of every request byte sent so far, kept while it stays small, so that a request that hit a pooled
    /// connection the pod had just closed can be sent again on a fresh one (the idle-close race).
    private var replay: ByteBuffer?
    private var retried = false
    private var bufferBytes: Int { downstream.worker.settings.limits.bufferBytes }

    init(downstream: DownstreamConnection, pool: ConnectionPool, upstream: UpstreamConnection, revision: Revision, tag: TagRoute?, head: RequestHead) {
        self.downstream = downstream
        self.pool = pool
        self.upstream = upstream
        self.revision = revision
        self.tag = tag
        self.clientKeepAlive = head.keepAlive
        self.clientIsHTTP10 = head.version == .http10
        self.requestWasHEAD = head.isHEAD
        switch head.framing {
        case .none: requestBody = .done
        case .contentLength(let n): requestBody = n > 0 ? .contentLength(remaining: n) : .done
        case .chunked: requestBody = .chunked
        }
        let settings = downstream.worker.settings
        closeAfterResponse = !head.keepAlive || downstream.requestsServed + 1 >= settings.limits.maxRequestsPerConnection
        downstream.responseParser.reset()
        downstream.requestDecoder.reset()
        downstream.responseDecoder.reset()
    }

    var requestBodyDone: Bool {
        if case .done = requestBody { return true }
        return false
    }

    // MARK: Request

    /// Serialises the request head for the pod (never the client's bytes: RFC 9112 §6.3, hardening.md §1.7),
    /// then starts sending. `base` is where the parser's spans point.
    func begin(headBytes base: UnsafeRawPointer) {
        let upstream = self.upstream!
        upstream.attach(self)
        let out = upstream.output!
        let head = downstream.parser.head
        @inline(__always) func bytes(_ span: ByteSpan) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + span.start, count: span.count)
        }
        out.append(bytes(head.method))
        out.append(byte: 0x20)
        if head.targetIsEmptyPath { out.append(byte: 0x2F) } else { out.append(bytes(head.target)) }
        out.append(" HTTP/1.1\r\nHost: ")
        out.append(bytes(head.host!))
        out.append("\r\n")
        var forwardedFor: ByteSpan? = nil
        var forwardedForCount = 0
        downstream.requestId.removeAll(keepingCapacity: true)
        for field in head.headers where !field.dropOnForward {
            switch field.kind {
            case .xForwardedFor:
                // Several X-Forwarded-For lines are one list (RFC 9110 §5.3); they are joined below.
                forwardedForCount += 1
                if forwardedFor == nil { forwardedFor = field.value }
                continue
            case .xForwardedProto, .knativeServingTag:
                continue
            case .xRequestId:
                if downstream.requestId.isEmpty && field.value.count <= 128 {
                    downstream.requestId.append(contentsOf: bytes(field.value))
                }
                continue
            case .other:
                if Exchange.isInjectedHeader(bytes(field.name)) { continue }
            case .host, .contentLength, .transferEncoding, .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect:
                continue  // hop-by-hop or re-framed: the parser marks these dropOnForward already
            }
            out.append(bytes(field.name))
            out.append(": ")
            out.append(bytes(field.value))
            out.append("\r\n")
        }
        out.append("X-Forwarded-For: ")
        if forwardedForCount > 0 {
            for field in head.headers where field.kind == .xForwardedFor && !field.dropOnForward {
                out.append(bytes(field.value))
                out.append(", ")
            }
        }
        out.append(downstream.peerIP)
        out.append(downstream.tls == nil ? "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: " : "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: ")
        if downstream.requestId.isEmpty { generateRequestId() }
        out.append(downstream.requestId)
        out.append("\r\n")
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
        if out.readableBytes <= bufferBytes {
            let replay = downstream.worker.buffers.take()
            replay.append(out.readable)
            self.replay = replay
        }
        if head.expectsContinue, !requestBodyDone {
            // We read the body ourselves, so we answer 100 Continue ourselves (RFC 9110 §10.1.1) and drop Expect.
            if downstream.output == nil { downstream.output = downstream.worker.buffers.take() }
            downstream.output!.append("HTTP/1.1 100 Continue\r\n\r\n")
            downstream.flush()
        }
        pool.outstanding += 1
        let timeouts = downstream.worker.settings.timeouts
        if upstream.state == .connecting {
            downstream.setDeadline(.upstreamConnect, after: timeouts.upstreamConnectMs)
        } else {
            armRequestDeadline()
            // With a body to come, the pump flushes head and body together: one send per request, not two.
            if requestBodyDone { upstream.flush() }
        }
    }

    /// Headers we add toward the pod; a client's copies are dropped so they cannot be spoofed.
    static func isInjectedHeader(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 16: return equalsIgnoringCase(name, "kserve-isvc-name")
        case 21: return equalsIgnoringCase(name, "kserve-isvc-namespace")
        case 24: return equalsIgnoringCase(name, "knative-serving-revision")
        case 25: return equalsIgnoringCase(name, "knative-serving-namespace")
        default: return false
        }
    }

    private func generateRequestId() {
        // A random (version 4 layout) UUID, written without allocating once the array has capacity.
        let hex: StaticString = "0123456789abcdef"
        let worker = downstream.worker
        var a = worker.random.next(), b = worker.random.next()
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes of stack scratch
        withUnsafeMutableBytes(of: &text) { out in
            var o = 0
            for i in 0..<32 {
                if i == 8 || i == 12 || i == 16 || i == 20 { out[o] = 0x2D; o += 1 }
                let nibble: Int
                if i < 16 { nibble = Int(a & 0xF); a >>= 4 } else { nibble = Int(b & 0xF); b >>= 4 }
                out[o] = hex.utf8Start[i == 12 ? 4 : (i == 16 ? 8 | (nibble & 3) : nibble)]
                o += 1
            }
            downstream.requestId.append(contentsOf: UnsafeRawBufferPointer(rebasing: out[0..<36]))
        }
    }

    private func armRequestDeadline() {
        let timeouts = downstream.worker.settings.timeouts
        if requestBodyDone {
            if !responseStarted { downstream.setDeadline(.upstreamResponse, after: timeouts.upstreamResponseMs) }
        } else {
            downstream.setDeadline(.requestBodyIdle, after: timeouts.bodyIdleMs)
        }
    }

    /// Moves request body bytes from the client to the pod until one side has nothing or no room.
    func pumpRequestBody() {
        guard let upstream, let out = upstream.output else { return }
        let limits = downstream.worker.settings.limits
        var progressed = false
        loop: while !requestBodyDone {
            if out.readableBytes >= bufferBytes {
                if upstream.state == .open { upstream.flush() }
                if out.readableBytes >= bufferBytes { break }  // the pod is slow: wait for its EPOLLOUT
            }
            if let input = downstream.input, !input.isEmpty {
                let before = out.readableBytes
                switch requestBody {
                case .done:
                    break loop
                case .contentLength(let remaining):
                    let n = min(remaining, input.readableBytes)
                    out.append(UnsafeRawBufferPointer(rebasing: input.readable[0..<n]))
                    input.consume(n)
                    requestBodyBytes += n
                    requestBody = remaining == n ? .done : .contentLength(remaining: remaining - n)
                case .chunked:
                    let (consumed, step) = downstream.requestDecoder.next(input.readable)
                    switch step {
                    case .data(let span):
                        out.append(hex: span.count)
                        out.append("\r\n")
                        out.append(UnsafeRawBufferPointer(rebasing: input.readable[span.start..<(span.start + span.count)]))
                        out.append("\r\n")
                        requestBodyBytes += span.count
                    case .needMore:
                        break
                    case .end:
                        out.append("0\r\n\r\n")
                        requestBody = .done
                    case .failed(let error):
                        input.consume(consumed)
                        downstream.failExchange(ErrorResponse(parseError: error))
                        return
                    }
                    input.consume(consumed)
                }
                if limits.maxRequestBodyBytes > 0 && requestBodyBytes > limits.maxRequestBodyBytes {
                    downstream.failExchange(.payloadTooLarge)
                    return
                }
                if let replay {
                    // What this step appended is the tail of `out` (appending may compact, so count from the end).
                    let appended = out.readableBytes - before
                    if replay.readableBytes + appended <= bufferBytes {
                        replay.append(UnsafeRawBufferPointer(rebasing: out.readable[(out.readableBytes - appended)...]))
                    } else {
                        dropReplay()
                    }
                }
                progressed = true
                continue
            }
            guard downstream.mayBeReadable else { break }
            switch downstream.readClient(limit: bufferBytes) {
            case .progress: continue
            case .noData: break loop
            case .gone:
                // The client left before sending its whole body: nothing can be answered.
                downstream.abort()
                return
            }
        }
        if progressed || requestBodyDone { armRequestDeadline() }
        if upstream.state == .open { upstream.flush() }
    }

    private func dropReplay() {
        if let replay { downstream.worker.buffers.give(replay) }
        replay = nil
    }

    // MARK: Upstream events

    func upstreamConnected(_ upstream: UpstreamConnection) {
        armRequestDeadline()
        upstream.flush()
    }

    func upstreamDrained(_ upstream: UpstreamConnection) {
        // Room toward the pod again: take more of the request body from the client.
        if !requestBodyDone { pumpRequestBody() }
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
        guard let upstream, let input = upstream.input else { return }
        if downstream.output == nil { downstream.output = downstream.worker.buffers.take() }
        let out = downstream.output!
        while true {
            switch response {
            case .done:
                return
            case .awaitingHead:
                if !input.isEmpty {
                    switch downstream.responseParser.parse(input.readable, requestWasHEAD: requestWasHEAD) {
                    case .complete:
                        let head = downstream.responseParser.head
                        if head.status < 200 {
                            // 1xx interim responses: 100 Continue was already answered by us, 101 cannot happen
                            // because Upgrade is never forwarded, others (103) are not relayed.
                            if head.status == 101 { failBeforeResponse(.upstreamInvalid); return }
                            input.consume(head.headLength)
                            downstream.responseParser.reset()
                            continue
                        }
                        writeResponseHead(head, base: input.readable.baseAddress!, into: out)
                        input.consume(head.headLength)
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
                    out.append(UnsafeRawBufferPointer(rebasing: input.readable[0..<n]))
                    input.consume(n)
                    if n == remaining { finishResponse(); return }
                    response = .contentLength(remaining: remaining - n)
                }
            case .chunked:
                var ended = false
                while !input.isEmpty {
                    let (consumed, step) = downstream.responseDecoder.next(input.readable)
                    switch step {
                    case .data(let span):
                        if rechunkResponse {
                            out.append(hex: span.count)
                            out.append("\r\n")
                        }
                        out.append(UnsafeRawBufferPointer(rebasing: input.readable[span.start..<(span.start + span.count)]))
                        if rechunkResponse { out.append("\r\n") }
                    case .needMore:
                        break
                    case .end:
                        ended = true
                    case .failed:
                        // Framing broke mid-body: the client cannot be told more than by closing.
                        upstreamKeepAlive = false
                        downstream.abort()
                        return
                    }
                    input.consume(consumed)
                    if ended { break }
                }
                if ended { finishResponse(); return }
            case .untilClose:
                if !input.isEmpty {
                    if rechunkResponse {
                        out.append(hex: input.readableBytes)
                        out.append("\r\n")
                        out.append(input.readable)
                        out.append("\r\n")
                    } else {
                        out.append(input.readable)
                    }
                    input.consume(input.readableBytes)
                }
            }
            // Everything at hand is relayed; read more only while the client keeps up.
            if out.readableBytes >= bufferBytes {
                downstream.flush()
                if out.readableBytes >= bufferBytes { return }  // the client is slow: wait for its EPOLLOUT
            }
            guard upstream.mayBeReadable else { break }
            switch upstream.readOnce(limit: bufferBytes) {
            case .bytes:
                if responseStarted {
                    downstream.setDeadline(.responseBodyIdle, after: downstream.worker.settings.timeouts.bodyIdleMs)
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
        downstream.flush()
    }

    /// The pod closed the connection (errno 0) or it failed.
    private func upstreamEnded(errno: Int32) {
        upstreamKeepAlive = false
        switch response {
        case .untilClose where errno == 0:
            finishResponse()
        case .awaitingHead:
            let neverAnswered = (upstream?.input?.isEmpty ?? true)
            if neverAnswered, let old = upstream, old.exchanges > 0, retryOnFreshConnection() {
                return
            }
            failBeforeResponse(upstream?.everConnected == true ? .upstreamClosed : .upstreamConnectFailed)
        case .done:
            return
        case .contentLength, .chunked, .untilClose:
            downstream.abort()
        }
    }

    /// Sends the request again on a new connection; only when the pod never saw it answered and we still hold every byte.
    private func retryOnFreshConnection() -> Bool {
        guard !retried, let replay, let fresh = pool.connect() else { return false }
        retried = true
        upstream?.close()
        upstream = fresh
        fresh.attach(self)
        fresh.output!.append(replay.readable)
        if fresh.state == .open { fresh.flush() } else {
            downstream.setDeadline(.upstreamConnect, after: downstream.worker.settings.timeouts.upstreamConnectMs)
        }
        return true
    }

    private func failBeforeResponse(_ error: ErrorResponse) {
        upstreamKeepAlive = false
        downstream.failExchange(error)
    }

    private func writeResponseHead(_ head: ResponseHead, base: UnsafeRawPointer, into out: ByteBuffer) {
        responseStarted = true
        upstreamKeepAlive = head.keepAlive
        @inline(__always) func bytes(_ span: ByteSpan) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + span.start, count: span.count)
        }
        // Status code and reason phrase as the pod sent them: the bytes after "HTTP/1.x " up to the CR.
        var end = 9
        while end < head.headLength && base.load(fromByteOffset: end, as: UInt8.self) != 0x0D { end += 1 }
        out.append("HTTP/1.1 ")
        out.append(UnsafeRawBufferPointer(start: base + 9, count: end - 9))
        out.append("\r\n")
        var hasRequestId = false
        var contentLength: ByteSpan? = nil
        for field in head.headers {
            if field.kind == .contentLength { contentLength = field.value }
            if field.dropOnForward { continue }
            if field.kind == .xRequestId { hasRequestId = true }
            out.append(bytes(field.name))
            out.append(": ")
            out.append(bytes(field.value))
            out.append("\r\n")
        }
        switch head.framing {
        case .none:
            // HEAD and 304 keep the pod's Content-Length: it describes the representation (RFC 9110 §8.6).
            if let contentLength, requestWasHEAD || head.status == 304 {
                out.append("Content-Length: ")
                out.append(bytes(contentLength))
                out.append("\r\n")
            }
            response = .done
        case .contentLength(let n):
            out.append("Content-Length: ")
            out.append(decimal: n)
            out.append("\r\n")
            response = n > 0 ? .contentLength(remaining: n) : .done
        case .chunked, .untilClose:
            if clientIsHTTP10 {
                closeAfterResponse = true  // an HTTP/1.0 client only understands a close-delimited body
            } else {
                rechunkResponse = true
                out.append("Transfer-Encoding: chunked\r\n")
            }
            if case .chunked = head.framing { response = .chunked } else { response = .untilClose }
        }
        if !requestBodyDone { closeAfterResponse = true }
        if closeAfterResponse || downstream.worker.isDraining {
            out.append("Connection: close\r\n")
        } else if clientIsHTTP10 {
            out.append("Connection: keep-alive\r\n")
        }
        if !hasRequestId {
            out.append("X-Request-Id: ")
            out.append(downstream.requestId)
            out.append("\r\n")
        }
        if downstream.worker.settings.revisionHeader { out.append(revision.responseHeader) }
        out.append("\r\n")
        downstream.setDeadline(.responseBodyIdle, after: downstream.worker.settings.timeouts.bodyIdleMs)
        if case .done = response { finishResponse() }
    }

    private func finishResponse() {
        response = .done
        if rechunkResponse, let out = downstream.output { out.append("0\r\n\r\n") }
        if isOutstanding { pool.outstanding -= 1; isOutstanding = false }
        dropReplay()
        if let upstream {
            let reusable = upstreamKeepAlive && requestBodyDone && upstream.isUsable && (upstream.input?.isEmpty ?? true)
            if reusable { upstream.detachAndPool() } else { upstream.close() }
            self.upstream = nil
        }
        downstream.exchangeFinished(closeAfter: closeAfterResponse || !requestBodyDone)
    }

    /// Ends the exchange without a response: the upstream connection is closed, never pooled.
    func abandonUpstream() {
        if isOutstanding { pool.outstanding -= 1; isOutstanding = false }
        dropReplay()
        upstream?.close()
        upstream = nil
        response = .done
    }
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
