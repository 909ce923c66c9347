// Proxy layer: one TCP connection to a backend pod: connect (and for https:// endpoints a TLS handshake), write the
// request, read the response; pooled between exchanges.
import SluiceIO
import SluiceTLS
#if canImport(Glibc)
import Glibc
#endif

/// What an upstream connection reports to the exchange that holds it.
protocol UpstreamDelegate: AnyObject {
    func upstreamConnected(_ upstream: UpstreamConnection)
    func upstreamReadable(_ upstream: UpstreamConnection)
    func upstreamDrained(_ upstream: UpstreamConnection)
    /// The connection failed or the pod closed it; `errno` 0 means an orderly close.
    func upstreamFailed(_ upstream: UpstreamConnection, errno: Int32)
}

final class UpstreamConnection: EventHandler, DeferredTask {
    enum State {
        /// TCP connect, then (https) the TLS handshake: both within the upstream connect timeout.
        case connecting
        case open
        case closed
    }

    let fd: Int32
    /// unowned(unsafe): the pool outlives the connection. A pool in the route table is held by its worker; a retired
    /// one stays in the worker's retired list until `pool.liveConnections` is 0, which happens only in this
    /// connection's end-of-tick task after `close` (`runDeferred`). After that tick the connection never touches
    /// its pool again: everything that does (handle, attach, detachAndPool, flush) stops at `state == .closed`.
    /// PoolLifetimeTests breaks this under AddressSanitizer if it fails.
    unowned(unsafe) let pool: ConnectionPool
    private var registration: Registration?
    private(set) var state: State
    /// unowned(unsafe), not weak: a weak reference gives every exchange a side table (a malloc and slow
    /// refcounting per request). Safe because an exchange always detaches (detachAndPool, close) before it ends:
    /// it is owned by its downstream until finishResponse or abandonUpstream, and both clear this.
    unowned(unsafe) var delegate: (any UpstreamDelegate)?
    /// Exchanges completed on this connection: a failure on a reused connection may be retried.
    var exchanges = 0
    /// Response bytes from the pod; taken from the worker's pool while an exchange runs.
    var input: ByteBuffer?
    /// Request bytes for the pod.
    var output: ByteBuffer?
    /// Edge-triggered reads: true until a read returns EAGAIN or a short count.
    private(set) var mayBeReadable = true
    /// The pod closed its side (EOF seen); the connection must not be pooled again.
    private(set) var sawEndOfFile = false
    /// The TCP connect (and TLS handshake) completed (a failure before that is a connect failure: 502, not a
    /// closed connection).
    private(set) var everConnected = false
    /// Plain TCP, or TLS toward the pod (https:// endpoints).
    private var transport: Transport
    /// The connect (and TLS handshake) under way while `state` is `.connecting`.
    private var dial: UpstreamDial?

    static func open(address: SocketAddress, pool: ConnectionPool) -> UpstreamConnection? {
        guard let dial = UpstreamDial.start(address, pool: pool, offer: .http11) else { return nil }
        let connection = UpstreamConnection(transport: Transport(fd: dial.fd, tls: dial.tls), pool: pool, state: dial.isOpen ? .open : .connecting)
        connection.dial = dial
        connection.everConnected = dial.isOpen
        do {
            connection.registration = try pool.worker.loop.register(
                fd: dial.fd, events: Readiness.readable | Readiness.writable | Readiness.readHangup | Readiness.edgeTriggered,
                handler: connection)
        } catch {
            Posix.close(dial.fd)
            return nil
        }
        pool.connectionOpened()
        return connection
    }

    private init(transport: Transport, pool: ConnectionPool, state: State) {
        self.fd = transport.fd
        self.transport = transport
        self.pool = pool
        self.state = state
    }

    /// An idle pooled connection is usable when the pod has not closed it.
    var isUsable: Bool { state == .open && !sawEndOfFile }

    func attach(_ delegate: UpstreamDelegate) {
        assert(state != .closed, "an exchange attached to a closed upstream connection")  // acquire gives none
        self.delegate = delegate
        if input == nil { input = pool.worker.buffers.take() }
        if output == nil { output = pool.worker.buffers.take() }
    }

    /// Ends an exchange cleanly: buffers go back to the worker, the connection to its pool.
    func detachAndPool() {
        delegate = nil
        guard state != .closed else { return }  // its buffers went back at close; its pool may be gone
        exchanges += 1
        releaseBuffers()
        pool.release(self)
    }

    private func releaseBuffers() {
        if let b = input { pool.worker.buffers.give(b); input = nil }
        if let b = output { pool.worker.buffers.give(b); output = nil }
    }

    func handle(events: UInt32) {
        switch state {
        case .closed:
            return
        case .connecting:
            switch dial?.step(events: events, pool: pool) ?? .open {
            case .waiting:
                return
            case .failed(let errno):
                fail(errno: errno)
                return
            case .open:
                dial = nil
            }
            state = .open
            everConnected = true
            delegate?.upstreamConnected(self)
        case .open:
            if delegate == nil {
                // Idle in the pool: any readiness means the pod closed or sent something unasked; drop it.
                if events & (Readiness.readable | Readiness.readHangup | Readiness.hangup | Readiness.error) != 0 {
                    pool.remove(self)
                    close()
                }
                return
            }
            if events & Readiness.error != 0 {
                fail(errno: TCPSocket.pendingError(fd))
                return
            }
            // A TLS read that stopped because OpenSSL had to write first (a KeyUpdate answer) goes on when writable.
            if events & Readiness.writable != 0, transport.readWaitsForWritable {
                mayBeReadable = true
                delegate?.upstreamReadable(self)
                if state == .closed || delegate == nil { return }
            }
            if events & Readiness.writable != 0, let output, !output.isEmpty {
                flush()
                if state == .closed { return }
                // Told only from here, never from a direct flush, so pumping and flushing cannot recurse.
                if output.isEmpty { delegate?.upstreamDrained(self) }
            }
            if events & (Readiness.readable | Readiness.readHangup | Readiness.hangup) != 0 {
                mayBeReadable = true
                delegate?.upstreamReadable(self)
            }
        }
    }

    func checkDeadline(now: Int64) {}

    /// Reads once into `input`, up to `limit` bytes. The caller decides whether to go on.
    func readOnce(limit: Int) -> IOResult {
        guard let input else { return .wouldBlock }
        input.reserve(1)
        let room = min(limit, input.writableBytes)
        let result = transport.read(into: input, limit: room)
        switch result {
        case .bytes(let n):
            if transport.isDrained(afterReading: n, of: room) { mayBeReadable = false }
        case .wouldBlock:
            mayBeReadable = false
        case .endOfFile:
            sawEndOfFile = true
            mayBeReadable = false
        case .failed:
            mayBeReadable = false
        }
        return result
    }

    /// Writes as much of `output` as the socket takes (an EPOLLOUT edge follows when it took less).
    func flush() {
        guard state == .open, let output else { return }
        while !output.isEmpty {
            switch transport.write(from: output) {
            case .bytes:
                continue
            case .wouldBlock:
                return
            case .endOfFile:
                fail(errno: EPIPE)
                return
            case .failed(let e):
                fail(errno: e)
                return
            }
        }
    }

    private func fail(errno: Int32) {
        let delegate = self.delegate
        close(clean: false)
        delegate?.upstreamFailed(self, errno: errno)
    }

    /// Closes the socket and returns the buffers; safe to call twice. TLS: a clean close sends close_notify first
    /// (one non-blocking try); a failed connection sends none. The pool hears of it at the end of the tick (the
    /// loop's task list holds the connection until then), so that neither is freed inside this call chain.
    func close(clean: Bool = true) {
        guard state != .closed else { return }
        state = .closed
        delegate = nil
        if let registration { pool.worker.loop.deregister(fd: fd, registration: registration) }
        registration = nil
        transport.close(clean: clean)
        releaseBuffers()
        pool.worker.loop.runAfterThisBatch(self)
    }

    /// The end of the tick in which the connection closed: the last time it touches its pool.
    func runDeferred() {
        pool.connectionEnded()
    }
}
