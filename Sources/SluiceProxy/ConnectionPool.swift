// Proxy layer: per-worker keep-alive connections to one endpoint (one pod), its outstanding-request count, its
// metrics cells (connects, failures, idle/busy/outstanding gauges), and the
// count of its live connections that decides when a retired pool may go.
import SluiceIO
import SluiceRouting

final class ConnectionPool {
    let endpoint: Endpoint
    let address: SocketAddress?
    /// unowned(unsafe): the worker outlives every pool it makes (it holds them in its table, then in its retired
    /// list until their last connection is gone); checked references cost a retain per use.
    unowned(unsafe) let worker: Worker
    /// The endpoint's health as every worker sees it (outlier ejection, recent failures).
    let health: EndpointHealthSlot
    /// Most recently used last: reusing the warmest connection keeps the others free to time out at the pod.
    private var idle: [UpstreamConnection] = []
    /// Requests sent to this endpoint and not yet answered, for the power-of-two-choices pick.
    var outstanding = 0 {
        didSet { cellAdd(metrics + EndpointLayout.outstanding, signed: outstanding - oldValue) }
    }
    /// This endpoint's cells on this worker (connects, failures, gauges), shared with any other pool of the same
    /// endpoint on this worker (a retired one still draining): gauges move by deltas.
    private let metrics: UnsafeMutablePointer<UInt64>
    private var reportedIdle = 0
    private var reportedBusy = 0

    /// Moves the idle and busy gauges to what the pool holds now (busy: live connections not idle).
    private func syncGauges() {
        let idleNow = idle.count, busyNow = liveConnections - idle.count
        if idleNow != reportedIdle { cellAdd(metrics + EndpointLayout.idle, signed: idleNow - reportedIdle); reportedIdle = idleNow }
        if busyNow != reportedBusy { cellAdd(metrics + EndpointLayout.busy, signed: busyNow - reportedBusy); reportedBusy = busyNow }
    }
    private let maxIdle = 512
    /// Set when a hand-over drops this endpoint: connections coming back from exchanges are closed, not kept.
    private(set) var isRetired = false

    /// Connections of this pool (HTTP/1.1 idle or busy, HTTP/2) from registration until the end of the tick in
    /// which they closed. Connections refer to their pool unowned(unsafe), so a retired pool is dropped by its worker
    /// only once this is 0: no connection can touch it after that.
    private(set) var liveConnections = 0

    /// A connection of this pool was registered with the loop.
    func connectionOpened() { liveConnections += 1; syncGauges() }

    /// A connection of this pool closed, and the tick it closed in is over (called from its deferred task).
    func connectionEnded() {
        precondition(liveConnections > 0, "a pool connection ended twice")
        liveConnections -= 1
        syncGauges()
        if isRetired && liveConnections == 0 { worker.retiredPoolDrained() }
    }

    /// The route table no longer has this endpoint: idle connections close now, busy ones when their work is done.
    func retire() {
        isRetired = true
        closeIdle()
    }

    /// The last TLS handshake failure logged for this endpoint; cleared by a successful handshake, so a pod with a
    /// bad certificate is logged once, not once per request.
    var lastTLSFailure: String?

    /// A handshake with this pod failed: logs the reason unless it is the one already logged.
    func tlsFailed(_ reason: String) {
        guard lastTLSFailure != reason else { return }
        lastTLSFailure = reason
        logLine("upstream \(endpoint): TLS handshake failed: \(reason)", event: "upstream.tls.handshake_failed", fields: ["endpoint": "\(endpoint)"])
    }

    init(endpoint: Endpoint, worker: Worker) {
        self.endpoint = endpoint
        self.address = SocketAddress(ip: endpoint.host, port: endpoint.port)
        self.worker = worker
        self.health = EndpointHealth.slot(for: endpoint)
        self.metrics = worker.metrics.cells(of: endpoint)
        idle.reserveCapacity(16)
    }

    /// An idle keep-alive connection if there is one, else a new connection (connecting).
    func acquire() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.isUsable { syncGauges(); return connection }
            connection.close()
        }
        syncGauges()
        return connect()
    }

    /// A new connection, never a pooled one (used to retry after a reused connection failed).
    func connect() -> UpstreamConnection? {
        cellAdd(metrics + EndpointLayout.connects)
        guard let address, let connection = UpstreamConnection.open(address: address, pool: self) else {
            cellAdd(metrics + EndpointLayout.connectFailures)
            return nil
        }
        return connection
    }

    /// A connection that `connect`/`openH2` started failed later (refused, timed out, TLS handshake failed).
    func connectFailedLater() {
        cellAdd(metrics + EndpointLayout.connectFailures)
    }

    /// HTTP/2 connections of an h2c endpoint (gRPC), multiplexed: usually one, another when one is full.
    private(set) var h2Connections: [H2UpstreamConnection] = []
    /// At most this many HTTP/2 connections per endpoint and worker; beyond, nghttp2 queues streams on the least busy.
    private let maxH2Connections = 8

    /// A connection with room for one more stream (the pod's MAX_CONCURRENT_STREAMS), opening one when none has.
    func acquireH2() -> H2UpstreamConnection? {
        for connection in h2Connections where connection.hasCapacity { return connection }
        if h2Connections.count >= maxH2Connections {
            return h2Connections.min { $0.streamCount < $1.streamCount }
        }
        return openH2()
    }

    /// A new HTTP/2 connection, never an existing one (a retry after a reused one failed).
    func openH2() -> H2UpstreamConnection? {
        cellAdd(metrics + EndpointLayout.connects)
        guard let connection = H2UpstreamConnection.open(pool: self) else {
            cellAdd(metrics + EndpointLayout.connectFailures)
            return nil
        }
        h2Connections.append(connection)
        return connection
    }

    /// A connection that closed or received GOAWAY takes no new streams.
    func forgetH2(_ connection: H2UpstreamConnection) {
        if let i = h2Connections.firstIndex(where: { $0 === connection }) { h2Connections.remove(at: i) }
    }

    /// Takes back a connection whose exchange ended cleanly.
    func release(_ connection: UpstreamConnection) {
        if idle.count < maxIdle && !worker.isDraining && !isRetired {
            idle.append(connection)
            syncGauges()
        } else {
            connection.close()
        }
    }

    /// Forgets an idle connection the pod closed.
    func remove(_ connection: UpstreamConnection) {
        if let i = idle.lastIndex(where: { $0 === connection }) { idle.remove(at: i); syncGauges() }
    }

    func closeIdle() {
        let all = idle
        idle.removeAll()
        syncGauges()
        for connection in all { connection.close() }
        for connection in h2Connections { connection.closeIfIdle() }
    }
}
