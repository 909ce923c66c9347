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
        let fd = csluice_tcp_socket(address.family)
        guard fd >= 0 else { throw IOError("socket", errno) }
        guard csluice_set_reuse(fd, reusePort ? 1 : 0) == 0 else { let e = errno; Posix.close(fd); throw IOError("setsockopt", e) }
        var storage = address.storage
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, address.length) }
        }
        guard rc == 0 else { let e = errno; Posix.close(fd); throw IOError("bind", e) }
        guard Glibc.listen(fd, backlog) == 0 else { let e = errno; Posix.close(fd); throw IOError("listen", e) }
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
        while true {
            let fd = csluice_accept(listener, &storage, &length)
            if fd >= 0 {
                _ = csluice_set_nodelay(fd)
                return .accepted(fd, SocketAddress(storage: storage, length: length))
            }
            let e = errno
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
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
        let fd = csluice_tcp_socket(address.family)
        guard fd >= 0 else { return .failed(errno) }
        _ = csluice_set_nodelay(fd)
        var storage = address.storage
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if rc == 0 { return .connected(fd) }
        let e = errno
        if e == EINPROGRESS || e == EINTR { return .inProgress(fd) }
        Posix.close(fd)
        return .failed(e)
    }

    /// The pending error of a connecting socket (0 when the connect succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 { csluice_socket_error(fd) }

    /// Close with RST instead of FIN (used when a response must be aborted mid-body).
    public static func setLingerZero(_ fd: Int32) { _ = csluice_set_linger_zero(fd) }
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
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafeBytes(of: &storage) { raw in
            // sin_port and sin6_port sit at the same offset, in network byte order.
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}
