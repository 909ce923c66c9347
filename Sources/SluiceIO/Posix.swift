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
    /// What one syscall came to once EINTR was retried.
    enum Outcome<Value: Equatable>: Equatable {
        /// It succeeded with this (non-negative) result.
        case done(Value)
        /// EAGAIN / EWOULDBLOCK: a non-blocking descriptor has nothing to give or no room to take.
        case wouldBlock
        /// It failed with this errno.
        case failed(Int32)
    }

    /// The one EINTR/EAGAIN policy (SwiftNIO's `syscall(blocking:)`): `body` is a syscall returning -1 with errno set
    /// on failure; it is called again while it fails with EINTR (a signal handler ran), and a failure is sorted into
    /// `.wouldBlock` (EAGAIN) or `.failed(errno)`. `close` and `connect` do not come here: retrying either after EINTR
    /// is wrong (see them).
    @inline(__always)
    static func syscall<T: FixedWidthInteger & SignedInteger>(_ body: () -> T) -> Outcome<T> {
        while true {
            let result = body()
            if result >= 0 { return .done(result) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    /// The same policy for calls whose every failure is an error for the caller (setup calls: socket, bind, listen,
    /// setsockopt, shutdown, epoll_ctl): EAGAIN included, thrown as an `IOError` naming `call`.
    @inline(__always) @discardableResult
    static func check<T: FixedWidthInteger & SignedInteger>(_ call: StaticString, _ body: () -> T) throws(IOError) -> T {
        try value(call, syscall(body))
    }

    /// The result of a setup call, or its failure (EAGAIN included) thrown as an `IOError` naming `call`.
    @inline(__always) @discardableResult
    static func value<T>(_ call: StaticString, _ outcome: Outcome<T>) throws(IOError) -> T {
        switch outcome {
        case .done(let result): return result
        case .wouldBlock: throw IOError(call, EAGAIN)
        case .failed(let e): throw IOError(call, e)
        }
    }

    /// Maps a read's outcome: 0 bytes is the peer's end of file.
    @inline(__always)
    static func readResult(_ outcome: Outcome<Int>) -> IOResult {
        switch outcome {
        case .done(0): return .endOfFile
        case .done(let n): return .bytes(n)
        case .wouldBlock: return .wouldBlock
        case .failed(let e): return .failed(e)
        }
    }

    /// Maps a write's outcome (0 bytes written is not an end of file).
    @inline(__always)
    static func writeResult(_ outcome: Outcome<Int>) -> IOResult {
        switch outcome {
        case .done(let n): return .bytes(n)
        case .wouldBlock: return .wouldBlock
        case .failed(let e): return .failed(e)
        }
    }

    // MARK: Reads and writes

    /// read(2), retrying EINTR.
    @inline(__always)
    public static func read(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int) -> IOResult {
        readResult(syscall { Glibc.read(fd, pointer, count) })
    }

    /// writev(2), retrying EINTR. MSG_NOSIGNAL is not available for writev, so SIGPIPE is ignored process-wide.
    @inline(__always)
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) -> IOResult {
        writeResult(syscall { Glibc.writev(fd, iov, count) })
    }

    /// send(2) with MSG_NOSIGNAL, retrying EINTR.
    @inline(__always)
    public static func write(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> IOResult {
        writeResult(syscall { Glibc.send(fd, pointer, count, Int32(MSG_NOSIGNAL)) })
    }

    /// Writes all of `bytes` to standard error (log lines), retrying EINTR and short writes. It gives up silently when
    /// stderr is gone or would block: a log line is not worth stopping a worker for.
    public static func writeStderr(_ bytes: UnsafeRawBufferPointer) {
        guard let start = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            switch syscall({ Glibc.write(2, start + offset, bytes.count - offset) }) {
            case .done(let n): offset += n
            case .wouldBlock, .failed: return
            }
        }
    }

    /// Writes `text`'s UTF-8 to standard error (one write(2) when it fits, so lines of concurrent workers do not mix).
    public static func writeStderr(_ text: String) {
        var text = text
        text.withUTF8 { writeStderr(UnsafeRawBufferPointer($0)) }
    }

    // MARK: Descriptors and sockets

    public static func close(_ fd: Int32) {
        // Linux releases the descriptor even when close reports EINTR: never retry (it could close a reused fd).
        _ = Glibc.close(fd)
    }

    /// A non-blocking, close-on-exec TCP socket of `family`.
    static func tcpSocket(family: Int32) throws(IOError) -> Int32 {
        try check("socket") { csluice_tcp_socket(family) }
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) throws(IOError) {
        var storage = address.storage
        let outcome = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in syscall { Glibc.bind(fd, s, address.length) } }
        }
        try value("bind", outcome)
    }

    static func listen(_ fd: Int32, backlog: Int32) throws(IOError) {
        try check("listen") { Glibc.listen(fd, backlog) }
    }

    /// How far a non-blocking connect(2) got.
    enum ConnectProgress: Equatable {
        case connected
        /// Finishing in the background: the socket turns writable, then `pendingError` says how it went.
        case inProgress
        case failed(Int32)
    }

    /// connect(2) on a non-blocking socket. EINTR is not retried: POSIX says an interrupted connect goes on in the
    /// background (a second call would fail with EALREADY), so it is in progress like EINPROGRESS.
    static func connect(_ fd: Int32, _ address: SocketAddress) -> ConnectProgress {
        var storage = address.storage
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if rc == 0 { return .connected }
        let e = Glibc.errno
        if e == EINPROGRESS || e == EINTR { return .inProgress }
        return .failed(e)
    }

    /// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC, retrying EINTR and ECONNABORTED (a connection reset while it
    /// waited in the backlog is simply the next one's turn).
    @inline(__always)
    static func accept(_ listener: Int32, _ storage: inout sockaddr_storage, _ length: inout socklen_t) -> Outcome<Int32> {
        while true {
            let outcome = syscall { csluice_accept(listener, &storage, &length) }
            if case .failed(ECONNABORTED) = outcome { continue }
            return outcome
        }
    }

    /// Which direction `shutdown` closes.
    public enum ShutdownDirection: Sendable {
        /// No more reads (SHUT_RD).
        case read
        /// Sends a FIN after the queued bytes; reading goes on (SHUT_WR: the first step of a lingering close).
        case write
        /// Both (SHUT_RDWR).
        case both
    }

    /// shutdown(2). ENOTCONN (the peer already reset) comes back as an error like any other; callers on a closing
    /// path usually ignore it with `try?`.
    public static func shutdown(_ fd: Int32, _ how: ShutdownDirection) throws(IOError) {
        let value: Int
        switch how {
        case .read: value = SHUT_RD
        case .write: value = SHUT_WR
        case .both: value = SHUT_RDWR
        }
        try check("shutdown") { Glibc.shutdown(fd, Int32(value)) }
    }

    /// setsockopt(2) for an integer option.
    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) throws(IOError) {
        var value = value
        try check("setsockopt") { Glibc.setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }

    static func setNoDelay(_ fd: Int32) throws(IOError) {
        try setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1)
    }

    /// SO_LINGER with a zero timeout: the next close sends RST instead of FIN.
    static func setLingerZero(_ fd: Int32) throws(IOError) {
        var value = linger(l_onoff: 1, l_linger: 0)
        try check("setsockopt") { Glibc.setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size)) }
    }

    /// getsockname(2): the address a socket is bound to.
    static func localAddress(_ fd: Int32) throws(IOError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let outcome = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in syscall { Glibc.getsockname(fd, s, &length) } }
        }
        try value("getsockname", outcome)
        return SocketAddress(storage: storage, length: length)
    }

    /// The pending error of a socket (SO_ERROR: 0 once a non-blocking connect succeeded), or getsockopt's own errno.
    static func pendingError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        switch syscall({ Glibc.getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) }) {
        case .done: return error
        case .wouldBlock: return EAGAIN
        case .failed(let e): return e
        }
    }

    // MARK: epoll and eventfd (through the C shims, which only translate types)

    static func epollCreate() throws(IOError) -> Int32 {
        try check("epoll_create1") { csluice_epoll_create() }
    }

    static func epollAdd(_ epfd: Int32, _ fd: Int32, events: UInt32, data: UInt64) throws(IOError) {
        try check("epoll_ctl") { csluice_epoll_add(epfd, fd, events, data) }
    }

    static func epollModify(_ epfd: Int32, _ fd: Int32, events: UInt32, data: UInt64) throws(IOError) {
        try check("epoll_ctl") { csluice_epoll_mod(epfd, fd, events, data) }
    }

    static func epollRemove(_ epfd: Int32, _ fd: Int32) throws(IOError) {
        try check("epoll_ctl") { csluice_epoll_del(epfd, fd) }
    }

    /// epoll_wait(2), retrying EINTR (the caller's timeout starts again: at most one sweep interval late per signal).
    @inline(__always)
    static func epollWait(_ epfd: Int32, _ events: UnsafeMutablePointer<csluice_event>, max: Int32, timeoutMs: Int32) -> Outcome<Int32> {
        syscall { csluice_epoll_wait(epfd, events, max, timeoutMs) }
    }

    /// A non-blocking, close-on-exec eventfd (counter 0).
    static func eventfd() throws(IOError) -> Int32 {
        try check("eventfd") { csluice_eventfd() }
    }

    /// Adds 1 to the eventfd's counter, waking whoever polls it. Only a full counter (2^64 - 2 wake-ups pending) can
    /// fail, and then a wake-up is pending anyway.
    static func eventfdSignal(_ fd: Int32) {
        _ = syscall { csluice_eventfd_signal(fd) }
    }

    /// Resets the eventfd's counter to 0; EAGAIN (already 0) is fine.
    static func eventfdDrain(_ fd: Int32) {
        _ = syscall { csluice_eventfd_drain(fd) }
    }

    // MARK: Process

    /// Ignore SIGPIPE: a peer that goes away must surface as EPIPE on the write, not kill the process.
    public static func ignoreSIGPIPE() {
        _ = signal(SIGPIPE, SIG_IGN)
    }

    public static func nowMilliseconds() -> Int64 { csluice_now_ms() }

    public static func residentBytes() -> Int { Int(csluice_rss_bytes()) }
}
