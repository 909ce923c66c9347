// Test support for the IO tests: a connected pair of non-blocking local stream sockets, closed on deinit.
import XCTest
import SluiceIO

/// Two connected AF_UNIX stream sockets, both non-blocking and close-on-exec; what `a` writes `b` reads.
final class SocketPair {
    let a: Int32
    let b: Int32

    init(file: StaticString = #filePath, line: UInt = #line) {
        var fds: [Int32] = [-1, -1]
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let rc = socketpair(AF_UNIX, flags, 0, &fds)
        XCTAssertEqual(rc, 0, "socketpair: errno \(errno)", file: file, line: line)
        a = fds[0]
        b = fds[1]
    }

    deinit {
        if a >= 0 { close(a) }
        if b >= 0 { close(b) }
    }

    /// Writes `text` on `a` in one call (small, so it always fits the socket buffer).
    func send(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(a, $0.baseAddress, $0.count) }
        XCTAssertEqual(n, bytes.count, "write: errno \(errno)", file: file, line: line)
    }
}

extension ByteBuffer {
    /// The unread bytes as text.
    var text: String { String(decoding: readable, as: UTF8.self) }
}
