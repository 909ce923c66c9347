// Control layer: the new process's side of a takeover — receives the running process's listening sockets, checks
// them against its own configuration before anything changes there, then asks for the release and the drain.
import SluiceIO
import SluiceProxy
#if canImport(Glibc)
import Glibc
#endif

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
