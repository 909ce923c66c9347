// Proxy layer: one worker's access log buffer — a single-producer single-consumer byte ring of whole lines, filled
// by the worker at finish and drained by the gateway's access log writer thread, with load/store atomics only.
import SluiceIO
import SluiceRouting
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The worker formats a line into `scratch` and `publish`es it: copied in whole, or dropped and counted when the ring
/// has no room (the sink is slower than the traffic). The writer `take`s whole lines out. Positions only grow (byte
/// counts since the start, never wrapped), so `head - tail` is what is buffered; the ring index is `position & mask`.
///
/// Each atomic has exactly one writer — `head` and `dropped` the worker, `tail` the writer thread — so a plain load, add and store replaces a read-modify-write, and nothing on the request path waits.
final class AccessLogRing: @unchecked Sendable {  // producer fields: the worker's thread only; consumer fields: the writer's
    let capacity: Int
    private let mask: Int
    private let storage: UnsafeMutableRawPointer
    /// Bytes published by the worker (release: the line's bytes are written before the writer can see them).
    private let head = Atomic<Int>(0)
    /// Bytes taken by the writer (release: the writer is done reading them before the worker may overwrite them).
    private let tail = Atomic<Int>(0)
    /// Lines the worker dropped because the ring was full.
    let dropped = Atomic<Int>(0)

    // Producer side (the worker's thread).
    /// Where the worker formats one line before publishing it; larger than the longest line the formatter makes.
    let scratch: UnsafeMutableRawPointer
    static let scratchCapacity = 8192
    var formatter = AccessLogFormatter()
    private var producerHead = 0
    /// The last tail seen: reloaded only when the ring looks full, so most lines cost no load of the writer's cell.
    private var knownTail = 0
    private var droppedCount = 0

    // Consumer side (the writer thread).
    private var consumerTail = 0

    /// `capacity` is rounded up to a power of two.
    init(capacity: Int) {
        var size = 4096
        while size < capacity { size <<= 1 }
        self.capacity = size
        mask = size - 1
        storage = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        scratch = UnsafeMutableRawPointer.allocate(byteCount: Self.scratchCapacity, alignment: 64)
    }

    deinit {
        storage.deallocate()
        scratch.deallocate()
    }

    // MARK: Producer

    /// Copies the first `length` bytes of `scratch` (one or more whole lines) in, or drops them when they do not fit.
    @discardableResult
    func publish(length: Int) -> Bool {
        if capacity - (producerHead - knownTail) < length {
            knownTail = tail.load(ordering: .acquiring)
            if capacity - (producerHead - knownTail) < length {
                countDropped()
                return false
            }
        }
        let start = producerHead & mask
        let first = min(length, capacity - start)
        (storage + start).copyMemory(from: scratch, byteCount: first)
        if first < length { storage.copyMemory(from: scratch + first, byteCount: length - first) }
        producerHead += length
        head.store(producerHead, ordering: .releasing)
        return true
    }

    /// A line that was not published (the ring was full, or the line did not fit the scratch space).
    func countDropped() {
        droppedCount += 1
        dropped.store(droppedCount, ordering: .relaxed)
    }

    // MARK: Consumer

    /// Bytes buffered right now (the writer's view).
    var buffered: Int { head.load(ordering: .acquiring) - consumerTail }

    /// Copies whole lines, at most `limit` bytes, into `out` and frees their room in the ring; returns the bytes
    /// copied (0: nothing buffered, or the first line is longer than `limit`).
    func take(into out: UnsafeMutableRawPointer, limit: Int) -> Int {
        let available = head.load(ordering: .acquiring) - consumerTail
        guard available > 0 else { return 0 }
        var n = min(available, limit)
        let start = consumerTail & mask
        let first = min(n, capacity - start)
        out.copyMemory(from: storage + start, byteCount: first)
        if first < n { (out + first).copyMemory(from: storage, byteCount: n - first) }
        if n < available {
            // Cut at the last newline: the writer only ever writes whole lines.
            guard let last = Self.lastNewline(out, n) else { return 0 }
            n = last + 1
        }
        consumerTail += n
        tail.store(consumerTail, ordering: .releasing)
        return n
    }

    /// The offset of the last newline in the first `count` bytes (glibc's memrchr is not visible to Swift here).
    static func lastNewline(_ p: UnsafeRawPointer, _ count: Int) -> Int? {
        var i = count - 1
        while i >= 0 {
            if p.load(fromByteOffset: i, as: UInt8.self) == 0x0A { return i }
            i -= 1
        }
        return nil
    }
}

// MARK: The worker's side

extension AccessLogRing {
    /// One finished request: filtered (`errorsOnly`, then `sampleRate` with the worker's PRNG) before anything is
    /// formatted, then formatted into the scratch bytes and published. The settings are the worker's current ones, so
    /// a reload's format, rate and filter apply from the next request.
    func log(_ record: borrowing RequestRecord, format: AccessLogSettings.Format, sampleRate: Double, errorsOnly: Bool,
             random: inout FastRandom) {
        if errorsOnly && !Self.isFailure(record) { return }
        if sampleRate < 1 {
            guard sampleRate > 0 else { return }
            if !random.chance(sampleRate) { return }
        }
        // The record's times are monotonic; the line says when the request started on the wall clock.
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let nowNs = MonotonicClock.nanoseconds()
        let wallNs = Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
        let startWallNs = record.startNs > 0 && nowNs >= record.startNs ? wallNs - Int64(nowNs - record.startNs) : wallNs
        let length = formatter.format(record, as: format, startWallNs: startWallNs, into: scratch, capacity: Self.scratchCapacity)
        guard length > 0 else { countDropped(); return }
        publish(length: length)
    }

    /// What `errorsOnly` keeps: a status of 400 or more or none at all, a gateway-made answer, an abort, or a gRPC
    /// status other than OK.
    static func isFailure(_ r: borrowing RequestRecord) -> Bool {
        r.outcome != .completed || r.status >= 400 || r.status == 0 || r.grpcStatus > 0
    }
}
