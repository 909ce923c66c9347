// Proxy layer: the gateway's access log writer — one thread that drains every worker's ring to stdout or a file,
// whole lines only, reopens the file on request (logrotate), flushes at shutdown and counts what it wrote and lost.
import SluiceIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Lines of the access log, summed over the workers.
public struct AccessLogStats: Hashable, Sendable {
    /// Lines handed to the destination.
    public var linesWritten = 0
    /// Lines that never reached it: a worker's ring was full (the sink was slower than the traffic), the destination
    /// refused a write (a full disk, a closed pipe), or a shutdown's flush gave up on a stalled sink.
    public var linesDropped = 0
    public init() {}

    /// `sluice_access_log_lines_total` and `sluice_access_log_dropped_total` for /metrics.
    public func write(into out: inout MetricsExposition) {
        out.family("sluice_access_log_lines", .counter, help: "Access log lines written to the destination.")
        out.counter(MetricLabels(), UInt64(linesWritten))
        out.family("sluice_access_log_dropped", .counter,
                   help: "Access log lines dropped: the sink was slower than the traffic (a full ring), refused a write, or was still stalled at shutdown.")
        out.counter(MetricLabels(), UInt64(linesDropped))
    }
}

/// The workers never wait for it: each appends to its own ring (AccessLogRing) and drops a line when its ring is
/// full. This thread looks at the rings every `idleSleepMs`, and takes their whole lines into its staging buffer to
/// write them once `batchBytes` have gathered or `maxDelayMs` have passed since its last write: on this project's
/// ext4, a write costs about 1.8 µs of system time per 450-byte line when each line is its own write (as nginx and
/// HAProxy log), 0.4 µs at 50 lines a write, 0.2 µs at 150 or more — so lines are batched under load, and still
/// appear within `maxDelayMs` when traffic is light.
///
/// A pipe, FIFO, socket or terminal gets at most PIPE_BUF bytes per write, cut at a line's end, after poll says it
/// has room: such writes are atomic (POSIX), so lines from others sharing stdout never cut ours, and a stalled
/// reader blocks this thread at most `pollMs` at a time — which is what lets a shutdown finish with a stalled sink,
/// counting what it could not write. A regular file takes everything pending in one write.
final class AccessLogWriter: @unchecked Sendable {  // the atomics are shared; the fd and staging belong to the writer thread
    let rings: [AccessLogRing]
    private let destination: AccessLogSettings.Destination
    private let reopenRequested = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    /// When a shutdown's flush gives up (milliseconds, Posix.nowMilliseconds), set before `stopRequested`.
    private let flushDeadlineMs = Atomic<Int64>(0)
    private let finished = Atomic<Bool>(false)
    private let written = Atomic<Int>(0)
    private let lost = Atomic<Int>(0)

    // The writer thread's own.
    private var fd: Int32
    private var isStream = false
    private let staging: UnsafeMutableRawPointer
    private let stagingCapacity = 256 * 1024
    private var pendingStart = 0
    private var pendingEnd = 0
    private var nextRing = 0
    private var writtenCount = 0
    private var lostCount = 0
    /// The last write error reported, so that a full disk is reported once, not once per batch.
    private var reportedErrno: Int32 = 0

    /// 2 MiB: about 4 600 JSON lines, 90 ms of one worker at 50 000 requests a second before a line is dropped.
    static let defaultRingBytes = 2 << 20
    /// Each wake-up costs about 35 µs of CPU on this project's VM (measured idle with /proc/…/schedstat: 5 ms
    /// sleeps were 7 ms of CPU a second, a quarter of the log's cost at 15 000 requests a second); 20 ms keeps that at
    /// 1.7 ms a second, and a ring holds 90 ms of a worker at 50 000 requests a second, over four times as long.
    static let idleSleepMs = 20
    static let batchBytes = 64 * 1024
    static let maxDelayMs: Int64 = 50
    static let pollMs: Int32 = 10
    private var lastWriteMs: Int64 = 0

    /// Opens the destination (a file: appended to, created 0644 if missing). Throws when it cannot be opened.
    init(destination: AccessLogSettings.Destination, workers: Int, ringBytes: Int = AccessLogWriter.defaultRingBytes) throws(GatewayError) {
        self.destination = destination
        switch destination {
        case .off:
            preconditionFailure("no access log writer for destination off")
        case .stdout:
            fd = 1
        case .file(let path):
            fd = try Self.open(path)
        }
        rings = (0..<workers).map { _ in AccessLogRing(capacity: ringBytes) }
        staging = UnsafeMutableRawPointer.allocate(byteCount: stagingCapacity, alignment: 64)
        isStream = Self.isStream(fd)
    }

    /// Whether the thread was started: it closes the file when it ends; a gateway whose start failed after the file
    /// was opened closes it here.
    private var isStarted = false

    deinit {
        if !isStarted, case .file = destination { Posix.close(fd) }
        staging.deallocate()
    }

    /// O_APPEND: every write lands at the end even after logrotate's copytruncate; O_NONBLOCK: a FIFO without a
    /// reader fails at once instead of hanging the start, and a full pipe returns EAGAIN instead of blocking.
    private static func open(_ path: String) throws(GatewayError) -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard fd >= 0 else {
            throw GatewayError(description: "accessLog: cannot open \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    private static func isStream(_ fd: Int32) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return true }
        return (st.st_mode & S_IFMT) != S_IFREG
    }

    func start() {
        isStarted = true
        spawnThread(name: "sluice-accesslog") { [self] in run() }
    }

    /// Asks the thread to reopen the file before its next write (SIGUSR1 after logrotate renamed it).
    func requestReopen() { reopenRequested.store(true, ordering: .releasing) }

    /// Writes what the rings hold, then stops; returns when done or when `flushMs` has passed (what a stalled sink
    /// did not take by then is counted as dropped). Call after the workers stopped, so no line comes after.
    func stop(flushMs: Int64 = 2000) {
        flushDeadlineMs.store(Posix.nowMilliseconds() + flushMs, ordering: .relaxed)
        stopRequested.store(true, ordering: .releasing)
        let giveUp = Posix.nowMilliseconds() + flushMs + 1000
        while !finished.load(ordering: .acquiring) && Posix.nowMilliseconds() < giveUp { usleep(1000) }
    }

    var stats: AccessLogStats {
        var s = AccessLogStats()
        s.linesWritten = written.load(ordering: .relaxed)
        s.linesDropped = lost.load(ordering: .relaxed) + rings.reduce(0) { $0 + $1.dropped.load(ordering: .relaxed) }
        return s
    }

    // MARK: The thread

    private func run() {
        while true {
            reopenIfRequested()
            let isStopping = stopRequested.load(ordering: .acquiring)
            if pendingStart == pendingEnd {
                let now = Posix.nowMilliseconds()
                if isStopping || now - lastWriteMs >= Self.maxDelayMs || rings.reduce(0, { $0 + $1.buffered }) >= Self.batchBytes {
                    fill()
                    if pendingStart < pendingEnd { lastWriteMs = now }
                }
            }
            if pendingStart < pendingEnd {
                flush()
                if isStopping && Posix.nowMilliseconds() > flushDeadlineMs.load(ordering: .relaxed) {
                    giveUp()
                    break
                }
                continue
            }
            if isStopping { break }
            var pause = timespec(tv_sec: 0, tv_nsec: Self.idleSleepMs * 1_000_000)
            nanosleep(&pause, nil)
        }
        if case .file = destination { Posix.close(fd) }
        finished.store(true, ordering: .releasing)
    }

    /// Copies whole lines from the rings into staging, starting with a different ring each time so that a busy
    /// worker cannot starve the others.
    private func fill() {
        pendingStart = 0
        pendingEnd = 0
        for k in 0..<rings.count {
            let ring = rings[(nextRing + k) % rings.count]
            pendingEnd += ring.take(into: staging + pendingEnd, limit: stagingCapacity - pendingEnd)
            if pendingEnd == stagingCapacity { break }
        }
        nextRing = (nextRing + 1) % rings.count
    }

    /// Writes pending lines until done, or until a stream has had no room for `pollMs`.
    private func flush() {
        while pendingStart < pendingEnd {
            // Checked before every write, after the lines were taken: a line finished after the request to reopen
            // goes to the new file.
            reopenIfRequested()
            var n = pendingEnd - pendingStart
            if isStream {
                if n > Int(PIPE_BUF) {
                    // Whole lines up to PIPE_BUF; a longer line (the formatter's limit is above it) goes alone.
                    if let last = AccessLogRing.lastNewline(staging + pendingStart, Int(PIPE_BUF)) {
                        n = last + 1
                    } else if let end = memchr(staging + pendingStart, 0x0A, n) {
                        n = (staging + pendingStart).distance(to: end) + 1
                    }
                }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&p, 1, Self.pollMs)
                if ready == 0 { return }
                if ready < 0 && errno == EINTR { continue }
            }
            let r = Glibc.write(fd, staging + pendingStart, n)
            if r > 0 {
                count(written: Self.newlines(staging + pendingStart, r))
                pendingStart += r
            } else if r < 0 && errno == EINTR {
                continue
            } else if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return
            } else {
                let e = r < 0 ? errno : EIO
                if e != reportedErrno {
                    logLine("access log: write failed: \(String(cString: strerror(e))); lines are dropped and counted until it works again")
                    reportedErrno = e
                }
                giveUpPending()
                return
            }
        }
        reportedErrno = 0
    }

    /// The shutdown's flush deadline passed with the sink stalled: everything not written is counted as dropped.
    private func giveUp() {
        giveUpPending()
        while true {
            fill()
            if pendingEnd == 0 { return }
            giveUpPending()
        }
    }

    private func giveUpPending() {
        lostCount += Self.newlines(staging + pendingStart, pendingEnd - pendingStart)
        lost.store(lostCount, ordering: .relaxed)
        pendingStart = 0
        pendingEnd = 0
    }

    private func count(written lines: Int) {
        writtenCount += lines
        written.store(writtenCount, ordering: .relaxed)
    }

    private func reopenIfRequested() {
        guard reopenRequested.load(ordering: .acquiring) else { return }
        reopenRequested.store(false, ordering: .relaxed)
        reopen()
    }

    private func reopen() {
        guard case .file(let path) = destination else { return }
        do {
            let next = try Self.open(path)
            Posix.close(fd)
            fd = next
            isStream = Self.isStream(fd)
        } catch {
            logLine("\(error); still writing to the file opened before")
        }
    }

    private static func newlines(_ p: UnsafeMutableRawPointer, _ count: Int) -> Int {
        var lines = 0
        var at = p
        var left = count
        while left > 0, let nl = memchr(at, 0x0A, left) {
            lines += 1
            let next = nl + 1
            left -= at.distance(to: next)
            at = next
        }
        return lines
    }
}
