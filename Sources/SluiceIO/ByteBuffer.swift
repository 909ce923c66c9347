// IO layer: a growable byte buffer with read and write indices, and a per-worker pool that recycles them.

/// Bytes in `[readIndex, writeIndex)` are unread; `[writeIndex, capacity)` is free room.
/// One owner at a time (a connection), never shared between threads.
public final class ByteBuffer {
    public private(set) var base: UnsafeMutableRawPointer
    public private(set) var capacity: Int
    public var readIndex = 0
    public var writeIndex = 0

    public init(capacity: Int) {
        self.capacity = capacity
        self.base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    @inline(__always) public var readableBytes: Int { writeIndex - readIndex }
    @inline(__always) public var isEmpty: Bool { writeIndex == readIndex }
    @inline(__always) public var writableBytes: Int { capacity - writeIndex }

    /// The unread bytes, valid until the next mutation.
    @inline(__always) public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readIndex, count: writeIndex - readIndex)
    }

    @inline(__always) public func consume(_ count: Int) {
        readIndex += count
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

    public func clear() { readIndex = 0; writeIndex = 0 }

    /// Moves unread bytes to the front so the free room is contiguous.
    public func compact() {
        guard readIndex > 0 else { return }
        let n = readableBytes
        if n > 0 { (base).copyMemory(from: base + readIndex, byteCount: n) }
        readIndex = 0
        writeIndex = n
    }

    /// Makes room for `count` more bytes, compacting first and growing only when that is not enough.
    public func reserve(_ count: Int) {
        if writableBytes >= count { return }
        compact()
        if writableBytes >= count { return }
        var newCapacity = capacity * 2
        while newCapacity - writeIndex < count { newCapacity *= 2 }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: writeIndex)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always) public func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + writeIndex).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    @inline(__always) public func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    @inline(__always) public func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    @inline(__always) public func append(byte: UInt8) {
        reserve(1)
        base.storeBytes(of: byte, toByteOffset: writeIndex, as: UInt8.self)
        writeIndex += 1
    }

    /// Appends a non-negative integer in decimal.
    public func append(decimal value: Int) {
        precondition(value >= 0)
        reserve(20)
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
        reserve(16)
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
        precondition(room > 0, "read with no room")
        let result = Posix.read(fd, base + writeIndex, room)
        if case .bytes(let n) = result { writeIndex += n }
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
        if let b = free.popLast() { return b }
        return ByteBuffer(capacity: bufferCapacity)
    }

    /// Returns a buffer; one that grew beyond the standard size is dropped rather than kept.
    @inline(__always) public func give(_ buffer: ByteBuffer) {
        buffer.clear()
        if free.count < maxKept && buffer.capacity == bufferCapacity { free.append(buffer) }
    }
}
