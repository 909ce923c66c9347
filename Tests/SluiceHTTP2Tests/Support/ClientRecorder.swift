// Test support: an H2ClientSessionDelegate that owns its H2ClientSession (as an upstream connection does), records
// every callback in order, and serves request bodies the test provides.
import SluiceHTTP2

final class ClientRecorder: H2ClientSessionDelegate {
    enum Event: Equatable {
        case header(Int32, String, String, isTrailer: Bool)
        case headersComplete(Int32, isTrailer: Bool, endStream: Bool)
        case data(Int32, [UInt8])
        case dataEnded(Int32)
        case closed(Int32, errorCode: UInt32)
        case goAway
    }

    private(set) var events: [Event] = []
    private(set) var session: H2ClientSession!
    /// Request bodies not yet taken by nghttp2, and whether their end is known.
    private var bodies: [Int32: (bytes: [UInt8], isComplete: Bool)] = [:]

    init() {
        session = H2ClientSession(delegate: self)
    }

    /// Submits a request (pseudo-headers first, as given); with `body` the DATA stream follows.
    @discardableResult
    func request(_ fields: [(String, String)], body: [UInt8]? = nil, isComplete: Bool = true) -> Int32 {
        // One scratch array holding every name and value; the buffers are valid during the call (nghttp2 copies).
        var bytes: [UInt8] = []
        var ranges: [(Range<Int>, Range<Int>)] = []
        for (name, value) in fields {
            let n = bytes.count..<bytes.count + name.utf8.count
            bytes += Array(name.utf8)
            let v = bytes.count..<bytes.count + value.utf8.count
            bytes += Array(value.utf8)
            ranges.append((n, v))
        }
        bytes.append(0)
        let id = bytes.withUnsafeBytes { scratch in
            session.submitRequest(ranges.map { (UnsafeRawBufferPointer(rebasing: scratch[$0.0]), UnsafeRawBufferPointer(rebasing: scratch[$0.1])) },
                                  hasBody: body != nil)
        }
        if id > 0, let body { bodies[id] = (body, isComplete) }
        return id
    }

    func provide(_ stream: Int32, _ bytes: [UInt8], isComplete: Bool) {
        bodies[stream, default: ([], false)].bytes += bytes
        bodies[stream]!.isComplete = isComplete
        session.resumeData(stream)
    }

    // MARK: What the session reported

    func body(_ stream: Int32) -> [UInt8] {
        events.flatMap { if case .data(stream, let bytes) = $0 { return bytes } else { return [] } }
    }

    func fields(_ stream: Int32, trailers: Bool) -> [String] {
        events.compactMap { if case .header(stream, let n, let v, trailers) = $0 { return "\(n)=\(v)" } else { return nil } }
    }

    func closeCode(_ stream: Int32) -> UInt32? {
        events.lazy.compactMap { if case .closed(stream, let code) = $0 { return code } else { return nil } }.first
    }

    // MARK: H2ClientSessionDelegate

    func h2cHeader(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isTrailer: Bool) {
        events.append(.header(streamId, String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self), isTrailer: isTrailer))
    }

    func h2cHeadersComplete(_ streamId: Int32, isTrailer: Bool, endStream: Bool) {
        events.append(.headersComplete(streamId, isTrailer: isTrailer, endStream: endStream))
    }

    func h2cData(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) { events.append(.data(streamId, Array(bytes))) }

    func h2cDataEnded(_ streamId: Int32) { events.append(.dataEnded(streamId)) }

    func h2cStreamClosed(_ streamId: Int32, errorCode: UInt32) { events.append(.closed(streamId, errorCode: errorCode)) }

    func h2cReadRequestBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard var body = bodies[streamId], !body.bytes.isEmpty || body.isComplete else { return nil }
        let n = min(buffer.count, body.bytes.count)
        buffer.copyBytes(from: body.bytes[..<n])
        body.bytes.removeFirst(n)
        bodies[streamId] = body
        return (n, body.isComplete && body.bytes.isEmpty)
    }

    func h2cGoAway() { events.append(.goAway) }
}
