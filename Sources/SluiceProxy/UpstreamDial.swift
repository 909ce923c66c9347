// Proxy layer: the connect phase every upstream connection shares — a non-blocking TCP connect and, for https:// and
// h2:// endpoints, a TLS handshake verified against upstreamTLS — moved on by the connection's epoll events.
import SluiceIO
import SluiceTLS
#if canImport(Glibc)
import Glibc
#endif

struct UpstreamDial {
    enum Step {
        /// Call `step` again on the next event.
        case waiting
        /// The connect or the handshake failed (a refused TLS handshake reports ECONNREFUSED).
        case failed(errno: Int32)
        /// TCP is up and any handshake is done: the connection can carry requests.
        case open
    }

    let fd: Int32
    let tls: TLSSession?
    /// What ALPN offers a TLS pod, and so what it must select.
    let offer: TLSClientContext.Offer
    private var tcpConnected: Bool

    /// Nothing left to do: a plain connect that completed at once.
    var isOpen: Bool { tcpConnected && tls == nil }

    /// Starts connecting to the pool's endpoint; nil when the socket cannot be made, the connect fails at once, or
    /// the upstream CA file cannot be loaded (logged once by the worker).
    static func start(_ address: SocketAddress, pool: ConnectionPool, offer: TLSClientContext.Offer) -> UpstreamDial? {
        var clientContext: TLSClientContext?
        if pool.endpoint.isTLS || pool.endpoint.isH2TLS {
            guard let context = pool.worker.upstreamTLSContext(offer: offer) else { return nil }
            clientContext = context
        }
        let fd: Int32
        let tcpConnected: Bool
        switch TCPSocket.connect(address) {
        case .connected(let f): fd = f; tcpConnected = true
        case .inProgress(let f): fd = f; tcpConnected = false
        case .failed: return nil
        }
        var session: TLSSession?
        if let clientContext {
            // The handshake runs on the loop: registering reports the socket's writability at once (an edge).
            guard let made = TLSSession(fd: fd, clientContext: clientContext, peer: peerName(pool)) else {
                Posix.close(fd)
                return nil
            }
            session = made
        }
        return UpstreamDial(fd: fd, tls: session, offer: offer, tcpConnected: tcpConnected)
    }

    /// What the pod's certificate must name: `upstreamTLS.serverName` (a DNS name, or an IP literal), else the
    /// endpoint's IP.
    static func peerName(_ pool: ConnectionPool) -> TLSSession.PeerName {
        let name = pool.worker.settings.upstreamTLS.serverName
        if let name, SocketAddress(ip: name, port: 0) == nil { return .dns(name) }
        return .ip(name ?? pool.endpoint.host)
    }

    mutating func step(events: UInt32, pool: ConnectionPool) -> Step {
        if !tcpConnected {
            guard events & (Readiness.writable | Readiness.error | Readiness.hangup) != 0 else { return .waiting }
            let error = TCPSocket.pendingError(fd)
            if error != 0 { return .failed(errno: error) }
            tcpConnected = true
        }
        guard let tls else { return .open }
        // Any event may be the one the handshake waits for; a step that needs more returns at once.
        switch tls.handshake() {
        case .done(let selected):
            if offer == .h2 && selected != .h2 {
                pool.tlsFailed("the pod did not select ALPN h2")
                return .failed(errno: ECONNREFUSED)
            }
            pool.lastTLSFailure = nil
            return .open
        case .wantRead, .wantWrite:
            return .waiting
        case .failed(let reason):
            pool.tlsFailed(reason)
            return .failed(errno: ECONNREFUSED)
        }
    }
}
