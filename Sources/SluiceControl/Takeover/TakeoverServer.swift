// Control layer: the running process's side of a takeover — hands its listening sockets and their claim to a
// `sluice serve --takeover`, releases its admin ports and state directory when asked, then starts its drain.
import SluiceIO
import SluiceProxy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The running process's side: answers takeover requests on the claim socket of the client listener, one at a time.
public final class TakeoverServer: Sendable {
    public struct Hooks: Sendable {
        /// Stop the admin and metrics listeners (releasing their claims) and release the state directory.
        public var release: @Sendable () -> Void
        /// Begin the drain (the serve loop's SIGTERM path), without waiting for it; called once, before "draining".
        public var drain: @Sendable () -> Void
        public init(release: @escaping @Sendable () -> Void, drain: @escaping @Sendable () -> Void) {
            self.release = release
            self.drain = drain
        }
    }

    private let claimFD: Int32
    private let listeners: [Int32]
    private let address: SocketAddressSpec
    private let hooks: Hooks
    private let events: EventLog
    private let stopping = Atomic<Bool>(false)
    private let loopEnded = Atomic<Bool>(false)
    private let released = Atomic<Bool>(false)
    /// True once a new process was told "draining": everything is its own from then on.
    public var handedOver: Bool { handedOverFlag.load(ordering: .acquiring) }
    private let handedOverFlag = Atomic<Bool>(false)

    /// `claimFD`: the listening claim socket of `address`; `listeners`: the workers' listening sockets.
    public init(claimFD: Int32, listeners: [Int32], address: SocketAddressSpec, events: EventLog, hooks: Hooks) {
        self.claimFD = claimFD
        self.listeners = listeners
        self.address = address
        self.events = events
        self.hooks = hooks
    }

    public func start() {
        spawnThread(name: "sluice-takeover") { [self] in
            while !stopping.load(ordering: .acquiring) {
                // A bounded wait, so that stop() is seen: closing a socket another thread waits on does not wake it,
                // and shutdown(2) would end the claim for the new process too (it shares the socket).
                guard let fd = UnixSocket.accept(claimFD, timeoutMs: 100) else { continue }
                let done = serve(fd)
                Posix.close(fd)
                if done { break }
            }
            loopEnded.store(true, ordering: .releasing)
        }
    }

    /// Stops answering (at shutdown); returns once the thread is past its last connection (bounded).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        for _ in 0..<400 where !loopEnded.load(ordering: .acquiring) { usleep(5_000) }
    }

    /// One conversation; true when the listeners were handed over for good ("drain" answered).
    private func serve(_ fd: Int32) -> Bool {
        UnixSocket.setTimeout(fd, milliseconds: TakeoverWire.timeoutMs)
        // A probe (a second plain start asking who holds the claim) connects and closes without a word.
        guard let hello = TakeoverWire.readLine(fd) else { return false }
        if hello == TakeoverWire.who {
            _ = try? TakeoverWire.send(fd, "pid \(getpid())")
            return false
        }
        let peer = UnixSocket.peerPID(fd).map { Int($0) } ?? 0
        guard hello == TakeoverWire.hello else {
            events.record(Event("takeover.refused", reason: "TakeoverRefused", level: .warning,
                                message: "process \(peer) sent \"\(hello.prefix(64))\" on the takeover socket of \(address); expected \"\(TakeoverWire.hello)\"",
                                fields: [("peerPid", .int(peer))]))
            return false
        }
        let header = "listeners \(getpid()) \(address) \(listeners.count)"
        do {
            try FDPassing.send(fd, payload: Array((header + "\n").utf8), fds: [claimFD] + listeners)
        } catch {
            events.record(Event("takeover.failed", reason: "TakeoverFailed", level: .warning,
                                message: "cannot hand the listeners of \(address) to process \(peer): \(error)", fields: [("peerPid", .int(peer))]))
            return false
        }
        events.record(Event("takeover.requested", reason: "TakeoverRequested",
                            message: "process \(peer) takes over \(address): handed it \(listeners.count) listening sockets",
                            fields: [("peerPid", .int(peer)), ("listeners", .int(listeners.count))]))
        while true {
            guard let line = TakeoverWire.readLine(fd) else {
                if released.load(ordering: .acquiring) {
                    events.record(Event("takeover.abandoned", reason: "TakeoverAbandoned", level: .error,
                                        message: "process \(peer) left the takeover of \(address) after this process released its admin API and state directory; traffic is still served here with the routes in force, run `sluice serve --takeover` again to finish",
                                        fields: [("peerPid", .int(peer))]))
                } else {
                    events.record(Event("takeover.abandoned", reason: "TakeoverAbandoned", level: .warning,
                                        message: "process \(peer) left the takeover of \(address) before asking for anything; nothing changed here",
                                        fields: [("peerPid", .int(peer))]))
                }
                return false
            }
            switch line {
            case "release":
                if !released.exchange(true, ordering: .acquiringAndReleasing) { hooks.release() }
                events.record(Event("takeover.released", reason: "TakeoverReleased",
                                    message: "released the admin API, metrics listener and state directory to process \(peer)",
                                    fields: [("peerPid", .int(peer))]))
                guard (try? TakeoverWire.send(fd, "released")) != nil else { continue }
            case "drain":
                handedOverFlag.store(true, ordering: .releasing)
                events.record(Event("takeover.completed", reason: "TakeoverCompleted",
                                    message: "process \(peer) serves \(address) now; draining", fields: [("peerPid", .int(peer))]))
                hooks.drain()
                // The answer says the drain has begun (the hook only starts it: the serve loop does the drain).
                _ = try? TakeoverWire.send(fd, "draining")
                return true
            default:
                let reason = line.hasPrefix("abort ") ? String(line.dropFirst(6)) : line
                events.record(Event("takeover.refused", reason: "TakeoverRefused", level: .warning,
                                    message: "process \(peer) refused to take over \(address): \(reason); nothing changed here",
                                    fields: [("peerPid", .int(peer))]))
                return false
            }
        }
    }
}
