// Tests of ByteBuffer (indices, compaction, growth, fd reads and writes) and BufferPool (reuse, limits).
import XCTest
@testable import SluiceIO

final class ByteBufferTests: XCTestCase {
    func testAppendThenConsumeReadsTheBytesInOrder() {
        let buffer = ByteBuffer(capacity: 64)
        buffer.append("GET / ")
        buffer.append(Array("HTTP/1.1".utf8))
        buffer.append(byte: 0x0D)
        buffer.append(byte: 0x0A)
        XCTAssertEqual(buffer.text, "GET / HTTP/1.1\r\n")
        XCTAssertEqual(buffer.readableBytes, 16)
        XCTAssertEqual(buffer.writableBytes, 48)

        buffer.consume(4)
        XCTAssertEqual(buffer.text, "/ HTTP/1.1\r\n")
        XCTAssertEqual(buffer.readIndex, 4)
        XCTAssertFalse(buffer.isEmpty)
    }

    /// Consuming the last unread byte moves both indices back to 0, so the whole capacity is free room again.
    func testConsumingEverythingRewindsBothIndices() {
        let buffer = ByteBuffer(capacity: 32)
        buffer.append("0123456789")
        buffer.consume(3)
        buffer.consume(7)
        XCTAssertTrue(buffer.isEmpty)
        XCTAssertEqual(buffer.readIndex, 0)
        XCTAssertEqual(buffer.writeIndex, 0)
        XCTAssertEqual(buffer.writableBytes, 32)
    }

    func testConsumeZeroChangesNothing() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("abc")
        buffer.consume(0)
        XCTAssertEqual(buffer.text, "abc")
        XCTAssertEqual(buffer.readIndex, 0)
    }

    func testCompactMovesTheUnreadBytesToTheFront() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("headbody")
        buffer.consume(4)
        XCTAssertEqual(buffer.writableBytes, 8)
        buffer.compact()
        XCTAssertEqual(buffer.readIndex, 0)
        XCTAssertEqual(buffer.writeIndex, 4)
        XCTAssertEqual(buffer.text, "body")
        XCTAssertEqual(buffer.writableBytes, 12)
    }

    /// When compaction makes enough room, reserve does not grow (no allocation for a buffer that is mostly read).
    func testReserveCompactsBeforeGrowing() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("0123456789ab")  // 12 of 16
        buffer.consume(10)
        let base = buffer.base
        buffer.reserve(12)  // 4 free at the end, 14 after compaction
        XCTAssertEqual(buffer.capacity, 16)
        XCTAssertEqual(buffer.base, base)
        XCTAssertEqual(buffer.text, "ab")
        XCTAssertGreaterThanOrEqual(buffer.writableBytes, 12)
    }

    /// Growth doubles the capacity until the request fits and keeps the unread bytes.
    func testReserveGrowsByDoublingAndKeepsTheBytes() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("0123456789")
        buffer.consume(2)
        buffer.reserve(50)  // 8 unread + 50 > 32, ≤ 64
        XCTAssertEqual(buffer.capacity, 64)
        XCTAssertEqual(buffer.text, "23456789")
        XCTAssertGreaterThanOrEqual(buffer.writableBytes, 50)
    }

    func testReserveOfWhatIsFreeKeepsTheBuffer() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("abcd")
        buffer.consume(1)
        buffer.reserve(12)
        XCTAssertEqual(buffer.capacity, 16)
        XCTAssertEqual(buffer.readIndex, 1, "reserve compacted although the free room sufficed")
    }

    func testAppendBeyondTheCapacityGrows() {
        let buffer = ByteBuffer(capacity: 8)
        let long = String(repeating: "x", count: 100)
        buffer.append(Array(long.utf8))
        XCTAssertEqual(buffer.capacity, 128)
        XCTAssertEqual(buffer.text, long)
        for _ in 0..<200 { buffer.append(byte: 0x79) }
        XCTAssertEqual(buffer.readableBytes, 300)
        XCTAssertEqual(buffer.capacity, 512)
    }

    func testDecimalAndHexadecimal() {
        let buffer = ByteBuffer(capacity: 8)
        for value in [0, 7, 10, 413, Int.max] {
            buffer.append(decimal: value)
            buffer.append(" ")
        }
        for value in [0, 9, 0xA, 0x4000, 0x7fff_ffff_ffff_ffff] {
            buffer.append(hex: value)
            buffer.append(" ")
        }
        XCTAssertEqual(buffer.text, "0 7 10 413 9223372036854775807 0 9 a 4000 7fffffffffffffff ")
    }

    /// `writable` + `commit` (how TLSSession reads) make the written bytes unread ones.
    func testCommitMakesBytesWrittenIntoTheFreeRoomReadable() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("ab")
        let room = buffer.writable
        XCTAssertEqual(room.count, 14)
        room.copyBytes(from: Array("cde".utf8))
        buffer.commit(3)
        XCTAssertEqual(buffer.text, "abcde")
        XCTAssertEqual(buffer.writeIndex, 5)
    }

    func testClearEmptiesTheBuffer() {
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("abc")
        buffer.consume(1)
        buffer.clear()
        XCTAssertTrue(buffer.isEmpty)
        XCTAssertEqual(buffer.writableBytes, 16)
    }

    // MARK: fd reads and writes

    func testReadFromAnFDAppendsAtMostTheLimit() {
        let pair = SocketPair()
        pair.send("hello, world")
        let buffer = ByteBuffer(capacity: 64)
        buffer.append(">")
        XCTAssertEqual(buffer.read(from: pair.b, limit: 5), .bytes(5))
        XCTAssertEqual(buffer.text, ">hello")
        XCTAssertEqual(buffer.read(from: pair.b, limit: 1000), .bytes(7))
        XCTAssertEqual(buffer.text, ">hello, world")
        XCTAssertEqual(buffer.read(from: pair.b, limit: 1000), .wouldBlock)
        XCTAssertEqual(buffer.text, ">hello, world")
    }

    /// The read is bounded by the free room as well as by the limit.
    func testReadFromAnFDStopsAtTheFreeRoom() {
        let pair = SocketPair()
        pair.send("0123456789")
        let buffer = ByteBuffer(capacity: 8)
        buffer.append("abc")
        XCTAssertEqual(buffer.read(from: pair.b, limit: 100), .bytes(5))
        XCTAssertEqual(buffer.text, "abc01234")
        XCTAssertEqual(buffer.writableBytes, 0)
    }

    func testReadAfterThePeerClosedIsEndOfFile() {
        let pair = SocketPair()
        pair.send("x")
        XCTAssertEqual(shutdown(pair.a, Int32(SHUT_WR)), 0)
        let buffer = ByteBuffer(capacity: 8)
        XCTAssertEqual(buffer.read(from: pair.b, limit: 8), .bytes(1))
        XCTAssertEqual(buffer.read(from: pair.b, limit: 8), .endOfFile)
        XCTAssertEqual(buffer.text, "x")
    }

    func testReadFromAClosedFDFails() {
        let buffer = ByteBuffer(capacity: 8)
        XCTAssertEqual(buffer.read(from: -1, limit: 8), .failed(EBADF))
        XCTAssertTrue(buffer.isEmpty)
    }

    /// A write consumes exactly what the socket took; the rest stays unread, ready for the next writable event.
    func testWriteToAnFDConsumesWhatWasWritten() {
        let pair = SocketPair()
        let buffer = ByteBuffer(capacity: 16)
        buffer.append("request")
        XCTAssertEqual(buffer.write(to: pair.a), .bytes(7))
        XCTAssertTrue(buffer.isEmpty)
        XCTAssertEqual(buffer.write(to: pair.a), .bytes(0), "an empty buffer writes nothing")
        let peer = ByteBuffer(capacity: 16)
        XCTAssertEqual(peer.read(from: pair.b, limit: 16), .bytes(7))
        XCTAssertEqual(peer.text, "request")

        // Fill the socket until it takes nothing more: every write consumes exactly what it reports.
        let big = ByteBuffer(capacity: 1 << 16)
        big.append(Array(repeating: 0x61, count: 1 << 16))
        for _ in 0..<1000 {
            let before = big.readableBytes
            switch big.write(to: pair.a) {
            case .bytes(let n):
                XCTAssertEqual(big.readableBytes, before - n, "the write consumed other than what the socket took")
                if big.isEmpty { big.append(Array(repeating: 0x61, count: 1 << 16)) }
            case .wouldBlock:
                XCTAssertEqual(big.readableBytes, before, "a write that moved nothing consumed bytes")
                return
            case .endOfFile, .failed:
                XCTFail("unexpected write result")
                return
            }
        }
        XCTFail("the socket never filled up")
    }
}

final class BufferPoolTests: XCTestCase {
    func testTakeReturnsAGivenBufferCleared() {
        let pool = BufferPool(bufferCapacity: 32)
        let first = pool.take()
        first.append("left over")
        pool.give(first)
        XCTAssertEqual(pool.keptCount, 1)
        let again = pool.take()
        XCTAssertTrue(again === first, "the pool allocated instead of reusing")
        XCTAssertTrue(again.isEmpty)
        XCTAssertEqual(again.writableBytes, 32)
        XCTAssertEqual(pool.keptCount, 0)
    }

    func testAFreshBufferHasTheStandardCapacity() {
        let pool = BufferPool(bufferCapacity: 4096)
        let buffer = pool.take()
        XCTAssertEqual(buffer.capacity, 4096)
        XCTAssertTrue(buffer.isEmpty)
    }

    /// A buffer that grew is dropped: the pool keeps only standard-size buffers, so memory does not creep up.
    func testAGrownBufferIsNotKept() {
        let pool = BufferPool(bufferCapacity: 16)
        let buffer = pool.take()
        buffer.reserve(100)
        XCTAssertGreaterThan(buffer.capacity, 16)
        pool.give(buffer)
        XCTAssertEqual(pool.keptCount, 0)
        let next = pool.take()
        XCTAssertFalse(next === buffer)
        XCTAssertEqual(next.capacity, 16)
    }

    func testAtMostMaxKeptBuffersAreKept() {
        let pool = BufferPool(bufferCapacity: 16, maxKept: 2)
        let buffers = (0..<3).map { _ in pool.take() }
        buffers.forEach { pool.give($0) }
        XCTAssertEqual(pool.keptCount, 2)
        let taken = (0..<3).map { _ in pool.take() }
        let reused = taken.filter { t in buffers.contains { $0 === t } }
        XCTAssertEqual(reused.count, 2)
        XCTAssertTrue(reused.allSatisfy { $0 !== buffers[2] }, "the buffer given beyond maxKept came back")
    }

    /// Last in, first out: the buffer given last (still warm in the cache) is the next one taken.
    func testTheLastBufferGivenIsTakenFirst() {
        let pool = BufferPool(bufferCapacity: 16)
        let a = pool.take(), b = pool.take()
        pool.give(a)
        pool.give(b)
        XCTAssertTrue(pool.take() === b)
        XCTAssertTrue(pool.take() === a)
    }
}
