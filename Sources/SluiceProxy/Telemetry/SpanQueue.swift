// Proxy layer: the spans of sampled requests on their way out of a worker — a bounded single-producer (the worker)
// single-consumer (the exporter, through Gateway.drainSpans) ring of preallocated slots, with load/store atomics
// only; a full ring drops the span and counts it. Also the worker's end of tracing at finish.
import SluiceIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One finished, sampled request as the exporter gets it: the request's record (ids, head, route, outcome,
/// monotonic timestamps) and its start and end in Unix nanoseconds.
public struct FinishedSpan: Sendable {
    public internal(set) var record = RequestRecord()
    public internal(set) var startUnixNs: UInt64 = 0
    public internal(set) var endUnixNs: UInt64 = 0

    public init() {}

    /// A monotonic timestamp of the record (0: the phase never ran) in Unix nanoseconds (0 for 0).
    public func unixNs(_ monotonicNs: UInt64) -> UInt64 {
        guard monotonicNs > 0, record.startNs > 0 else { return 0 }
        return startUnixNs &+ (monotonicNs &- record.startNs)
    }
}

/// The ring. Indices only grow; slot = index & mask. The producer writes a slot, then publishes `tail` (release);
/// the consumer reads slots up to `tail` (acquire), then gives them back by publishing `head` (release). Neither
/// side ever read-modify-writes an atomic, and each counter has one writer.
final class SpanQueue: @unchecked Sendable {  // slots are handed over by the tail/head protocol above
    private let slots: UnsafeMutablePointer<FinishedSpan>
    private let mask: Int
    let capacity: Int
    /// Next slot to read: written by the consumer only.
    private let head = Atomic<Int>(0)
    /// Next slot to write: written by the producer only.
    private let tail = Atomic<Int>(0)
    /// Spans refused because the ring was full: written by the producer only.
    private let droppedCount = Atomic<Int>(0)

    /// `capacity` is rounded up to a power of two (at least 1); every slot is allocated here, none later.
    init(capacity: Int) {
        var n = 1
        while n < capacity { n <<= 1 }
        self.capacity = n
        mask = n - 1
        slots = .allocate(capacity: n)
        slots.initialize(repeating: FinishedSpan(), count: n)
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// Producer: copies the record into the next free slot; false (and counted) when the ring is full.
    func push(_ record: borrowing RequestRecord, unixOffsetNs: Int64) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t &- head.load(ordering: .acquiring) >= capacity {
            droppedCount.store(droppedCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            return false
        }
        let slot = slots + (t & mask)
        slot.pointee.record = copy record
        slot.pointee.startUnixNs = UInt64(truncatingIfNeeded: Int64(bitPattern: record.startNs) &+ unixOffsetNs)
        slot.pointee.endUnixNs = UInt64(truncatingIfNeeded: Int64(bitPattern: record.endNs) &+ unixOffsetNs)
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    /// Consumer (one at a time): appends up to `limit` spans, oldest first; returns how many.
    func drain(into out: inout [FinishedSpan], limit: Int) -> Int {
        let h = head.load(ordering: .relaxed)
        let n = min(tail.load(ordering: .acquiring) &- h, limit)
        guard n > 0 else { return 0 }
        for i in h..<(h + n) { out.append(slots[i & mask]) }
        head.store(h &+ n, ordering: .releasing)
        return n
    }

    var pending: Int { max(0, tail.load(ordering: .acquiring) &- head.load(ordering: .acquiring)) }
    var dropped: Int { droppedCount.load(ordering: .relaxed) }
}

extension Worker {
    /// Tracing's part of finish: a request refused before its head was read gets its trace id now (every request
    /// has one, for its log line), and a sampled one goes to the export queue when spans are exported.
    @inline(__always)
    func traceFinished(_ record: inout RequestRecord) {
        if !record.trace.hasTrace { record.trace.start(random: &random, sampleRate: settings.tracing.sampleRate) }
        if record.trace.isSampled, let spans { _ = spans.push(record, unixOffsetNs: unixOffsetNs) }
    }

    /// CLOCK_REALTIME − CLOCK_MONOTONIC in nanoseconds, read once when the worker starts: adding it to a record's
    /// monotonic timestamps gives wall-clock ones without a second clock read per request.
    static func unixOffsetNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let real = Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
        return real &- Int64(bitPattern: MonotonicClock.nanoseconds())
    }
}
