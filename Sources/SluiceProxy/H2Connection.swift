// Proxy layer: one client connection speaking HTTP/2 (h2c by prior knowledge, or ALPN h2 over TLS) — moves bytes
// between the socket and the H2Session, owns the H2Streams (one per request, many at once), and enforces the
// connection-level limits: idle and request-headers timeouts, output-queue cap, graceful GOAWAY on drain.
import SluiceHTTP1
import SluiceHTTP2
import SluiceIO
import SluiceTLS
#if canImport(Glibc)
import Glibc
#endif

final class H2Connection: EventHandler, DeferredTask, H2SessionDelegate, ClosableOnDrain {
    enum Phase {
        case open
        /// GOAWAY(2^31-1) is out; the final GOAWAY follows at `finalGoAwayAt`.
        case announcingShutdown(finalGoAwayAt: Int64)
        /// The session is over (final GOAWAY, a flood, a protocol error): the last frames are being written.
        case finishing(until: Int64)
        /// Our side is shut down (FIN sent); what the client still sends is read and dropped until it closes, so
        /// that closing with unread bytes cannot turn into a RST that destroys our GOAWAY (lingering close).
        case lingering(until: Int64)
        case closed
    }

    let fd: Int32
    /// unowned(unsafe), as for DownstreamConnection.worker: the worker closes every connection before its loop
    /// returns (DrainTests, H2TimeoutTests' shutdown GOAWAY under AddressSanitizer).
    unowned(unsafe) let worker: Worker
    let peerIP: [UInt8]
    private var registration: Registration?
    private(set) var phase: Phase = .open
    private(set) var session: H2Session!
    private var output: ByteBuffer?
    /// Streams by id; a stream leaves when nghttp2 closes it.
    private var streams: [Int32: H2Stream] = [:]
    /// Streams whose response buffer nghttp2 drained during the last send: their exchanges may read the pod again.
    private var drained: [H2Stream] = []
    private var pendingResets: [Int32] = []
    private var toRoute: [H2Stream] = []
    private var mayBeReadable = true
    /// Re-entrancy guard: nghttp2 must not be fed or drained from inside its own callbacks.
    private var isInSession = false
    private var isFlushScheduled = false
    /// Plain TCP (h2c) or TLS with ALPN `h2`: every byte goes through it.
    private var transport: Transport
    var isTLS: Bool { transport.isTLS }
    private var needsFlush = false
    private var deadline: Int64 = .max
    /// The header block of a stream has been open since then (slow HEADERS/CONTINUATION), or .max.
    private var headersStartedAt: Int64 = .max
    /// Most bytes of frames held for the client before the session stops producing more (and reading stops).
    private var outputCap: Int { 2 * worker.settings.limits.bufferBytes }

    /// The hand-over hook: adopts an accepted client connection that speaks HTTP/2 (ClientAcceptor: ALPN `h2`, or
    /// the preface by prior knowledge), its registration and the bytes already read from it (the connection preface,
    /// perhaps more). The worker's connection count moves with it.
    static func adopt(transport: Transport, registration: Registration, peerIP: [UInt8], worker: Worker,
                      received: UnsafeRawBufferPointer) {
        let connection = H2Connection(transport: transport, peerIP: peerIP, worker: worker)
        connection.registration = registration
        worker.loop.replaceHandler(of: registration, with: connection)
        connection.headersStartedAt = worker.loop.now
        connection.feed(received)
        connection.advance()
    }

    private init(transport: Transport, peerIP: [UInt8], worker: Worker) {
        self.fd = transport.fd
        self.transport = transport
        self.peerIP = peerIP
        self.worker = worker
        var limits = H2Limits()
        limits.maxHeaderListBytes = worker.settings.limits.maxHeaderBytes
        limits.maxHeaderCount = worker.settings.limits.maxHeaderCount
        limits.maxStreamsPerConnection = worker.settings.limits.maxStreamsPerConnection
        self.session = nil
        self.session = H2Session(delegate: self, limits: limits, scratch: worker.h2HeaderScratch)
        armIdle()
    }

    // MARK: Events

    func handle(events: UInt32) {
        if case .closed = phase { return }
        if events & (Readiness.error | Readiness.hangup) != 0 && events & Readiness.readable == 0 {
            close()
            return
        }
        if events & (Readiness.readable | Readiness.readHangup) != 0 { mayBeReadable = true }
        // A TLS read that stopped because OpenSSL had to write first resumes on the room to write.
        if events & Readiness.writable != 0, transport.readWaitsForWritable { mayBeReadable = true }
        switch phase {
        case .open, .announcingShutdown:
            advance()
        case .finishing:
            writeLastFrames()
        case .lingering:
            discardInput()
        case .closed:
            return
        }
    }

    func checkDeadline(now: Int64) {
        switch phase {
        case .closed:
            return
        case .finishing(let until), .lingering(let until):
            if now >= until { close() }
            return
        case .open:
            if worker.isDraining {
                session.announceShutdown()
                phase = .announcingShutdown(finalGoAwayAt: now + 100)
                flush()
                return
            }
        case .announcingShutdown(let at):
            if now >= at {
                worker.metrics.h2GoAwaySent(graceful: true)
                session.goAway()
                phase = .announcingShutdown(finalGoAwayAt: .max)
                flush()
            }
        }
        guard isOpen else { return }
        let headerTimeout = Int64(worker.settings.timeouts.requestHeaderMs)
        if headerTimeout > 0 && now - headersStartedAt >= headerTimeout {
            // A header block (or the preface) that does not complete in time: slowloris over HTTP/2.
            session.terminate(.protocolError, reason: "request headers timeout")
            headersStartedAt = .max
            flush()
            return
        }
        if now >= deadline {
            // Idle: say goodbye properly (GOAWAY, then the lingering close).
            deadline = .max
            worker.metrics.h2GoAwaySent(graceful: true)
            session.goAway()
            phase = .announcingShutdown(finalGoAwayAt: .max)
            flush()
            return
        }
        for stream in streams.values { stream.checkDeadline(now: now) }
    }

    /// No stream open: the connection closes after keepAliveIdle; with streams, their own deadlines run.
    private func armIdle() {
        if streams.isEmpty {
            let ms = worker.settings.timeouts.keepAliveIdleMs
            deadline = ms > 0 ? worker.loop.now + Int64(ms) : .max
        } else {
            deadline = .max
        }
    }

    // MARK: Reading

    private func feed(_ bytes: UnsafeRawBufferPointer) {
        isInSession = true
        let ok = session.receive(bytes, now: worker.loop.now)
        isInSession = false
        // A connection error nghttp2 could not recover from (a flood, bad preface): it queued a GOAWAY; send it.
        if !ok {
            worker.metrics.h2GoAwaySent(graceful: false)
            toRoute.removeAll()
            finish()
            return
        }
        // Streams whose head completed in these bytes, in arrival order; those reset meanwhile are skipped.
        if !toRoute.isEmpty {
            let ready = toRoute
            toRoute.removeAll(keepingCapacity: true)
            for stream in ready where isOpen && session.terminatedReason == nil { stream.route() }
        }
    }

    /// Reads while the client sends and the output queue has room, then sends what the session produced.
    func advance() {
        guard !isAdvancing else { return }  // a flush from inside the loop below must not start a second one
        isAdvancing = true
        defer { isAdvancing = false }
        while isOpen, mayBeReadable, (output?.readableBytes ?? 0) < outputCap {
            let input = worker.buffers.take()
            input.reserve(16 * 1024)
            let want = input.writableBytes
            switch transport.read(into: input, limit: want) {
            case .bytes(let n):
                if transport.isDrained(afterReading: n, of: want) { mayBeReadable = false }
                feed(input.readable)
                worker.buffers.give(input)
                guard isOpen else { return }
                flush()
                guard isOpen else { return }
            case .wouldBlock:
                mayBeReadable = false
                worker.buffers.give(input)
            case .endOfFile, .failed:
                worker.buffers.give(input)
                close()
                return
            }
        }
        flush()
    }

    /// nghttp2 stops wanting to read after the first (notice) GOAWAY already; the final one must still go out.
    private var isBetweenGoAways: Bool {
        if case .announcingShutdown(let at) = phase { return at != .max }
        return false
    }

    /// The session runs (reading requests and sending frames).
    private var isOpen: Bool {
        switch phase {
        case .open, .announcingShutdown: return true
        case .finishing, .lingering, .closed: return false
        }
    }

    // MARK: Writing

    /// Streams call this when they have something to send: the frames of every stream that became ready in one
    /// batch of events leave in one write (one SSL_write on TLS) instead of one per stream.
    func scheduleFlush() {
        guard !isFlushScheduled else { return }
        isFlushScheduled = true
        worker.loop.runAfterThisBatch(self)
    }

    func runDeferred() {
        isFlushScheduled = false
        flush()
    }

    /// Lets the session produce frames into the output queue, writes them, and wakes streams nghttp2 drained;
    /// then ends a finished session, or reads again when reading had stopped on a full output queue.
    func flush() {
        // Inside nghttp2's callbacks, or inside the loop below (a woken stream flushing): the running loop goes on.
        if isInSession || isFlushing { needsFlush = true; return }
        guard isOpen else { return }
        writeFrames()
        guard isOpen else { return }
        if !session.wantsRead && !session.wantsWrite && output == nil && !isBetweenGoAways {
            finish()  // GOAWAY sent and every stream done (or the session ended the connection)
        } else if mayBeReadable && (output?.readableBytes ?? 0) < outputCap && !isAdvancing {
            advance()
        }
    }

    private func writeFrames() {
        isFlushing = true
        defer { isFlushing = false }
        if output == nil { output = worker.buffers.take() }
        let out = output!
        while true {
            needsFlush = false
            isInSession = true
            let ok = session.send(into: out, limit: outputCap)
            isInSession = false
            if !ok { finish(); return }
            let produced = !out.isEmpty
            var blocked = false
            writing: while !out.isEmpty {
                switch transport.write(from: out) {
                case .bytes: continue
                case .wouldBlock:
                    blocked = true  // EPOLLOUT brings us back
                    break writing
                case .endOfFile, .failed:
                    close()
                    return
                }
            }
            // Streams whose buffered response went out read their pods again (outside the session's callbacks).
            while let stream = drained.popLast() { stream.responseDrained() }
            guard isOpen else { return }
            if !pendingResets.isEmpty {
                for id in pendingResets { session.resetStream(id, .noError) }
                pendingResets.removeAll(keepingCapacity: true)
                needsFlush = true
            }
            if blocked || (!produced && !needsFlush) { break }
        }
        if out.isEmpty {
            worker.buffers.give(out)
            output = nil
        }
    }
    private var isFlushing = false
    private var isAdvancing = false

    // MARK: Session events

    func h2StreamOpened(_ streamId: Int32) {
        headersStartedAt = worker.loop.now
        let stream = H2Stream(id: streamId, connection: self)
        streams[streamId] = stream
        worker.metrics.h2StreamOpened()
        armIdle()
    }

    func h2Header(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        streams[streamId]?.addHeader(name: name, value: value)
    }

    func h2HeadersComplete(_ streamId: Int32, endStream: Bool) {
        headersStartedAt = .max
        streams[streamId]?.headersComplete(endStream: endStream)
    }

    func h2Data(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) {
        if let stream = streams[streamId] {
            stream.receiveBody(bytes)
        } else {
            session.consume(streamId, bytes.count)  // a stream we already dropped: give the window back
        }
    }

    func h2RequestEnded(_ streamId: Int32) {
        streams[streamId]?.requestEnded()
    }

    func h2StreamClosed(_ streamId: Int32, errorCode: UInt32) {
        headersStartedAt = .max
        guard let stream = streams.removeValue(forKey: streamId) else { return }
        if errorCode != 0 { worker.metrics.h2StreamReset(errorCode: errorCode) }
        stream.closed(errorCode: errorCode)
        armIdle()
    }

    func h2ReadResponseBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard let stream = streams[streamId] else { return (0, true) }
        return stream.readResponseBody(into: buffer)
    }

    func h2SubmitTrailers(_ streamId: Int32) -> Bool {
        streams[streamId]?.submitTrailers() ?? false
    }

    /// A stream's head is complete: route it after the current receive.
    func routeAfterReceive(_ stream: H2Stream) {
        toRoute.append(stream)
    }

    /// A stream whose response ended before its request did: RST_STREAM(NO_ERROR) after this send (RFC 9113 §8.1).
    func resetAfterSend(_ streamId: Int32) {
        pendingResets.append(streamId)
    }

    /// A stream's response buffer went below its limit inside a send: wake its exchange after the send.
    func noteDrained(_ stream: H2Stream) {
        drained.append(stream)
    }

    // MARK: Closing

    /// The session is over: streams end, the last frames nghttp2 has are written, then the lingering close.
    private func finish() {
        guard isOpen else { return }
        phase = .finishing(until: worker.loop.now + 2_000)
        let all = streams
        streams.removeAll()
        drained.removeAll()
        for stream in all.values { stream.closed(errorCode: H2ErrorCode.cancel.rawValue) }
        if output == nil { output = worker.buffers.take() }
        _ = session.send(into: output!, limit: outputCap)  // the GOAWAY a failed receive queued, if any
        writeLastFrames()
    }

    private func writeLastFrames() {
        guard case .finishing = phase else { return }
        if let out = output {
            while !out.isEmpty {
                switch transport.write(from: out) {
                case .bytes: continue
                case .wouldBlock: return  // EPOLLOUT brings us back
                case .endOfFile, .failed:
                    close()
                    return
                }
            }
            worker.buffers.give(out)
            output = nil
        }
        transport.shutdownWrite()  // close_notify after the last GOAWAY, then FIN; the rest is read raw and dropped
        phase = .lingering(until: worker.loop.now + 2_000)
        discardInput()
    }

    /// Reads and drops what the client still sends; closes at its FIN (or after a bounded amount or time).
    private func discardInput() {
        let scratch = worker.buffers.take()
        defer { worker.buffers.give(scratch) }
        for _ in 0..<64 {  // at most ~2 MiB per wake-up; the deadline ends a client that never stops
            switch transport.read(into: scratch, limit: scratch.capacity) {
            case .bytes:
                scratch.clear()
            case .wouldBlock:
                return
            case .endOfFile, .failed:
                close()
                return
            }
        }
    }

    func closeAtDrainDeadline() { close() }

    func close() {
        if case .closed = phase { return }
        phase = .closed
        let all = streams
        streams.removeAll()
        drained.removeAll()
        for stream in all.values { stream.closed(errorCode: H2ErrorCode.cancel.rawValue) }
        if let registration { worker.loop.deregister(fd: fd, registration: registration) }
        registration = nil
        transport.close(clean: false)
        if let b = output { worker.buffers.give(b); output = nil }
        worker.metrics.h2ConnectionClosed()
        worker.connectionClosed()
    }
}
