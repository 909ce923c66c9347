// Control layer: the takeover protocol on the client listener's claim socket — the running process hands its
// listening sockets (and the claim itself) to a `sluice serve --takeover`, releases its admin ports and state
// directory when asked, then drains; the new process's side checks what it was handed before serving on it.
import SluiceIO
import SluiceProxy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Version 1, one line per message, one message at a time, the new process speaking first:
///
///     new → "sluice-takeover 1"   old → "listeners <pid> <address> <count>"  + SCM_RIGHTS [claim, listener × count]
///     new → "release"             old → "released"   (admin and metrics ports, their claims, the state directory)
///     new → "drain"               old → "draining"   (then it drains as on SIGTERM, and exits)
///     new → "abort <reason>"      (a check failed before "release": the old process carries on as before)
///
/// and, from a second plain start asking who serves the address: "who" → "pid <pid>".
///
/// The new process sends "drain" only once its workers accept on the inherited sockets: the kernel's accept queues
/// are shared by both processes, so no connection waits for a listener that is gone.
enum TakeoverWire {
    static let hello = "sluice-takeover 1"
    static let who = "who"
    /// Each answer has this long to come: the new process loads its state between "listeners" and "release".
    static let timeoutMs = 30_000

    static func send(_ fd: Int32, _ line: String) throws(TakeoverError) {
        do { try FDPassing.write(fd, Array((line + "\n").utf8)) } catch { throw TakeoverError("takeover: send \(line.split(separator: " ").first ?? ""): \(error)") }
    }

    /// One line without its newline; nil at the end of the stream, a timeout or an over-long line.
    static func readLine(_ fd: Int32) -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 4096 {
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }
}

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

/// The new process's side: receives the listeners, checks them, then asks for the release and the drain.
public final class TakeoverClient {
    /// The running process (the one being taken over).
    public let pid: Int32
    /// Its claim socket of the listen address (ours to keep once the takeover completes).
    public let claimFD: Int32
    /// Its workers' listening sockets.
    public let listeners: [Int32]
    private let fd: Int32
    private var ownsDescriptors = true

    /// Connects to the process serving `address` and receives its listening sockets.
    public static func connect(_ address: SocketAddressSpec) throws(TakeoverError) -> TakeoverClient {
        let fd: Int32
        do { fd = try UnixSocket.connect(abstract: ListenClaims.name(address)) } catch {
            throw TakeoverError("--takeover: no running sluice serves \(address) (nothing answers on @\(ListenClaims.name(address)): \(error))")
        }
        UnixSocket.setTimeout(fd, milliseconds: TakeoverWire.timeoutMs)
        do throws(TakeoverError) {
            try TakeoverWire.send(fd, TakeoverWire.hello)
            let (payload, fds) = try receive(fd)
            let words = String(decoding: payload, as: UTF8.self).split(separator: " ").map(String.init)
            guard words.count == 4, words[0] == "listeners", let pid = Int32(words[1]), let count = Int(words[3]),
                  count >= 1, fds.count == count + 1 else {
                fds.forEach(Posix.close)
                throw TakeoverError("--takeover: the process on @\(ListenClaims.name(address)) answered \"\(String(decoding: payload.prefix(80), as: UTF8.self))\" with \(fds.count) descriptors; expected its listeners")
            }
            return TakeoverClient(fd: fd, pid: pid, claimFD: fds[0], listeners: Array(fds.dropFirst()))
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    private static func receive(_ fd: Int32) throws(TakeoverError) -> ([UInt8], [Int32]) {
        let payload: [UInt8], fds: [Int32]
        do { (payload, fds) = try FDPassing.receive(fd, maxBytes: 512, maxFDs: FDPassing.maxDescriptors) } catch {
            throw TakeoverError("--takeover: receiving the listeners: \(error)")
        }
        guard payload.last == UInt8(ascii: "\n") else {
            fds.forEach(Posix.close)
            throw TakeoverError("--takeover: the running process closed the connection without handing its listeners over")
        }
        return (Array(payload.dropLast()), fds)
    }

    private init(fd: Int32, pid: Int32, claimFD: Int32, listeners: [Int32]) {
        self.fd = fd
        self.pid = pid
        self.claimFD = claimFD
        self.listeners = listeners
    }

    deinit {
        if ownsDescriptors { ([claimFD] + listeners).forEach(Posix.close) }
        Posix.close(fd)
    }

    /// Checks that every socket handed over is a TCP listener bound to `expected` (the new configuration's listen
    /// address). Otherwise the running process is told to carry on ("abort"), the descriptors are closed and this
    /// throws: nothing changed there.
    public func verify(listen expected: SocketAddressSpec) throws(TakeoverError) {
        guard let want = SocketAddress(ip: expected.host, port: expected.port) else {
            try refuse("listen: \(expected) is not an IP literal and port")
        }
        for fd in listeners {
            guard let bound = TCPSocket.listeningAddress(fd) else {
                try refuse("a descriptor handed over by sluice process \(pid) is not a listening TCP socket")
            }
            guard bound.sameEndpoint(as: want) else {
                let shown = SocketAddressSpec(host: bound.ipLiteral, port: bound.port)
                try refuse("sluice process \(pid) listens on \(shown), the new configuration on \(expected); start with a listen address that matches, or stop it first")
            }
        }
    }

    /// Tells the running process the takeover is off (it carries on as before) and throws `reason`.
    public func refuse(_ reason: String) throws(TakeoverError) -> Never {
        _ = try? TakeoverWire.send(fd, "abort " + reason)
        throw TakeoverError("--takeover refused, the running process is untouched: \(reason)")
    }

    /// Asks the running process to release its admin and metrics ports and its state directory; returns once it did.
    public func release() throws(TakeoverError) {
        try TakeoverWire.send(fd, "release")
        guard TakeoverWire.readLine(fd) == "released" else {
            throw TakeoverError("--takeover: sluice process \(pid) did not confirm the release of its admin API and state directory")
        }
    }

    /// Tells the running process to drain and exit: from here on, the listeners and their claim are this process's.
    public func drain() throws(TakeoverError) {
        ownsDescriptors = false
        try TakeoverWire.send(fd, "drain")
        guard TakeoverWire.readLine(fd) == "draining" else {
            throw TakeoverError("--takeover: sluice process \(pid) did not confirm that it drains")
        }
    }

    /// The listeners now belong to the gateway (which closes them when it drains), not to this client.
    public func handOverDescriptors() { ownsDescriptors = false }
}
