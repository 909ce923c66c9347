// Unit: descriptor passing (SCM_RIGHTS) and abstract-namespace unix sockets, the takeover's transport.
import SluiceIO
import XCTest

final class FDPassingTests: XCTestCase {
    /// A pipe's write end sent over a socket pair arrives as a new descriptor of the same pipe, with the payload.
    func testADescriptorSentArrivesAsTheSameOpenFile() throws {
        let pair = SocketPair()
        var pipeFDs: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        defer { pipeFDs.forEach { close($0) } }

        try FDPassing.send(pair.a, payload: Array("listeners 1\n".utf8), fds: [pipeFDs[1]])
        let (payload, fds) = try FDPassing.receive(pair.b, maxBytes: 64, maxFDs: 4)
        XCTAssertEqual(String(decoding: payload, as: UTF8.self), "listeners 1\n")
        XCTAssertEqual(fds.count, 1)
        XCTAssertNotEqual(fds[0], pipeFDs[1], "a new descriptor")
        defer { fds.forEach { close($0) } }
        XCTAssertEqual(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "received close-on-exec")

        let word = Array("hello".utf8)
        XCTAssertEqual(word.withUnsafeBytes { write(fds[0], $0.baseAddress, $0.count) }, 5)
        var read = [UInt8](repeating: 0, count: 5)
        XCTAssertEqual(read.withUnsafeMutableBytes { Glibc.read(pipeFDs[0], $0.baseAddress, 5) }, 5)
        XCTAssertEqual(read, word, "written through the received descriptor, read from the original pipe")
    }

    /// More descriptors than the receiver makes room for: refused (EMSGSIZE), not silently cut to a few.
    func testMoreDescriptorsThanExpectedIsAnError() throws {
        let pair = SocketPair()
        try FDPassing.send(pair.a, payload: [1], fds: [0, 1, 2])
        XCTAssertThrowsError(try FDPassing.receive(pair.b, maxBytes: 8, maxFDs: 1)) { error in
            XCTAssertEqual((error as? IOError)?.errno, EMSGSIZE)
        }
    }

    /// An abstract name is exclusive while bound, tells its holder's pid, and is free again once closed.
    func testAnAbstractNameIsAnExclusiveClaimThatVanishesWithItsSocket() throws {
        let name = "sluice-test:\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
        let first = try UnixSocket.listen(abstract: name)
        XCTAssertThrowsError(try UnixSocket.listen(abstract: name)) { error in
            XCTAssertEqual((error as? IOError)?.errno, EADDRINUSE)
        }
        let probe = try UnixSocket.connect(abstract: name)
        XCTAssertEqual(UnixSocket.peerPID(probe), getpid())
        close(probe)
        close(first)
        XCTAssertThrowsError(try UnixSocket.connect(abstract: name), "nothing listens once the socket is closed")
        let again = try UnixSocket.listen(abstract: name)
        close(again)
    }

    /// What a takeover checks of each descriptor: a TCP listener and its address; anything else is nil.
    func testListeningAddressTellsATCPListenerFromOtherSockets() throws {
        let fd = try TCPSocket.listen(SocketAddress(ip: "127.0.0.1", port: 0)!, reusePort: true)
        defer { close(fd) }
        let address = try XCTUnwrap(TCPSocket.listeningAddress(fd))
        XCTAssertEqual(address.ipLiteral, "127.0.0.1")
        XCTAssertEqual(address.port, TCPSocket.localPort(fd))
        XCTAssertTrue(address.sameEndpoint(as: SocketAddress(ip: "127.0.0.1", port: address.port)!))
        XCTAssertFalse(address.sameEndpoint(as: SocketAddress(ip: "127.0.0.2", port: address.port)!))
        let pair = SocketPair()
        XCTAssertNil(TCPSocket.listeningAddress(pair.a), "a unix socket")
        let unbound = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(unbound) }
        XCTAssertNil(TCPSocket.listeningAddress(unbound), "a TCP socket that does not listen")
    }
}
