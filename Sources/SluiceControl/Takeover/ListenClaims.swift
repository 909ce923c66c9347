// Control layer: one sluice per listen address — each address the process serves (client listener, admin,
// metrics) is claimed by binding the abstract unix socket `@sluice:<address>`; a second start finds the name taken
// and refuses, naming the running process's pid.
import SluiceIO
import SluiceProxy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The claims this process holds, by address. Why abstract unix sockets rather than a lock file or a first bind
/// without SO_REUSEPORT: the workers must bind with SO_REUSEPORT among themselves, which lets any other process of
/// the same user bind the port too, so the port cannot be the lock; a lock file outlives a killed process (stale
/// file, guesswork about the pid in it) and needs a writable directory; an abstract name is atomic to take, vanishes
/// with its last descriptor (kill -9 included), tells the pid of its holder (SO_PEERCRED), and is the control socket
/// a `--takeover` connects to, whose descriptor travels to the new process with the listeners so the claim is never
/// free during a hand-over. Limit: names are per network namespace and compare addresses as written, so 0.0.0.0:8080
/// and 127.0.0.1:8080 are different names; `probeExclusive` covers that overlap for the client listener.
public final class ListenClaims: Sendable {
    /// Claim name → its listening socket.
    private let claimed = Mutex<[String: Int32]>([:])

    public init() {}

    /// The abstract name of `address` (without the leading NUL).
    public static func name(_ address: SocketAddressSpec) -> String { "sluice:\(address)" }

    /// Claims `address` for `role` ("listen", "admin", "metrics"), or throws naming the process that holds it.
    /// An address with port 0 is not claimed (the kernel hands out a port nobody serves); claim the bound one instead.
    public func claim(_ address: SocketAddressSpec, role: String) throws(TakeoverError) {
        guard address.port != 0 else { return }
        let name = Self.name(address)
        do {
            let fd = try UnixSocket.listen(abstract: name)
            claimed.withLock { $0[name] = fd }
        } catch where error.errno == EADDRINUSE {
            throw TakeoverError(Self.servedMessage(address, role: role, holder: Self.holder(of: address)))
        }
        catch {
            throw TakeoverError("\(role) \(address): cannot claim @\(name): \(error)")
        }
    }

    /// Keeps `fd`, the claim of `address` handed over by the process this one took over.
    public func adopt(_ fd: Int32, for address: SocketAddressSpec) {
        claimed.withLock { $0[Self.name(address)] = fd }
    }

    /// The claim's listening socket for `address` (the takeover control socket of the client listener).
    public func descriptor(for address: SocketAddressSpec) -> Int32? {
        claimed.withLock { $0[Self.name(address)] }
    }

    /// Gives up the claim of `address` (its port was handed over or closed).
    public func release(_ address: SocketAddressSpec) {
        let fd = claimed.withLock { $0.removeValue(forKey: Self.name(address)) }
        if let fd { Posix.close(fd) }
    }

    /// The pid of the process holding `address`'s claim, nil when none does (or it cannot be told). The client
    /// listener's claim answers "who" itself: SO_PEERCRED names the process that bound a socket, which after a
    /// takeover is the old one; the other claims are bound anew by each process, so SO_PEERCRED is right for them.
    public static func holder(of address: SocketAddressSpec) -> Int32? {
        guard let fd = try? UnixSocket.connect(abstract: name(address)) else { return nil }
        defer { Posix.close(fd) }
        UnixSocket.setTimeout(fd, milliseconds: 500)
        if (try? TakeoverWire.send(fd, TakeoverWire.who)) != nil, let answer = TakeoverWire.readLine(fd),
           answer.hasPrefix("pid "), let pid = Int32(answer.dropFirst(4)) {
            return pid
        }
        return UnixSocket.peerPID(fd)
    }

    static func servedMessage(_ address: SocketAddressSpec, role: String, holder: Int32?) -> String {
        let who = holder.map { "sluice process \($0)" } ?? "another sluice process"
        return "\(role) address \(address) is already served by \(who); stop it first, or start with --takeover to take its listeners over without losing a request"
    }

    /// Checks that no other process listens on an address overlapping `address` (a wildcard and a specific IP of the
    /// same port): a bind without SO_REUSEPORT fails while any listener holds the port, whatever its options.
    public static func probeExclusive(_ address: SocketAddressSpec, role: String) throws(TakeoverError) {
        guard address.port != 0, let socketAddress = SocketAddress(ip: address.host, port: address.port) else { return }
        do {
            let fd = try TCPSocket.listen(socketAddress, reusePort: false, backlog: 1)
            Posix.close(fd)
        } catch where error.errno == EADDRINUSE {
            throw TakeoverError("\(role) address \(address) is already in use by another process (\(error))")
        } catch {
            return  // anything else (an address not on this host…) is for the real bind to report
        }
    }
}
