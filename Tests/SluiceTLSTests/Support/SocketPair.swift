// Test support: two connected non-blocking stream sockets (AF_UNIX), the server's end and the client's, so that
// both TLS sides run on one thread, stepped in turn, with no listener and no port.
#if canImport(Glibc)
import Glibc
#endif

final class SocketPair {
    let server: Int32
    let client: Int32
    private var isServerOpen = true
    private var isClientOpen = true

    init() {
        var fds: [Int32] = [-1, -1]
        let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
        precondition(rc == 0, "socketpair failed: errno \(errno)")
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        server = fds[0]
        client = fds[1]
    }

    deinit {
        closeServer()
        closeClient()
    }

    func closeServer() {
        if isServerOpen { Glibc.close(server); isServerOpen = false }
    }

    func closeClient() {
        if isClientOpen { Glibc.close(client); isClientOpen = false }
    }

    /// Bytes waiting in the kernel to be read on `fd` (FIONREAD).
    static func unread(_ fd: Int32) -> Int {
        var n: Int32 = 0
        _ = ioctl(fd, UInt(FIONREAD), &n)
        return Int(n)
    }
}
