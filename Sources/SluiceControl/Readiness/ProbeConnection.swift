// Control layer: one health check's connection to a pod — TCP, and TLS verified exactly as the data plane verifies
// it (the same SluiceTLS client context and peer-name rule) for https:// and h2:// endpoints — with every step
// bounded by the check's deadline through poll(2). Short-lived and off the data plane: one per check.
import Glibc
import SluiceIO
import SluiceRouting
import SluiceTLS

/// Why a check failed, in the words its status condition and `endpoint.unhealthy` event show.
struct ProbeFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

final class ProbeConnection {
    private let fd: Int32
    private let tls: TLSSession?
    private let deadline: ContinuousClock.Instant
    let endpoint: Endpoint

    /// Connects (and shakes hands, with `clientContext`) before `deadline`. `clientContext` must be there for the
    /// endpoint kinds that speak TLS; for h2:// the pod must select ALPN h2, as the data plane requires.
    init(_ endpoint: Endpoint, clientContext: TLSClientContext?, serverName: String?,
         deadline: ContinuousClock.Instant) throws(ProbeFailure) {
        self.endpoint = endpoint
        self.deadline = deadline
        guard let address = SocketAddress(ip: endpoint.host, port: endpoint.port) else {
            throw ProbeFailure("\(endpoint.host) is not an IP address")
        }
        let fd: Int32
        switch TCPSocket.connect(address) {
        case .connected(let connected): fd = connected
        case .inProgress(let connecting):
            fd = connecting
            do throws(ProbeFailure) {
                try Self.wait(fd, for: Int16(POLLOUT), until: deadline, doing: "connect")
                let error = TCPSocket.pendingError(fd)
                if error != 0 { throw ProbeFailure("connect: \(String(cString: strerror(error)))") }
            } catch {
                Posix.close(fd)
                throw error
            }
        case .failed(let error): throw ProbeFailure("connect: \(String(cString: strerror(error)))")
        }
        self.fd = fd
        guard endpoint.upstreamProtocol == .https || endpoint.upstreamProtocol == .h2 else {
            tls = nil
            return
        }
        guard let clientContext else {
            Posix.close(fd)
            throw ProbeFailure("no upstream TLS context (upstreamTLS.caFile could not be loaded)")
        }
        // The data plane's rule (UpstreamDial.peerName): upstreamTLS.serverName as SNI and DNS name when it is one,
        // else the IP (the endpoint's, or serverName's when that is an IP literal) among the certificate's IP SANs.
        let peer: TLSSession.PeerName
        if let serverName, SocketAddress(ip: serverName, port: 0) == nil { peer = .dns(serverName) } else { peer = .ip(serverName ?? endpoint.host) }
        guard let session = TLSSession(fd: fd, clientContext: clientContext, peer: peer) else {
            Posix.close(fd)
            throw ProbeFailure("TLS: cannot make a session")
        }
        tls = session
        do throws(ProbeFailure) {
            try handshake(session, wantsH2: endpoint.upstreamProtocol == .h2)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    private var isClosed = false

    func close() {
        guard !isClosed else { return }
        isClosed = true
        tls?.close(clean: true)
        Posix.close(fd)
    }

    private func handshake(_ session: TLSSession, wantsH2: Bool) throws(ProbeFailure) {
        while true {
            switch session.handshake() {
            case .done(let selected):
                if wantsH2 && selected != .h2 { throw ProbeFailure("TLS: the pod did not select ALPN h2") }
                return
            case .wantRead: try Self.wait(fd, for: Int16(POLLIN), until: deadline, doing: "TLS handshake")
            case .wantWrite: try Self.wait(fd, for: Int16(POLLOUT), until: deadline, doing: "TLS handshake")
            case .failed(let reason): throw ProbeFailure("TLS handshake: \(reason)")
            }
        }
    }

    /// Sends all of `buffer`'s readable bytes.
    func write(_ buffer: ByteBuffer) throws(ProbeFailure) {
        while buffer.readableBytes > 0 {
            let result: IOResult
            if let tls {
                result = tls.write(from: buffer)
            } else {
                result = Posix.write(fd, buffer.readable.baseAddress!, buffer.readableBytes)
                if case .bytes(let n) = result { buffer.consume(n) }
            }
            switch result {
            case .bytes: continue
            case .wouldBlock: try Self.wait(fd, for: Int16(POLLOUT), until: deadline, doing: "send")
            case .endOfFile: throw ProbeFailure("the pod closed the connection")
            case .failed(let error): throw ProbeFailure("send: \(String(cString: strerror(error)))")
            }
        }
    }

    /// Reads what is there (waiting for something) into `buffer`'s free room; false when the pod closed its side.
    func read(into buffer: ByteBuffer) throws(ProbeFailure) -> Bool {
        if buffer.writableBytes == 0 { buffer.compact() }
        guard buffer.writableBytes > 0 else { throw ProbeFailure("answer too large") }
        while true {
            let result: IOResult
            if let tls {
                result = tls.read(into: buffer, limit: buffer.writableBytes)
            } else {
                result = Posix.read(fd, buffer.writable.baseAddress!, buffer.writableBytes)
                if case .bytes(let n) = result { buffer.commit(n) }
            }
            switch result {
            case .bytes: return true
            case .wouldBlock:
                let events = tls?.readWantsWritable == true ? Int16(POLLOUT) : Int16(POLLIN)
                try Self.wait(fd, for: events, until: deadline, doing: "waiting for the answer")
            case .endOfFile: return false
            case .failed(let error): throw ProbeFailure(error == ECONNRESET ? "connection reset by the pod" : "receive: \(String(cString: strerror(error)))")
            }
        }
    }

    /// Waits for `events` on `fd` until `deadline`; throws "timed out" when it passes first.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant,
                             doing what: String) throws(ProbeFailure) {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw ProbeFailure("timed out (\(what))") }
            let (seconds, attoseconds) = left.components
            let ms = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&entry, 1, ms)
            if n > 0 { return }  // readable, writable, or an error the next call reports
            if n < 0 && errno != EINTR { throw ProbeFailure("poll: \(String(cString: strerror(errno)))") }
        }
    }
}
