// Proxy layer: the worker's spare request-parser storage (field lists), lent to HTTP/1.1 connections while they parse
// a head and given back when they fall idle, so that an idle keep-alive connection holds none, and to HTTP/2 streams
// for their lifetime, so that a stream's field list is not allocated anew and grown field by field.
import SluiceHTTP1

final class ParserStoragePool {
    private var free: [RequestParserStorage] = []
    private let limits: HTTP1Limits
    private let maxKept: Int

    init(limits: HTTP1Limits, maxKept: Int = 256) {
        self.limits = limits
        self.maxKept = maxKept
        free.reserveCapacity(maxKept)
    }

    @inline(__always) func take() -> RequestParserStorage {
        free.popLast() ?? RequestParserStorage(limits: limits)
    }

    /// Keeps `storage` for the next parser, unless enough are kept already or a large head made it grow.
    @inline(__always) func give(_ storage: RequestParserStorage) {
        if free.count < maxKept && storage.isStandardSize { free.append(storage) }
    }
}
