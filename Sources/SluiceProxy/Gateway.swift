// Proxy layer: the running data plane — binds the listeners, starts one worker per core and hands new route tables to them.
import SluiceIO
import SluiceRouting
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct GatewayError: Error, CustomStringConvertible {
    public let description: String
}

/// What a worker is told between requests: a new configuration generation, or to drain and stop.
enum WorkerMessage: Sendable {
    case install(RouteTable, ProxySettings)
    case drain(deadlineMs: Int64)
}

/// The thread-safe side of a worker: its mailbox and its loop's waker.
final class WorkerHandle: Sendable {
    let index: Int
    let mailbox = Mutex<[WorkerMessage]>([])
    let finished = Atomic<Bool>(false)
    let activeConnections = Atomic<Int>(0)
    let waker = Mutex<Waker?>(nil)

    init(index: Int) { self.index = index }

    func send(_ message: WorkerMessage) {
        mailbox.withLock { $0.append(message) }
        waker.withLock { $0?.wake() }
    }
}

public final class Gateway: Sendable {
    private let handles: [WorkerHandle]
    private let listenerFDs: [Int32]
    /// The bound port (useful when the configuration asked for port 0).
    public let port: UInt16
    private let current: Mutex<(RouteTable, ProxySettings)>

    /// Binds one SO_REUSEPORT listener per worker, then starts the workers. Throws when the address cannot be bound.
    public init(settings: ProxySettings, routes: RouteTable) throws {
        Posix.ignoreSIGPIPE()
        let workerCount = max(1, settings.workers ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        guard var address = SocketAddress(ip: settings.listen.host, port: settings.listen.port) else {
            throw GatewayError(description: "listen: \(settings.listen) is not an IP literal and port")
        }
        var fds: [Int32] = []
        var boundPort = settings.listen.port
        do {
            for i in 0..<workerCount {
                let fd = try TCPSocket.listen(address, reusePort: true)
                fds.append(fd)
                if i == 0 && boundPort == 0 {
                    // Port 0: let the kernel choose for the first listener, then bind the others to the same port.
                    boundPort = TCPSocket.localPort(fd)
                    address = SocketAddress(ip: settings.listen.host, port: boundPort)!
                }
            }
        } catch {
            fds.forEach { Posix.close($0) }
            throw GatewayError(description: "listen on \(settings.listen): \(error)")
        }
        listenerFDs = fds
        port = boundPort
        current = Mutex((routes, settings))
        handles = (0..<workerCount).map { WorkerHandle(index: $0) }
        for (handle, fd) in zip(handles, fds) {
            let started = Atomic<Bool>(false)
            spawnThread(name: "sluice-w\(handle.index)") {
                let worker: Worker
                do {
                    worker = try Worker(handle: handle, listenerFD: fd, routes: routes, settings: settings,
                                        seed: UInt64(handle.index + 1) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(Posix.nowMilliseconds()))
                } catch {
                    fatalError("worker \(handle.index) could not start: \(error)")
                }
                started.store(true, ordering: .releasing)
                worker.run()
                handle.finished.store(true, ordering: .releasing)
            }
            // Wait until the worker's loop exists so a hand-over right after init reaches it.
            while !started.load(ordering: .acquiring) { sched_yield() }
        }
    }

    public var workerCount: Int { handles.count }

    /// The route table and settings the workers were last given.
    public var routes: RouteTable { current.withLock { $0.0 } }

    /// Hands a new route table (and settings, except the listen address and worker count) to every worker.
    /// Each worker swaps between requests; requests already routed finish on the routes they started with.
    public func publish(routes: RouteTable, settings: ProxySettings? = nil) {
        let s = current.withLock { state -> ProxySettings in
            state.0 = routes
            if let settings { state.1 = settings }
            return state.1
        }
        for handle in handles { handle.send(.install(routes, s)) }
    }

    /// Downstream connections open right now, over all workers.
    public var activeConnections: Int { handles.reduce(0) { $0 + $1.activeConnections.load(ordering: .relaxed) } }

    /// Stops accepting, lets in-flight requests finish (idle keep-alive connections close at once, busy ones
    /// after their current response), and returns when every worker has stopped or `graceMs` has passed.
    public func shutdown(graceMs: Int64 = 10_000) {
        let deadline = Posix.nowMilliseconds() + graceMs
        for handle in handles { handle.send(.drain(deadlineMs: deadline)) }
        while !handles.allSatisfy({ $0.finished.load(ordering: .acquiring) }) {
            if Posix.nowMilliseconds() > deadline + 1000 { break }
            usleep(2000)
        }
    }
}
