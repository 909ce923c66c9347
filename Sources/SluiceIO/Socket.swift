// IO layer: TCP listeners and outgoing connections on IPv4/IPv6 literals, non-blocking, close-on-exec.
import CSluice
#if canImport(Glibc)
import Glibc
#endif

/// A resolved socket address (IPv4 or IPv6 literal only: the data plane never resolves names).
public struct SocketAddress: Sendable {
    var storage: sockaddr_storage
    var length: socklen_t

    public init?(ip: String, port: UInt16) {
        var storage = sockaddr_storage()
        let host = ip.hasPrefix("[") && ip.hasSuffix("]") ? String(ip.dropFirst().dropLast()) : ip
        var length: socklen_t = 0
        let ok: Bool = withUnsafeMutableBytes(of: &storage) { raw in
            if host.contains(":") {
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = port.bigEndian
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                return inet_pton(AF_INET6, host, &sin6.pointee.sin6_addr) == 1
            } else {
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = port.bigEndian
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
                return inet_pton(AF_INET, host, &sin.pointee.sin_addr) == 1
            }
        }
        guard ok else { return nil }
        self.storage = storage
        self.length = length
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    public var family: Int32 { Int32(storage.ss_family) }

    /// Writes the IP literal (no port, no brackets) as ASCII into `out`; returns the byte count.
    public func writeIP(into out: UnsafeMutableRawBufferPointer) -> Int {
        var copy = storage
        return withUnsafePointer(to: &copy) { p in
            p.withMemoryRebound(to: UInt8.self, capacity: MemoryLayout<sockaddr_storage>.size) { bytes in
                let dst = out.baseAddress!.assumingMemoryBound(to: CChar.self)
                let src: UnsafeRawPointer
                if family == AF_INET6 {
                    src = UnsafeRawPointer(bytes) + 8  // offsetof(sockaddr_in6, sin6_addr)
                } else {
                    src = UnsafeRawPointer(bytes) + 4  // offsetof(sockaddr_in, sin_addr)
                }
                guard inet_ntop(family, src, dst, socklen_t(out.count)) != nil else { return 0 }
                return strlen(dst)
            }
        }
    }
}

public enum TCPSocket {
    /// A non-blocking listener with SO_REUSEADDR and, when `reusePort`, SO_REUSEPORT (one per worker).
    public static func listen(_ address: SocketAddress, reusePort: Bool, backlog: Int32 = 4096) throws(IOError) -> Int32 {
        let fd = try Posix.tcpSocket(family: address.family)
        do {
            try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
            if reusePort { try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1) }
            try Posix.bind(fd, address)
            try Posix.listen(fd, backlog: backlog)
        } catch {
            Posix.close(fd)
            throw error
        }
        return fd
    }

    public enum AcceptResult {
        case accepted(Int32, SocketAddress)
        case wouldBlock
        case failed(Int32)
    }

    /// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; TCP_NODELAY is set on the new socket.
    @inline(__always)
    public static func accept(_ listener: Int32) -> AcceptResult {
        var storage = sockaddr_storage()
        var length = socklen_t(0)
        switch Posix.accept(listener, &storage, &length) {
        case .done(let fd):
            // Best effort: a socket without TCP_NODELAY still works, only its small writes may wait for an ACK.
            try? Posix.setNoDelay(fd)
            return .accepted(fd, SocketAddress(storage: storage, length: length))
        case .wouldBlock:
            return .wouldBlock
        case .failed(let e):
            return .failed(e)
        }
    }

    public enum ConnectResult {
        case connected(Int32)
        case inProgress(Int32)
        case failed(Int32)
    }

    /// Starts a non-blocking connect with TCP_NODELAY.
    public static func connect(_ address: SocketAddress) -> ConnectResult {
        let fd: Int32
        do { fd = try Posix.tcpSocket(family: address.family) } catch { return .failed(error.errno) }
        try? Posix.setNoDelay(fd)  // best effort, as for accepted sockets
        switch Posix.connect(fd, address) {
        case .connected: return .connected(fd)
        case .inProgress: return .inProgress(fd)
        case .failed(let e):
            Posix.close(fd)
            return .failed(e)
        }
    }

    /// The pending error of a connecting socket (0 when the connect succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 { Posix.pendingError(fd) }

    /// Close with RST instead of FIN (used when a response must be aborted mid-body).
    public static func setLingerZero(_ fd: Int32) { try? Posix.setLingerZero(fd) }
}

/// Starts a detached POSIX thread running `body` (the data plane does not use Foundation's Thread).
public func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {  // handed to exactly one thread, read once there
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        let box = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        box.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    _ = name  // pthread_setname_np is not exported by Glibc here; threads stay unnamed.
    pthread_detach(thread)
}

extension TCPSocket {
    /// The local port a socket is bound to.
    public static func localPort(_ fd: Int32) -> UInt16 {
        // On failure (not a socket) the zeroed storage reads as port 0.
        var storage = (try? Posix.localAddress(fd))?.storage ?? sockaddr_storage()
        return withUnsafeBytes(of: &storage) { raw in
            // sin_port and sin6_port sit at the same offset, in network byte order.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}
