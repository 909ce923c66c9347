// Proxy layer: the first step of every accepted client connection — the TLS handshake on a TLS listener, then the
// choice of protocol (ALPN `h2`, or HTTP/2's connection preface by prior knowledge) — after which the connection is
// handed, with its transport, its registration and every byte read so far, to an HTTP/1.1 DownstreamConnection or
// an HTTP/2 H2Connection, each of which speaks one protocol only.
import SluiceHTTP2
import SluiceIO
import SluiceTLS

final class ClientAcceptor: EventHandler, ClosableOnDrain {
    private enum Phase {
        /// TLS only: nothing is read as HTTP before the handshake is done.
        case handshaking
        /// Reading the first bytes: `PRI * HTTP/2.0…` is HTTP/2 by prior knowledge (RFC 9113 §3.3), anything else
        /// HTTP/1.1.
        case sniffing
        /// Handed over (or closed): this object is done.
        case done
    }

    private let fd: Int32
    /// unowned(unsafe): the worker outlives its connections (it closes them before its loop returns).
    private unowned(unsafe) let worker: Worker
    private var transport: Transport
    private let peerIP: [UInt8]
    private var registration: Registration?
    private var phase: Phase
    /// The first bytes, handed over with the connection.
    private var input: ByteBuffer?
    private var mayBeReadable = true
    /// EPOLLRDHUP came: the client sent its FIN (the new owner must know: that edge will not come again).
    private var clientFinishedSending = false
    /// The handshake timeout, then the request-head timeout (absolute from the end of the handshake, or accept).
    private var deadline: Int64 = .max
    /// When the connection was accepted (the loop's clock): a drain gives a fresh connection its first bytes' grace.
    private var acceptedAt: Int64 = 0

    /// Takes a just-accepted client socket: registers it once (edge-triggered, both directions) for its whole life.
    static func accept(fd: Int32, peer: SocketAddress, worker: Worker) {
        var text = [UInt8](repeating: 0, count: 64)
        let n = text.withUnsafeMutableBytes { peer.writeIP(into: $0) }
        text.removeLast(text.count - n)
        var session: TLSSession? = nil
        if worker.tls != nil {
            guard let s = TLSSession(fd: fd, context: worker.tls!.context()) else {
                Posix.close(fd)
                return
            }
            session = s
        }
        let acceptor = ClientAcceptor(fd: fd, transport: Transport(fd: fd, tls: session), peerIP: text, worker: worker)
        do {
            acceptor.registration = try worker.loop.register(
                fd: fd, events: Readiness.readable | Readiness.writable | Readiness.readHangup | Readiness.edgeTriggered,
                handler: acceptor)
        } catch {
            acceptor.transport.close(clean: false)
            return
        }
        worker.connectionOpened()
        worker.metrics.clientAccepted()
        acceptor.acceptedAt = worker.loop.now
        if session != nil {
            acceptor.deadline = worker.loop.now + Int64(worker.settings.tls?.handshakeTimeoutMs ?? 10_000)
            // No handshake step here: the registration's first (writable) edge arrives right away and drives it.
        } else {
            acceptor.armRequestHead()
        }
    }

    private init(fd: Int32, transport: Transport, peerIP: [UInt8], worker: Worker) {
        self.fd = fd
        self.transport = transport
        self.peerIP = peerIP
        self.worker = worker
        self.phase = transport.isTLS ? .handshaking : .sniffing
    }

    private func armRequestHead() {
        let ms = worker.settings.timeouts.requestHeaderMs
        deadline = ms > 0 ? worker.loop.now + Int64(ms) : .max
    }

    // MARK: Events

    func handle(events: UInt32) {
        if case .done = phase { return }
        if events & (Readiness.error | Readiness.hangup) != 0 && events & Readiness.readable == 0 {
            close()
            return
        }
        if events & Readiness.readHangup != 0 { clientFinishedSending = true }
        switch phase {
        case .handshaking:
            // Any edge may be what the handshake waits for (it reads and writes); the step tells what it needs next.
            continueHandshake()
        case .sniffing:
            if events & (Readiness.readable | Readiness.readHangup) != 0 || transport.readWaitsForWritable { mayBeReadable = true }
            sniff()
        case .done:
            return
        }
    }

    func checkDeadline(now: Int64) {
        if case .done = phase { return }
        // Silent too long, or draining and silent past the grace (a client that just connected is sending its
        // request: DownstreamConnection.drainIdleGraceMs): no request has started, so it closes without a word.
        if now >= deadline || (worker.isDraining && now - acceptedAt >= DownstreamConnection.drainIdleGraceMs) { close() }
    }

    func closeAtDrainDeadline() { close() }

    private func continueHandshake() {
        guard let step = transport.handshake() else { return }
        switch step {
        case .wantRead, .wantWrite:
            return  // edge-triggered and registered for both directions: the next edge calls again
        case .failed:
            // Failed handshakes are routine on a public port (scanners, old clients): no log line per connection.
            worker.metrics.tlsHandshake(resumed: nil)
            close()
        case .done(let applicationProtocol):
            worker.metrics.tlsHandshake(resumed: transport.tls?.isResumed ?? false)
            switch applicationProtocol {
            case .h2:
                handOverToHTTP2()
            case .http11:
                phase = .sniffing
                armRequestHead()
                // The client's first bytes may already sit in the socket (or in OpenSSL) with their edge spent on
                // the handshake: read now.
                mayBeReadable = true
                sniff()
            }
        }
    }

    /// Reads until the first bytes tell the protocol. A request line never starts with "P" followed by the rest of
    /// the preface, so HTTP/1.1 is known at the first byte that differs.
    private func sniff() {
        while true {
            if let input, !input.isEmpty {
                switch H2Preface.match(input.readable) {
                case .complete: handOverToHTTP2(); return
                case .mismatch: handOverToHTTP1(); return
                case .partial: break
                }
            }
            guard mayBeReadable else { return }
            if input == nil { input = worker.buffers.take() }
            let input = self.input!
            input.reserve(16 * 1024)
            let want = min(input.writableBytes, 16 * 1024)
            switch transport.read(into: input, limit: want) {
            case .bytes(let n):
                if transport.isDrained(afterReading: n, of: want) { mayBeReadable = false }
            case .wouldBlock:
                mayBeReadable = false
                if input.isEmpty { worker.buffers.give(input); self.input = nil }  // an idle connection holds no buffer
                return
            case .endOfFile, .failed:
                close()
                return
            }
        }
    }

    // MARK: Hand-over

    private func handOverToHTTP1() {
        guard let registration else { return }
        phase = .done
        worker.metrics.clientNegotiated(h2: false)
        DownstreamConnection.adopt(transport: transport.handOver(), registration: registration, peerIP: peerIP,
                                   worker: worker, received: takeInput(), mayBeReadable: mayBeReadable,
                                   clientFinishedSending: clientFinishedSending, requestHeadDeadline: deadline)
        self.registration = nil
    }

    private func handOverToHTTP2() {
        guard let registration else { return }
        phase = .done
        worker.metrics.clientNegotiated(h2: true)
        let received = takeInput()
        H2Connection.adopt(transport: transport.handOver(), registration: registration, peerIP: peerIP, worker: worker,
                           received: received?.readable ?? UnsafeRawBufferPointer(start: nil, count: 0))
        if let received { worker.buffers.give(received) }
        self.registration = nil
    }

    private func takeInput() -> ByteBuffer? {
        let taken = input
        input = nil
        return taken
    }

    /// Closes before any request: no HTTP was spoken, so there is nothing to answer.
    private func close() {
        if case .done = phase { return }
        phase = .done
        worker.metrics.clientNegotiated(h2: nil)
        if let registration { worker.loop.deregister(fd: fd, registration: registration) }
        registration = nil
        transport.close(clean: false)
        if let b = input { worker.buffers.give(b); input = nil }
        worker.connectionClosed()
    }
}
