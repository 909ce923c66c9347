// Test support: an H2SessionDelegate that owns its H2Session (as a connection does), records every callback in
// order, and serves response bodies and trailers the test provides.
import SluiceHTTP2

final class ServerRecorder: H2SessionDelegate {
    enum Event: Equatable {
        case opened(Int32)
        case header(Int32, String, String)
        case headersComplete(Int32, endStream: Bool)
        case data(Int32, [UInt8])
        case ended(Int32)
        case closed(Int32, errorCode: UInt32)

        var streamId: Int32 {
            switch self {
            case .opened(let id), .header(let id, _, _), .headersComplete(let id, _), .data(let id, _), .ended(let id), .closed(let id, _): id
            }
        }
    }

    private(set) var events: [Event] = []
    /// Set right after init; the recorder owns the session as a connection does (the session's delegate is unowned).
    private(set) var session: H2Session!
    /// Response bodies not yet taken by nghttp2, and whether their end is known.
    private var bodies: [Int32: (bytes: [UInt8], isComplete: Bool)] = [:]
    /// Trailers to submit when a stream's body ends.
    private var trailers: [Int32: [(String, String)]] = [:]
    /// Streams whose body provider was called while nothing was buffered (nghttp2 deferred them).
    private(set) var deferredReads: Set<Int32> = []

    init(limits: H2Limits = H2Limits()) {
        session = H2Session(delegate: self, limits: limits)
    }

    // MARK: Driving the session

    /// Submits a response: `:status`, then `headers` (names as given: the session lower-cases them).
    /// `unindexed` fields follow `headers`, added with `indexed: false`.
    func respond(_ stream: Int32, status: Int, headers: [(String, String)] = [], unindexed: [(String, String)] = [],
                 hasBody: Bool) {
        session.beginHeaders()
        add(headers)
        add(unindexed, indexed: false)
        session.submitResponse(stream, status: status, hasBody: hasBody)
    }

    /// Buffers response body bytes (and maybe the end) and wakes the stream.
    func provide(_ stream: Int32, _ bytes: [UInt8], isComplete: Bool, trailers: [(String, String)]? = nil) {
        bodies[stream, default: ([], false)].bytes += bytes
        bodies[stream]!.isComplete = isComplete
        if let trailers { self.trailers[stream] = trailers }
        session.resumeData(stream)
    }

    private func add(_ fields: [(String, String)], indexed: Bool = true) {
        for (name, value) in fields {
            Array(name.utf8).withUnsafeBytes { n in
                Array(value.utf8).withUnsafeBytes { v in session.addHeader(name: n, value: v, indexed: indexed) }
            }
        }
    }

    // MARK: What the session reported

    /// The request fields of `stream`, in order.
    func headers(_ stream: Int32) -> [(String, String)] {
        events.compactMap { if case .header(stream, let n, let v) = $0 { return (n, v) } else { return nil } }
    }

    /// The request body of `stream`, all chunks together.
    func body(_ stream: Int32) -> [UInt8] {
        events.flatMap { if case .data(stream, let bytes) = $0 { return bytes } else { return [] } }
    }

    /// How `stream` closed, or nil while it is open.
    func closeCode(_ stream: Int32) -> UInt32? {
        events.lazy.compactMap { if case .closed(stream, let code) = $0 { return code } else { return nil } }.first
    }

    func opened(_ stream: Int32) -> Bool { events.contains(.opened(stream)) }

    // MARK: H2SessionDelegate

    func h2StreamOpened(_ streamId: Int32) { events.append(.opened(streamId)) }

    func h2Header(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        events.append(.header(streamId, String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
    }

    func h2HeadersComplete(_ streamId: Int32, endStream: Bool) { events.append(.headersComplete(streamId, endStream: endStream)) }

    func h2Data(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) { events.append(.data(streamId, Array(bytes))) }

    func h2RequestEnded(_ streamId: Int32) { events.append(.ended(streamId)) }

    func h2StreamClosed(_ streamId: Int32, errorCode: UInt32) { events.append(.closed(streamId, errorCode: errorCode)) }

    func h2ReadResponseBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard var body = bodies[streamId], !body.bytes.isEmpty || body.isComplete else {
            deferredReads.insert(streamId)
            return nil
        }
        let n = min(buffer.count, body.bytes.count)
        buffer.copyBytes(from: body.bytes[..<n])
        body.bytes.removeFirst(n)
        bodies[streamId] = body
        return (n, body.isComplete && body.bytes.isEmpty)
    }

    func h2SubmitTrailers(_ streamId: Int32) -> Bool {
        guard let fields = trailers.removeValue(forKey: streamId) else { return false }
        session.beginHeaders()
        add(fields)
        session.submitTrailers(streamId)
        return true
    }
}
