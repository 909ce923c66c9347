// IO layer: every syscall the data plane makes goes through here, with one EINTR/EAGAIN/errno policy.
import CSluice
#if canImport(Glibc)
import Glibc
#endif

/// A failed syscall: which call and its errno.
public struct IOError: Error, CustomStringConvertible, Sendable {
    public let call: StaticString
    public let errno: Int32
    public init(_ call: StaticString, _ errno: Int32) { self.call = call; self.errno = errno }
    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// The outcome of a non-blocking read or write.
public enum IOResult: Equatable, Sendable {
    /// This many bytes moved; for a read, 0 is never returned here (see `.endOfFile`).
    case bytes(Int)
    /// The socket has nothing to give or no room to take (EAGAIN).
    case wouldBlock
    /// The peer closed its sending side.
    case endOfFile
    /// The connection failed (reset, broken pipe…); the errno says why.
    case failed(Int32)
}

public enum Posix {
    /// read(2), retrying EINTR.
    @inline(__always)
    public static func read(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int) -> IOResult {
        while true {
            let n = Glibc.read(fd, pointer, count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .endOfFile }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    /// writev(2), retrying EINTR. MSG_NOSIGNAL is not available for writev, so SIGPIPE is ignored process-wide.
    @inline(__always)
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) -> IOResult {
        while true {
            let n = Glibc.writev(fd, iov, count)
            if n >= 0 { return .bytes(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    @inline(__always)
    public static func write(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> IOResult {
        while true {
            let n = Glibc.send(fd, pointer, count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .bytes(n) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    public static func close(_ fd: Int32) {
        // Linux releases the descriptor even when close reports EINTR: never retry (it could close a reused fd).
        _ = Glibc.close(fd)
    }

    /// Ignore SIGPIPE: a peer that goes away must surface as EPIPE on the write, not kill the process.
    public static func ignoreSIGPIPE() {
        _ = signal(SIGPIPE, SIG_IGN)
    }

    public static func nowMilliseconds() -> Int64 { csluice_now_ms() }

    public static func residentBytes() -> Int { Int(csluice_rss_bytes()) }
}
