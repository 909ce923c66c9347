// Proxy layer: one HTTP/2 connection to a pod's gRPC port — cleartext by prior knowledge (h2c://) or over TLS with
// ALPN h2 (h2://) — multiplexing the streams of many downstream H2Streams. Per worker and HTTP/2 endpoint, the pool
// keeps one, and opens another only when the pod's MAX_CONCURRENT_STREAMS is reached. Flow control is manual both
// ways (see H2UpstreamStream). Teardown asked for from inside the connection's own call chain waits for the end of
// the loop tick, and the pool hears of a close only then.
import SluiceHTTP2
import SluiceIO
import SluiceTLS
#if canImport(Glibc)
import Glibc
#endif

final class H2UpstreamConnection: EventHandler, DeferredTask, H2ClientSessionDelegate {
    enum State {
        /// TCP connect, then (h2://) the TLS handshake: both within the upstream connect timeout.
        case connecting
        case open
        case closed
    }

    let fd: Int32
    /// unowned(unsafe): the pool outlives the connection. A pool in the route table is held by its worker; a retired
    /// one stays in the worker's retired list until `pool.liveConnections` is 0, which happens only in this
    /// connection's end-of-tick task after `close` (`runDeferred`). After that the connection never touches its
    /// pool: reading, flushing and the session callbacks run only while it is open, and what its streams still call
    /// on a closed connection (start, resumeData, consume, cancel) stops at `state`. PoolLifetimeTests breaks this
    /// under AddressSanitizer if it fails.
    unowned(unsafe) let pool: ConnectionPool
    private var registration: Registration?
    private(set) var state: State
    private(set) var everConnected = false
    private var session: H2ClientSession!
    private var output: ByteBuffer?
    /// Open streams by id; a stream leaves when nghttp2 closes it.
    private var streams: [Int32: H2UpstreamStream] = [:]
    private var isInSession = false
    private var isFlushing = false
    private var needsFlush = false
    /// Reused request-field list (no allocation per request once grown).
    var requestFields: [(UnsafeRawBufferPointer, UnsafeRawBufferPointer)] = []
    private var worker: Worker { pool.worker }
    /// Plain TCP (h2c://), or TLS toward the pod (h2:// endpoints).
    private var transport: Transport
    /// The connect (and TLS handshake) under way while `state` is `.connecting`.
    private var dial: UpstreamDial?

    static func open(pool: ConnectionPool) -> H2UpstreamConnection? {
        guard let address = pool.address, let dial = UpstreamDial.start(address, pool: pool, offer: .h2) else { return nil }
        let connection = H2UpstreamConnection(transport: Transport(fd: dial.fd, tls: dial.tls), pool: pool,
                                              state: dial.isOpen ? .open : .connecting)
        connection.dial = dial
        do {
            connection.registration = try pool.worker.loop.register(
                fd: dial.fd, events: Readiness.readable | Readiness.writable | Readiness.readHangup | Readiness.edgeTriggered,
                handler: connection)
        } catch {
            Posix.close(dial.fd)
            return nil
        }
        pool.connectionOpened()
        connection.connectDeadline = pool.worker.loop.now + Int64(pool.worker.settings.timeouts.upstreamConnectMs)
        return connection
    }

    private init(transport: Transport, pool: ConnectionPool, state: State) {
        self.fd = transport.fd
        self.transport = transport
        self.pool = pool
        self.state = state
        self.everConnected = state == .open
        self.session = nil
        self.session = H2ClientSession(delegate: self)
        requestFields.reserveCapacity(32)
    }

    var streamCount: Int { streams.count }
    /// Streams that ended normally here: a failure on a connection that served some may be the idle-close race.
    private(set) var completedStreams = 0

    /// New streams may start here: open or connecting, no GOAWAY, below the pod's concurrency limit.
    var hasCapacity: Bool {
        state != .closed && !session.receivedGoAway && streams.count < session.maxConcurrentStreams
    }

    // MARK: Streams

    /// Submits `stream`'s request (fields in `requestFields`); false when nghttp2 refused it.
    func start(_ stream: H2UpstreamStream, hasBody: Bool) -> Bool {
        let id = session.submitRequest(requestFields, hasBody: hasBody)
        requestFields.removeAll(keepingCapacity: true)
        guard id > 0 else { return false }
        stream.streamId = id
        streams[id] = stream
        flush()
        return true
    }

    func resumeData(_ streamId: Int32) {
        guard state != .closed else { return }
        session.resumeData(streamId)
        flush()
    }

    /// The client took `count` response bytes: the pod may send that many more.
    func consume(_ streamId: Int32, _ count: Int) {
        guard state != .closed else { return }
        session.consume(streamId, count)
        flush()
    }

    /// Cancels a stream at once (the client reset it or went away); its relay object is forgotten.
    func cancel(_ streamId: Int32, code: H2ErrorCode) {
        guard state != .closed, streamId > 0 else { return }
        streams[streamId]?.downstream = nil
        session.resetStream(streamId, code)
        flush()
    }

    // MARK: Events

    func handle(events: UInt32) {
        switch state {
        case .closed:
            return
        case .connecting:
            switch dial?.step(events: events, pool: pool) ?? .open {
            case .waiting:
                return
            case .failed:
                fail()
                return
            case .open:
                dial = nil
            }
            state = .open
            everConnected = true
            for stream in streams.values { stream.connected() }
            flush()
            // TLS: the pod's SETTINGS may already sit inside OpenSSL (read with the handshake); no edge announces them.
            if state == .open, transport.isTLS { readAll() }
        case .open:
            if events & Readiness.error != 0 { fail(); return }
            if events & Readiness.writable != 0 { flush() }
            // A TLS read that stopped because OpenSSL had to write first (a KeyUpdate answer) goes on when writable.
            if state == .open, events & Readiness.writable != 0, transport.readWaitsForWritable { readAll() }
            if state == .open, events & (Readiness.readable | Readiness.readHangup | Readiness.hangup) != 0 { readAll() }
        }
    }

    /// A connect (or TLS handshake) still under way by then, when every stream on it has been given up, is
    /// abandoned. A call that still waits keeps its own deadline (and answer); but nothing else ends a connection
    /// whose calls were all cancelled while it connected (a pod that never finishes the handshake would keep it,
    /// and a retired pool, forever).
    private var connectDeadline: Int64 = .max

    func checkDeadline(now: Int64) {
        guard state == .connecting, now >= connectDeadline, streams.values.allSatisfy({ $0.downstream == nil }) else { return }
        close(clean: false)
    }

    private func readAll() {
        while state == .open {
            let input = worker.buffers.take()
            input.reserve(16 * 1024)
            let want = input.writableBytes
            let result = transport.read(into: input, limit: want)
            switch result {
            case .bytes(let n):
                isInSession = true
                let ok = session.receive(input.readable)
                isInSession = false
                worker.buffers.give(input)
                if !ok { fail(); return }
                flush()
                if transport.isDrained(afterReading: n, of: want) { return }
            case .wouldBlock:
                worker.buffers.give(input)
                return
            case .endOfFile, .failed:
                worker.buffers.give(input)
                fail()
                return
            }
        }
    }

    /// Lets the session produce frames (requests, DATA, WINDOW_UPDATE) and writes them.
    func flush() {
        if isInSession || isFlushing { needsFlush = true; return }
        guard state == .open else { return }
        isFlushing = true
        defer { isFlushing = false }
        if output == nil { output = worker.buffers.take() }
        let out = output!
        while state == .open {
            needsFlush = false
            isInSession = true
            let ok = session.send(into: out, limit: 2 * worker.settings.limits.bufferBytes)
            isInSession = false
            if !ok { fail(); return }
            var blocked = false
            writing: while !out.isEmpty {
                switch transport.write(from: out) {
                case .bytes: continue
                case .wouldBlock:
                    blocked = true
                    break writing
                case .endOfFile, .failed:
                    fail()
                    return
                }
            }
            if blocked || !needsFlush && !session.wantsWrite { break }
        }
        if let out = output, out.isEmpty {
            worker.buffers.give(out)
            output = nil
        }
        if state == .open && ((!session.wantsRead && !session.wantsWrite) || (needsCloseWhenIdle && streams.isEmpty)) { close() }
    }

    // MARK: Session events

    func h2cHeader(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isTrailer: Bool) {
        streams[streamId]?.header(name: name, value: value, isTrailer: isTrailer)
    }

    func h2cHeadersComplete(_ streamId: Int32, isTrailer: Bool, endStream: Bool) {
        streams[streamId]?.headersComplete(isTrailer: isTrailer, endStream: endStream)
    }

    func h2cData(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) {
        if let stream = streams[streamId], stream.downstream != nil {
            stream.data(bytes)
        } else {
            session.consume(streamId, bytes.count)  // nobody wants it: give the window back
        }
    }

    func h2cDataEnded(_ streamId: Int32) {
        streams[streamId]?.ended()
    }

    func h2cStreamClosed(_ streamId: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamId) else { return }
        if errorCode == 0 { completedStreams += 1 }
        stream.closed(errorCode: errorCode)
        if streams.isEmpty && (pool.isRetired || worker.isDraining || session.receivedGoAway) { needsCloseWhenIdle = true }
    }
    private var needsCloseWhenIdle = false

    func h2cReadRequestBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard let stream = streams[streamId] else { return (0, true) }
        return stream.readRequestBody(into: buffer)
    }

    func h2cGoAway() {
        pool.forgetH2(self)  // no new streams here; the open ones finish
    }

    // MARK: Closing

    /// The connection failed: every stream on it fails (before a response: UNAVAILABLE to the client).
    private func fail() {
        let all = streams
        streams.removeAll()
        close(clean: false)
        for stream in all.values { stream.connectionFailed(neverConnected: !everConnected, wasReused: completedStreams > 0) }
    }

    /// Closes the socket; streams still open are failed by `fail` (call that instead when there are any). TLS: a
    /// clean close sends close_notify first (one non-blocking try); a failed connection sends none. The pool hears
    /// of it at the end of the tick (the loop's task list holds the connection until then), so that neither the
    /// connection nor a retired pool is freed inside the call chain that closed it (a flush after a client cancel).
    func close(clean: Bool = true) {
        guard state != .closed else { return }
        assert(!isInSession, "closed from inside an nghttp2 callback; ask for closeIfIdle instead")
        state = .closed
        endPending = true
        scheduleTask()
        pool.forgetH2(self)
        if let registration { worker.loop.deregister(fd: fd, registration: registration) }
        registration = nil
        transport.close(clean: clean)
        if let out = output { worker.buffers.give(out); output = nil }
        if !streams.isEmpty {
            let all = streams
            streams.removeAll()
            for stream in all.values { stream.connectionFailed(neverConnected: !everConnected, wasReused: completedStreams > 0) }
        }
    }

    /// Called by the pool (retired, draining): closes when no stream is open, at the end of the tick. The pool may
    /// ask from inside this connection's own call chain (a drain that starts as one of its streams ends, inside
    /// nghttp2's callback), where closing would pull the output buffer and TLS session from under the caller.
    func closeIfIdle() {
        guard state != .closed else { return }
        closeIfIdleRequested = true
        scheduleTask()
    }

    private var closeIfIdleRequested = false
    /// Closed, and the pool not told yet.
    private var endPending = false
    private var isTaskScheduled = false

    private func scheduleTask() {
        guard !isTaskScheduled else { return }
        isTaskScheduled = true
        worker.loop.runAfterThisBatch(self)
    }

    /// The end of the tick: a close asked for by the pool happens now, and a closed connection leaves its pool's
    /// count (the last time it touches the pool).
    func runDeferred() {
        defer { isTaskScheduled = false }  // a close below needs no second task: its end is reported here
        if closeIfIdleRequested {
            closeIfIdleRequested = false
            if state != .closed && streams.isEmpty { close() }
        }
        if endPending {
            endPending = false
            pool.connectionEnded()
        }
    }
}
