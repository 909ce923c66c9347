// A blocking HTTP/1.1 server: a listener, an accept thread and one thread per connection, plain or over a
// BlockingTransport (the admin API's TLS). It serves the admin API
// and the demo predictors (make run, tests) — never the data plane, which is SluiceProxy on epoll.

import Glibc
import Synchronization

public final class BlockingServer: Sendable {
    /// The largest request body a handler can receive.
    public static let maxBodyBytes = BlockingConnection.bodyLimit

    enum Lifecycle {
        case ready
        case running(acceptor: BlockingThread)
        case stopped
    }

    struct State {
        var lifecycle = Lifecycle.ready
        // Open connections, so stop() can wake their threads. Each thread removes its descriptor under the lock
        // before closing it, so stop() never shuts down a number the kernel has already handed to someone else.
        var connections: Set<Int32> = []
    }

    /// The bound port; the kernel's choice when constructed with port 0.
    public let port: UInt16
    let listener: Int32
    let handler: @Sendable (BlockingRequest) -> BlockingResponse
    /// What each accepted socket is wrapped in (TLS); nil for plain HTTP.
    let transport: BlockingTransport?
    let state = Mutex(State())
    let acceptedCount = Atomic<Int>(0)
    let servedCount = Atomic<Int>(0)

    /// Binds and listens immediately, so `port` is known and connections queue before `start()`.
    public init(host: String = "127.0.0.1", port: UInt16, transport: BlockingTransport? = nil,
                handler: @escaping @Sendable (BlockingRequest) -> BlockingResponse) throws {
        let listener = try BlockingSocket.listen(host: host, port: port)
        do {
            self.port = try BlockingSocket.boundPort(listener)
        } catch {
            close(listener)
            throw error
        }
        self.listener = listener
        self.handler = handler
        self.transport = transport
    }

    /// Connections accepted since start.
    public var connectionsAccepted: Int { acceptedCount.load(ordering: .relaxed) }

    /// Requests parsed and handed to the handler (malformed requests answered with 400 are not counted).
    public var requestsServed: Int { servedCount.load(ordering: .relaxed) }

    /// Starts the accept thread. Calling it again, or after `stop()`, does nothing.
    public func start() {
        state.withLock { state in
            guard case .ready = state.lifecycle else { return }
            do {
                state.lifecycle = .running(acceptor: try BlockingThread.start(detached: false) { self.acceptLoop() })
            } catch {
                // start() cannot throw by contract, and a process that cannot create one thread cannot serve either.
                fatalError("BlockingServer could not start its accept thread: \(error)")
            }
        }
    }

    /// Closes the listener and every open connection. Returns once the accept thread has exited and the port is
    /// free; connection threads are detached and finish on their own (a handler still running completes first).
    public func stop() {
        let previous = state.withLock { state in
            let previous = state.lifecycle
            state.lifecycle = .stopped
            for fd in state.connections { BlockingSocket.shutdown(fd) }
            return previous
        }
        switch previous {
        case .ready:
            close(listener)
        case .running(let acceptor):
            // shutdown(2) wakes accept(2) with EINVAL; closing first could hand the number to another socket
            // while the acceptor is still about to call accept on it.
            BlockingSocket.shutdown(listener)
            acceptor.join()
            close(listener)
        case .stopped:
            break
        }
    }

    func acceptLoop() {
        while let fd = BlockingSocket.accept(listener) {
            let isAdmitted = state.withLock { state in
                guard case .running = state.lifecycle else { return false }
                state.connections.insert(fd)
                return true
            }
            guard isAdmitted else {
                close(fd)
                return
            }
            acceptedCount.add(1, ordering: .relaxed)
            do {
                _ = try BlockingThread.start(detached: true) { self.serve(fd) }
            } catch {
                // Out of threads: refuse this connection rather than the whole server.
                state.withLock { _ = $0.connections.remove(fd) }
                close(fd)
            }
        }
    }

    func serve(_ fd: Int32) {
        // A failed handshake closes the connection unanswered: there is no channel to answer on.
        let stream: BlockingStream? = if let transport { transport.open(fd) } else { PlainStream(fd: fd) }
        if let stream {
            let connection = BlockingConnection(fd: fd, stream: stream, handler: handler) { self.servedCount.add(1, ordering: .relaxed) }
            connection.serve()
            stream.close()
        }
        BlockingSocket.finish(fd)
        state.withLock { _ = $0.connections.remove(fd) }
        close(fd)
    }
}
