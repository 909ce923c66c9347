// IO layer: a growable byte buffer with read and write indices, and a per-worker pool that recycles them.

/// Bytes in `[readIndex, writeIndex)` are unread; `[writeIndex, capacity)` is free room.
/// One owner at a time (a connection), never shared between threads.
///
/// Every method that moves an index checks `0 <= readIndex <= writeIndex <= capacity` with a precondition kept in
/// release builds: a caller that consumes more than it has (issue 7, bug 1) traps instead of letting the buffer's
/// next owner write before its allocation. The checks are a compare and a branch each: no difference measured
/// beyond run-to-run noise on the append/consume loops (issue 7).
public final class ByteBuffer {
    public private(set) var base: UnsafeMutableRawPointer
    public private(set) var capacity: Int
    public private(set) var readIndex = 0
    /// Where the unread bytes end; writers into the free room (TLSSession) move it with `commit(_:)`.
    public var writeIndex: Int { end }
    /// Storage of `writeIndex`, for the methods here that have already checked their bounds. Not private: the
    /// one-line accessors (isEmpty, readable, consume, …) are inlined into the proxy only while their bodies touch
    /// nothing private (cross-module optimisation); made private, each became a call on the request path.
    @usableFromInline var end = 0
    /// Set while the buffer sits in a `BufferPool`'s free list, so that a second `give` traps.
    fileprivate var isPooled = false

    public init(capacity: Int) {
        precondition(capacity > 0, "ByteBuffer: capacity must be positive")  // growth doubles it
        self.capacity = capacity
        self.base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    @inline(__always) public var readableBytes: Int { end - readIndex }
    @inline(__always) public var isEmpty: Bool { end == readIndex }
    @inline(__always) public var writableBytes: Int { capacity - end }

    /// The unread bytes, valid until the next mutation.
    @inline(__always) public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readIndex, count: end - readIndex)
    }

    /// The free room, for a reader that fills it itself (then `commit(_:)` what it wrote); valid until the next
    /// mutation.
    @inline(__always) public var writable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + end, count: capacity - end)
    }

    /// Marks `count` bytes, written by the caller at the start of `writable`, as unread.
    @inline(__always) public func commit(_ count: Int) {
        precondition(UInt(bitPattern: count) <= UInt(bitPattern: capacity &- end), "ByteBuffer: commit beyond the free room")
        end &+= count
    }

    /// Drops the first `count` unread bytes; when none is left, both indices go back to 0.
    @inline(__always) public func consume(_ count: Int) {
        // One unsigned compare covers both bounds (a negative count wraps above any byte count); the indices are in
        // [0, capacity], so neither the difference nor, once checked, the sum can overflow.
        precondition(UInt(bitPattern: count) <= UInt(bitPattern: end &- readIndex), "ByteBuffer: consume beyond the unread bytes")
        readIndex &+= count
        if readIndex == end { readIndex = 0; end = 0 }
    }

    public func clear() { readIndex = 0; end = 0 }

    /// Moves unread bytes to the front so the free room is contiguous.
    public func compact() {
        guard readIndex > 0 else { return }
        let n = readableBytes
        if n > 0 { base.copyMemory(from: base + readIndex, byteCount: n) }
        readIndex = 0
        end = n
    }

    /// Makes room for `count` more bytes, compacting first and growing only when that is not enough.
    public func reserve(_ count: Int) {
        precondition(count >= 0, "ByteBuffer: negative reserve")
        makeRoom(count)
    }

    /// `reserve` for the appends here, whose counts are never negative (a check there would cost every append).
    @inline(__always) @usableFromInline func makeRoom(_ count: Int) {
        if capacity &- end < count { grow(count) }
    }

    /// The slow path of `reserve`: compaction, then growth by doubling.
    @usableFromInline func grow(_ count: Int) {
        compact()
        if writableBytes >= count { return }
        var newCapacity = capacity * 2
        while newCapacity - end < count { newCapacity *= 2 }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: end)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always) public func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        makeRoom(bytes.count)
        (base + end).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        end += bytes.count
    }

    @inline(__always) public func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    @inline(__always) public func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    @inline(__always) public func append(byte: UInt8) {
        makeRoom(1)
        base.storeBytes(of: byte, toByteOffset: end, as: UInt8.self)
        end += 1
    }

    /// Appends a non-negative integer in decimal.
    public func append(decimal value: Int) {
        precondition(value >= 0)
        makeRoom(20)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, no allocation
        var v = UInt64(value)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            repeat {
                scratch[23 - n] = UInt8(truncatingIfNeeded: 48 + v % 10)
                v /= 10
                n += 1
            } while v > 0
            append(UnsafeRawBufferPointer(rebasing: scratch[(24 - n)...]))
        }
    }

    /// Appends a non-negative integer in lower-case hexadecimal (chunk sizes).
    public func append(hex value: Int) {
        precondition(value >= 0)
        makeRoom(16)
        let digits: StaticString = "0123456789abcdef"
        var shift = 60
        while shift > 0 && (value >> shift) & 0xF == 0 { shift -= 4 }
        while shift >= 0 {
            append(byte: digits.utf8Start[(value >> shift) & 0xF])
            shift -= 4
        }
    }

    /// Reads once from `fd` into the free room (at most `limit` bytes).
    @inline(__always) public func read(from fd: Int32, limit: Int) -> IOResult {
        let room = min(limit, writableBytes)
        precondition(room > 0, "ByteBuffer: read with no room")
        let result = Posix.read(fd, base + end, room)
        // read(2) never returns more than it was asked for: `end` stays within capacity.
        if case .bytes(let n) = result { end += n }
        return result
    }

    /// Writes the unread bytes to `fd` once, consuming what was written.
    @inline(__always) public func write(to fd: Int32) -> IOResult {
        guard readableBytes > 0 else { return .bytes(0) }
        let result = Posix.write(fd, base + readIndex, readableBytes)
        if case .bytes(let n) = result { consume(n) }
        return result
    }
}

/// Recycles buffers of one standard size so that steady-state requests allocate nothing and idle
/// connections hold none (10 000 idle keep-alive connections must stay cheap).
public final class BufferPool {
    public let bufferCapacity: Int
    private var free: [ByteBuffer] = []
    private let maxKept: Int

    public init(bufferCapacity: Int, maxKept: Int = 1024) {
        self.bufferCapacity = bufferCapacity
        self.maxKept = maxKept
        free.reserveCapacity(maxKept)
    }

    @inline(__always) public func take() -> ByteBuffer {
        if let b = free.popLast() {
            b.isPooled = false
            return b
        }
        return ByteBuffer(capacity: bufferCapacity)
    }

    /// Returns a buffer; one that grew beyond the standard size is dropped rather than kept. A buffer given twice
    /// would be handed to two owners by the next two `take`s, so the second `give` traps.
    @inline(__always) public func give(_ buffer: ByteBuffer) {
        precondition(!buffer.isPooled, "BufferPool: buffer given back twice")
        buffer.clear()
        if free.count < maxKept && buffer.capacity == bufferCapacity {
            buffer.isPooled = true
            free.append(buffer)
        }
    }

    /// How many buffers wait in the free list.
    var keptCount: Int { free.count }
}
