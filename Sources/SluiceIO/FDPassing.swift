// IO layer: local control sockets for a takeover — abstract-namespace unix sockets (bind, connect, the peer's pid)
// and descriptor passing over them (sendmsg/recvmsg with SCM_RIGHTS); blocking, used off the request path only.
#if canImport(Glibc)
import Glibc
#endif

/// Blocking AF_UNIX stream sockets in Linux's abstract namespace: a name there belongs to the socket bound to it
/// and vanishes when that socket's last descriptor closes (the process died), so it can serve as an exclusive claim
/// with no stale file to clean up.
public enum UnixSocket {
    /// The longest abstract name (sun_path less its leading NUL).
    public static let maxNameBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Binds and listens on the abstract name `name` (given without the leading NUL, shown as `@name` by ss(8)).
    /// Throws `bind` with EADDRINUSE when another socket holds the name.
    public static func listen(abstract name: String, backlog: Int32 = 16) throws(IOError) -> Int32 {
        let fd = try Posix.check("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            let outcome = try withAbstractAddress(name) { address, length in Posix.syscall { Glibc.bind(fd, address, length) } }
            try Posix.value("bind", outcome)
            try Posix.check("listen") { Glibc.listen(fd, backlog) }
        } catch {
            Posix.close(fd)
            throw error
        }
        return fd
    }

    /// Connects to the abstract name `name`; ECONNREFUSED when nothing listens there.
    public static func connect(abstract name: String) throws(IOError) -> Int32 {
        let fd = try Posix.check("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            let outcome = try withAbstractAddress(name) { address, length in Posix.syscall { Glibc.connect(fd, address, length) } }
            try Posix.value("connect", outcome)
        } catch {
            Posix.close(fd)
            throw error
        }
        return fd
    }

    /// The pid of the process that created the socket at the other end (SO_PEERCRED), nil if the kernel cannot say.
    public static func peerPID(_ fd: Int32) -> Int32? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc hides it behind _GNU_SOURCE).
        var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.pid > 0 else { return nil }
        return credentials.pid
    }

    /// Accepts one connection, waiting at most `timeoutMs` (nil when none came or the socket failed).
    public static func accept(_ listener: Int32, timeoutMs: Int32) -> Int32? {
        var waiting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&waiting, 1, timeoutMs) == 1 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard case .done(let fd) = Posix.accept(listener, &storage, &length) else { return nil }
        // accept4 made it non-blocking (the data plane's way); this conversation blocks, bounded by setTimeout.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// Bounds every later blocking read and write on `fd` (SO_RCVTIMEO/SO_SNDTIMEO): a stalled peer fails with EAGAIN.
    public static func setTimeout(_ fd: Int32, milliseconds: Int) {
        var value = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            _ = setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private static func withAbstractAddress<R>(_ name: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(IOError) -> R) throws(IOError) -> R {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maxNameBytes else { throw IOError("abstract socket name", ENAMETOOLONG) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0  // the abstract namespace: a leading NUL, then the name (not NUL-terminated)
            for (i, byte) in bytes.enumerated() { path[i + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        return try withUnsafePointer(to: &address) { p throws(IOError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s throws(IOError) in try body(s, length) }
        }
    }
}

/// Descriptor passing (SCM_RIGHTS): the receiver gets new descriptors for the same open sockets, so a listening
/// socket sent this way keeps one accept queue shared by both processes.
public enum FDPassing {
    /// The most descriptors one message carries (a worker's listener each, plus a few).
    public static let maxDescriptors = 1024

    // The CMSG_* macros are not importable: their arithmetic, for Linux's cmsghdr (aligned to size_t).
    private static func align(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }
    private static var headerSpace: Int { align(MemoryLayout<cmsghdr>.size) }
    private static func space(descriptors: Int) -> Int { headerSpace + align(descriptors * MemoryLayout<Int32>.size) }

    /// Sends `payload` (at least one byte: a message without data does not carry descriptors reliably) with `fds`
    /// attached; the sender's own descriptors stay open.
    public static func send(_ socket: Int32, payload: [UInt8], fds: [Int32]) throws(IOError) {
        precondition(!payload.isEmpty && fds.count <= maxDescriptors)
        var control = [UInt8](repeating: 0, count: max(1, space(descriptors: fds.count)))
        var data = payload
        let sent = data.withUnsafeMutableBytes { dataBytes in
            control.withUnsafeMutableBytes { controlBytes in
                if !fds.isEmpty {
                    let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                    header.pointee.cmsg_len = headerSpace + fds.count * MemoryLayout<Int32>.size
                    header.pointee.cmsg_level = SOL_SOCKET
                    header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                    for (i, fd) in fds.enumerated() {
                        controlBytes.storeBytes(of: fd, toByteOffset: headerSpace + i * MemoryLayout<Int32>.size, as: Int32.self)
                    }
                }
                var vector = iovec(iov_base: dataBytes.baseAddress, iov_len: dataBytes.count)
                return withUnsafeMutablePointer(to: &vector) { v in
                    var message = msghdr()
                    message.msg_iov = v
                    message.msg_iovlen = 1
                    if !fds.isEmpty {
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = space(descriptors: fds.count)
                    }
                    return Posix.syscall { sendmsg(socket, &message, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        let count = try Posix.value("sendmsg", sent)
        guard count == payload.count else { throw IOError("sendmsg", EMSGSIZE) }
    }

    /// Receives one message of at most `maxBytes` and the descriptors attached to it (close-on-exec). An empty
    /// payload means the peer closed. Throws EMSGSIZE when descriptors were cut off (more than `maxFDs`): those
    /// that did arrive are closed first.
    public static func receive(_ socket: Int32, maxBytes: Int, maxFDs: Int) throws(IOError) -> (payload: [UInt8], fds: [Int32]) {
        var data = [UInt8](repeating: 0, count: maxBytes)
        var control = [UInt8](repeating: 0, count: space(descriptors: min(maxFDs, maxDescriptors)))
        var flags: Int32 = 0
        var fds: [Int32] = []
        let received = data.withUnsafeMutableBytes { dataBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: dataBytes.baseAddress, iov_len: dataBytes.count)
                return withUnsafeMutablePointer(to: &vector) { v in
                    var message = msghdr()
                    message.msg_iov = v
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    let outcome = Posix.syscall { recvmsg(socket, &message, Int32(MSG_CMSG_CLOEXEC)) }
                    flags = message.msg_flags
                    // One SCM_RIGHTS header at most (we send one); anything else is ignored.
                    if message.msg_controllen >= headerSpace {
                        let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                        if header.pointee.cmsg_level == SOL_SOCKET && header.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                            let count = (Int(header.pointee.cmsg_len) - headerSpace) / MemoryLayout<Int32>.size
                            for i in 0..<max(0, count) {
                                fds.append(controlBytes.load(fromByteOffset: headerSpace + i * MemoryLayout<Int32>.size, as: Int32.self))
                            }
                        }
                    }
                    return outcome
                }
            }
        }
        let count: Int
        do { count = try Posix.value("recvmsg", received) } catch {
            fds.forEach(Posix.close)
            throw error
        }
        if flags & Int32(MSG_CTRUNC) != 0 {
            fds.forEach(Posix.close)
            throw IOError("recvmsg", EMSGSIZE)
        }
        return (Array(data[..<count]), fds)
    }

    /// Writes all of `bytes` to a blocking socket.
    public static func write(_ socket: Int32, _ bytes: [UInt8]) throws(IOError) {
        var offset = 0
        while offset < bytes.count {
            let outcome = bytes.withUnsafeBytes { raw in
                Posix.syscall { Glibc.send(socket, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL)) }
            }
            offset += try Posix.value("send", outcome)
        }
    }
}

extension TCPSocket {
    /// The address of `fd` when it is a listening TCP socket (SO_ACCEPTCONN), else nil: what a takeover checks of
    /// each descriptor it was handed before serving on it.
    public static func listeningAddress(_ fd: Int32) -> SocketAddress? {
        var accepting: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting == 1,
              let address = try? Posix.localAddress(fd),
              address.family == AF_INET || address.family == AF_INET6 else { return nil }
        return address
    }
}

extension SocketAddress {
    /// The port, in host byte order.
    public var port: UInt16 {
        var copy = storage
        // sin_port and sin6_port sit at the same offset, in network byte order.
        return withUnsafeBytes(of: &copy) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
    }

    /// The IP literal without brackets ("127.0.0.1", "::1").
    public var ipLiteral: String {
        var text = [UInt8](repeating: 0, count: 64)
        let count = text.withUnsafeMutableBytes { writeIP(into: $0) }
        return String(decoding: text[..<count], as: UTF8.self)
    }

    /// Same family, IP and port (IPv6 scope and flow label aside).
    public func sameEndpoint(as other: SocketAddress) -> Bool {
        family == other.family && port == other.port && ipLiteral == other.ipLiteral
    }
}
