// Tests of Posix: the one EINTR/EAGAIN helper, shutdown, the stderr writes, and the socket calls made through it.
import XCTest
@testable import SluiceIO

final class PosixTests: XCTestCase {
    // MARK: The EINTR/EAGAIN helper (driven by a fake syscall: a real signal cannot be timed into a syscall)

    func testASyscallInterruptedBySignalsIsRetried() {
        var calls = 0
        let outcome: Posix.Outcome<Int> = Posix.syscall {
            calls += 1
            if calls < 3 { errno = EINTR; return -1 }
            return 7
        }
        XCTAssertEqual(outcome, .done(7))
        XCTAssertEqual(calls, 3)
    }

    func testEAGAINIsWouldBlockAndOtherErrorsCarryTheirErrno() {
        var calls = 0
        let blocked: Posix.Outcome<Int> = Posix.syscall { calls += 1; errno = EAGAIN; return -1 }
        XCTAssertEqual(blocked, .wouldBlock)
        XCTAssertEqual(calls, 1, "EAGAIN was retried")
        let reset: Posix.Outcome<Int32> = Posix.syscall { errno = ECONNRESET; return -1 }
        XCTAssertEqual(reset, .failed(ECONNRESET))
        XCTAssertEqual(Posix.syscall { Int32(0) }, .done(0))
    }

    func testCheckThrowsTheCallAndErrno() {
        XCTAssertThrowsError(try Posix.check("bind") { () -> Int32 in errno = EADDRINUSE; return -1 }) { error in
            XCTAssertEqual("\((error as? IOError)?.call ?? "none")", "bind")
            XCTAssertEqual((error as? IOError)?.errno, EADDRINUSE)
        }
        XCTAssertThrowsError(try Posix.check("listen") { () -> Int32 in errno = EAGAIN; return -1 }) { error in
            XCTAssertEqual((error as? IOError)?.errno, EAGAIN, "a setup call's EAGAIN is an error")
        }
        var interrupted = true
        XCTAssertEqual(try Posix.check("setsockopt") { () -> Int32 in
            if interrupted { interrupted = false; errno = EINTR; return -1 }
            return 0
        }, 0)
    }

    func testReadsMapZeroBytesToEndOfFileAndWritesDoNot() {
        XCTAssertEqual(Posix.readResult(.done(0)), .endOfFile)
        XCTAssertEqual(Posix.readResult(.done(5)), .bytes(5))
        XCTAssertEqual(Posix.writeResult(.done(0)), .bytes(0))
        XCTAssertEqual(Posix.readResult(.failed(ECONNRESET)), .failed(ECONNRESET))
        XCTAssertEqual(Posix.writeResult(.wouldBlock), .wouldBlock)
    }

    // MARK: shutdown

    /// Shutting down the write side sends end of file and leaves reading open (the first step of a lingering close).
    func testShutdownWriteEndsThePeersReadsButNotOurs() throws {
        let pair = SocketPair()
        try Posix.shutdown(pair.a, .write)
        let atPeer = ByteBuffer(capacity: 16)
        XCTAssertEqual(atPeer.read(from: pair.b, limit: 16), .endOfFile)
        let late = Array("late body".utf8)
        XCTAssertEqual(late.withUnsafeBytes { Posix.write(pair.b, $0.baseAddress!, $0.count) }, .bytes(9))
        let atUs = ByteBuffer(capacity: 16)
        XCTAssertEqual(atUs.read(from: pair.a, limit: 16), .bytes(9))
        XCTAssertEqual(atUs.text, "late body")
        XCTAssertEqual(late.withUnsafeBytes { Posix.write(pair.a, $0.baseAddress!, $0.count) }, .failed(EPIPE))
    }

    func testShutdownReadAndBoth() throws {
        let pair = SocketPair()
        try Posix.shutdown(pair.b, .read)
        XCTAssertEqual(ByteBuffer(capacity: 4).read(from: pair.b, limit: 4), .endOfFile)
        try Posix.shutdown(pair.a, .both)
        XCTAssertEqual(ByteBuffer(capacity: 4).read(from: pair.b, limit: 4), .endOfFile)
    }

    func testShutdownOfANonSocketThrows() {
        XCTAssertThrowsError(try Posix.shutdown(-1, .write)) { error in
            XCTAssertEqual("\((error as? IOError)?.call ?? "none")", "shutdown")
            XCTAssertEqual((error as? IOError)?.errno, EBADF)
        }
    }

    // MARK: stderr

    /// The whole line arrives on fd 2 (captured through a pipe for the duration of the call).
    func testWriteStderrWritesTheWholeLine() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let saved = dup(2)
        XCTAssertGreaterThanOrEqual(saved, 0)
        XCTAssertEqual(dup2(fds[1], 2), 2)
        close(fds[1])
        let line = "sluice: accept: out of file descriptors (errno 24); pausing accepts — ünïcode\n"
        Posix.writeStderr(line)
        XCTAssertEqual(dup2(saved, 2), 2)  // restores stderr and drops the pipe's last write end
        close(saved)

        let captured = ByteBuffer(capacity: 256)
        while case .bytes = captured.read(from: fds[0], limit: 256) {}
        XCTAssertEqual(captured.text, line)
    }

    // MARK: Sockets through Posix

    /// listen, connect, accept and the options set on both ends, on loopback.
    func testListenConnectAndAcceptOnLoopback() throws {
        let address = try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: 0))
        let listener = try TCPSocket.listen(address, reusePort: true)
        defer { Posix.close(listener) }
        XCTAssertEqual(option(listener, SOL_SOCKET, SO_REUSEADDR), 1)
        XCTAssertEqual(option(listener, SOL_SOCKET, SO_REUSEPORT), 1)
        let port = TCPSocket.localPort(listener)
        XCTAssertNotEqual(port, 0)
        XCTAssertEqual(TCPSocket.accept(listener).isWouldBlock, true, "accept without a client")

        let client: Int32
        switch TCPSocket.connect(try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: port))) {
        case .connected(let fd), .inProgress(let fd): client = fd
        case .failed(let e): return XCTFail("connect failed: errno \(e)")
        }
        defer { Posix.close(client) }
        XCTAssertEqual(option(client, Int32(IPPROTO_TCP), TCP_NODELAY), 1)
        XCTAssertTrue(wait(for: Int16(POLLIN), on: listener), "the connection never reached the listener")

        guard case .accepted(let server, let peer) = TCPSocket.accept(listener) else { return XCTFail("accept failed") }
        defer { Posix.close(server) }
        XCTAssertEqual(option(server, Int32(IPPROTO_TCP), TCP_NODELAY), 1)
        XCTAssertNotEqual(fcntl(server, F_GETFL) & O_NONBLOCK, 0, "accepted socket is blocking")
        XCTAssertNotEqual(fcntl(server, F_GETFD) & FD_CLOEXEC, 0, "accepted socket is inherited by children")
        var ip = [UInt8](repeating: 0, count: 64)
        let n = ip.withUnsafeMutableBytes { peer.writeIP(into: $0) }
        XCTAssertEqual(String(decoding: ip[..<n], as: UTF8.self), "127.0.0.1")
        XCTAssertTrue(wait(for: Int16(POLLOUT), on: client))
        XCTAssertEqual(TCPSocket.pendingError(client), 0)

        TCPSocket.setLingerZero(server)
        var linger = linger()
        var length = socklen_t(MemoryLayout<linger>.size)
        XCTAssertEqual(getsockopt(server, SOL_SOCKET, SO_LINGER, &linger, &length), 0)
        XCTAssertEqual(linger.l_onoff, 1)
        XCTAssertEqual(linger.l_linger, 0)
    }

    /// A connect refused by the peer shows as the socket's pending error.
    func testARefusedConnectIsThePendingError() throws {
        // A port that was just bound and closed again: nothing listens there.
        let probe = try TCPSocket.listen(try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: 0)), reusePort: false)
        let port = TCPSocket.localPort(probe)
        Posix.close(probe)
        switch TCPSocket.connect(try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: port))) {
        case .failed(let e):
            XCTAssertEqual(e, ECONNREFUSED)
        case .connected(let fd):
            Posix.close(fd)
            XCTFail("connected to a closed port")
        case .inProgress(let fd):
            defer { Posix.close(fd) }
            XCTAssertTrue(wait(for: Int16(POLLOUT), on: fd))
            XCTAssertEqual(TCPSocket.pendingError(fd), ECONNREFUSED)
        }
    }

    /// A listen that fails (the port is taken) throws bind's errno and closes the socket it made.
    func testAFailedListenThrowsAndClosesItsSocket() throws {
        let taken = try TCPSocket.listen(try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: 0)), reusePort: false)
        defer { Posix.close(taken) }
        let address = try XCTUnwrap(SocketAddress(ip: "127.0.0.1", port: TCPSocket.localPort(taken)))
        let lowestFree = open("/dev/null", O_RDONLY | O_CLOEXEC)
        close(lowestFree)

        XCTAssertThrowsError(try TCPSocket.listen(address, reusePort: false)) { error in
            XCTAssertEqual("\((error as? IOError)?.call ?? "none")", "bind")
            XCTAssertEqual((error as? IOError)?.errno, EADDRINUSE)
        }
        let after = open("/dev/null", O_RDONLY | O_CLOEXEC)
        close(after)
        XCTAssertEqual(after, lowestFree, "the failed listen kept its socket open")
    }

    private func option(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        XCTAssertEqual(getsockopt(fd, level, name, &value, &length), 0)
        return value
    }

    /// Waits up to 2 s for `events` on `fd`.
    private func wait(for events: Int16, on fd: Int32) -> Bool {
        var poller = pollfd(fd: fd, events: events, revents: 0)
        return poll(&poller, 1, 2000) == 1 && poller.revents & events != 0
    }
}

extension TCPSocket.AcceptResult {
    var isWouldBlock: Bool { if case .wouldBlock = self { return true } else { return false } }
}
