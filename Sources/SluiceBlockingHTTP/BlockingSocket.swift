// Every socket syscall the blocking server makes, in one place: blocking TCP listen, accept, read, write and close.
// Blocking on purpose: admin calls and demo predictors should be obviously correct, not fast.

import Glibc

/// A failed syscall with its errno.
public struct BlockingSocketError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32

    public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
}

public enum BlockingSocket {
    /// A listening socket bound to `host:port` (IPv4 literal, or "localhost"), with SO_REUSEADDR and backlog 1024.
    static func listen(host: String, port: UInt16) throws(BlockingSocketError) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let literal = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, literal, &address.sin_addr) == 1 else {
            throw BlockingSocketError(operation: "inet_pton(\(host))", errno: EINVAL)
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BlockingSocketError(operation: "socket", errno: errno) }
        do throws(BlockingSocketError) {
            // Tests stop and restart predictors on fixed ports; without this a port in TIME_WAIT refuses to bind.
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw BlockingSocketError(operation: "bind(\(host):\(port))", errno: errno) }
            guard Glibc.listen(fd, 1024) == 0 else { throw BlockingSocketError(operation: "listen", errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// The port a socket is bound to (the ephemeral one when bound to port 0).
    static func boundPort(_ fd: Int32) throws(BlockingSocketError) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let status = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else { throw BlockingSocketError(operation: "getsockname", errno: errno) }
        return UInt16(bigEndian: address.sin_port)
    }

    /// The next connection, or nil once the listener has been shut down.
    static func accept(_ listener: Int32) -> Int32? {
        while true {
            // Glibc's module does not export accept4, so close-on-exec is set afterwards; we never fork meanwhile.
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                // Small JSON responses must not wait for Nagle behind the previous segment's ACK.
                try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
                return fd
            }
            switch errno {
            // A peer that gave up before we accepted, or resource pressure: keep serving the others.
            case EINTR, ECONNABORTED, EPROTO: continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                usleep(10_000)
                continue
            // EINVAL after shutdown(2), EBADF after close: the server is stopping.
            default: return nil
            }
        }
    }

    /// Up to `count` bytes; 0 means the peer closed (or we were shut down), nil a hard error.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            return nil
        }
    }

    /// All of `bytes`, or false when the peer is gone. MSG_NOSIGNAL because SIGPIPE would kill the process.
    /// All of `bytes` on a blocking socket (no SIGPIPE; EINTR retried); false with errno set when the peer is gone.
    public static func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let count = send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if count > 0 {
                    offset += count
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }

    /// Wakes any thread blocked on `fd` (accept or recv) without releasing the descriptor number.
    static func shutdown(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Tells the peer we are done, then drains what it still sends for a moment, so that unread request bytes do
    /// not turn our close into a RST that destroys the response in flight (RFC 9112 §9.6). The caller closes.
    static func finish(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        var drained = 0
        while drained < 1 << 20 {
            let count = scratch.withUnsafeMutableBytes { read(fd, into: $0) } ?? 0
            if count <= 0 { break }
            drained += count
        }
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(BlockingSocketError) {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw BlockingSocketError(operation: "setsockopt(\(name))", errno: errno)
        }
    }
}
