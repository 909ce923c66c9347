// ByteSpan: an offset range into the caller's buffer. Protocol layer (SluiceHTTP1).
// Spans instead of copies keep the parser zero-copy: the proxy owns the bytes, we only point at them.

/// A range of bytes inside the buffer that was passed to `parse` (offsets from its start).
public struct ByteSpan: Equatable, Sendable {
    public var start: Int
    public var count: Int

    public init(start: Int, count: Int) {
        self.start = start
        self.count = count
    }

    /// One past the last byte.
    @inlinable public var end: Int { start + count }

    public static let empty = ByteSpan(start: 0, count: 0)
}

extension UnsafeRawBufferPointer {
    /// The bytes of `span` in this buffer (the caller guarantees the span lies inside it).
    @inlinable public func bytes(_ span: ByteSpan) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[span.start..<span.end])
    }

    /// ASCII case-insensitive comparison of `span` with a lowercase literal.
    public func span(_ span: ByteSpan, equalsLowercase literal: StaticString) -> Bool {
        guard span.count == literal.utf8CodeUnitCount else { return false }
        let lit = literal.utf8Start
        var i = 0
        while i < span.count {
            if ASCII.lower(self[span.start + i]) != lit[i] { return false }
            i += 1
        }
        return true
    }

    /// Exact (case-sensitive) comparison of `span` with a literal, e.g. a method (RFC 9110 §9.1).
    public func span(_ span: ByteSpan, equalsBytes literal: StaticString) -> Bool {
        guard span.count == literal.utf8CodeUnitCount else { return false }
        let lit = literal.utf8Start
        var i = 0
        while i < span.count {
            if self[span.start + i] != lit[i] { return false }
            i += 1
        }
        return true
    }

    /// ASCII case-insensitive comparison of two spans of this buffer.
    public func span(_ a: ByteSpan, equalsIgnoringCase b: ByteSpan) -> Bool {
        guard a.count == b.count else { return false }
        var i = 0
        while i < a.count {
            if ASCII.lower(self[a.start + i]) != ASCII.lower(self[b.start + i]) { return false }
            i += 1
        }
        return true
    }
}
