// Fuzzing (Tests/Fuzz): an H2SessionDelegate that behaves like the gateway's H2Connection — it owns its session,
// accepts every stream, answers after each receive (as the gateway routes then), gives window back one receive
// later (as an upstream takes bytes), streams bodies with deferral, ends gRPC-like answers with trailers, refuses
// some streams and drains the connection — and records every rule a callback sequence broke.
import SluiceHTTP2

final class H2FuzzConnection: H2SessionDelegate {
    struct Stream {
        var fields = 0
        var fieldBytes = 0
        var sawRegularField = false
        var method: [UInt8]?
        var hasPath = false
        var hasScheme = false
        var headersComplete = false
        var requestEnded = false
        var isAnswered = false
        /// Request body bytes delivered and not yet given back (consumed).
        var held = 0
        /// Response body: bytes still to serve, and how many of them may be served now (the rest has not come from
        /// the pod yet).
        var bodyLeft = 0
        var bodyReady = 0
        var hasTrailers = false
    }

    let limits: H2Limits
    private(set) var session: H2Session!
    private(set) var streams: [Int32: Stream] = [:]
    private(set) var closed: Set<Int32> = []
    private var lastOpened: Int32 = 0
    /// Heads completed during the current receive: answered after it, as the gateway routes them.
    private var ready: [Int32] = []
    /// Request body bytes held by all streams (the connection window's share).
    private var heldOnConnection = 0
    /// The first rule broken inside a callback (callbacks cannot throw).
    private(set) var violation: FuzzViolation?
    private var rounds = 0

    /// What the gateway's answers carry, sliced per response.
    static let body: [UInt8] = Array(repeating: 0x61, count: 40_000)

    init(limits: H2Limits) {
        self.limits = limits
        session = H2Session(delegate: self, limits: limits)
    }

    private func broke(_ message: @autoclosure () -> String) {
        if violation == nil { violation = FuzzViolation(message()) }
    }

    /// After each receive: what the gateway does between reads — answer routed streams, release held body bytes,
    /// let deferred bodies continue, and after a few streams drain the connection.
    func afterReceive() {
        rounds += 1
        for id in streams.keys.sorted() {
            guard var stream = streams[id] else { continue }
            if stream.held > 0 {
                session.consume(id, stream.held)
                heldOnConnection -= stream.held
                stream.held = 0
            }
            if stream.bodyReady == 0 && stream.bodyLeft > 0 {
                stream.bodyReady = stream.bodyLeft
                streams[id] = stream
                session.resumeData(id)
            } else {
                streams[id] = stream
            }
        }
        for id in ready where streams[id] != nil && !closed.contains(id) { answer(id) }
        ready.removeAll()
        // The two-step GOAWAY of a draining gateway (RFC 9113 §6.8): a notice, then the last stream a few reads later.
        if session.streamsOpened >= 6 && !session.isGoingAway {
            session.announceShutdown()
        } else if session.isGoingAway && rounds % 4 == 0 {
            session.goAway()
        }
    }

    /// The answer depends on the stream id only, so that every kind is reached by short inputs.
    private func answer(_ id: Int32) {
        guard var stream = streams[id] else { return }
        stream.isAnswered = true
        switch id % 16 {
        case 1, 9:  // a model's JSON answer, all of it at once
            stream.bodyLeft = 300
            stream.bodyReady = 300
            streams[id] = stream
            respond(id, status: 200, hasBody: true)
        case 3, 11:  // a long answer that arrives from the pod in two parts (deferred in between)
            stream.bodyLeft = 20_000
            stream.bodyReady = 10_000
            streams[id] = stream
            respond(id, status: 200, hasBody: true)
        case 5:  // gRPC: a message, then grpc-status in trailers
            stream.bodyLeft = 17
            stream.bodyReady = 17
            stream.hasTrailers = true
            streams[id] = stream
            respond(id, status: 200, hasBody: true)
        case 7:  // no route, answered without a body
            streams[id] = stream
            respond(id, status: 404, hasBody: false)
        case 13:  // the pod's connection failed: the gateway resets
            streams[id] = stream
            session.resetStream(id, .internalError)
        default:  // containerConcurrency queue full
            streams[id] = stream
            session.resetStream(id, .refusedStream)
        }
    }

    private func respond(_ id: Int32, status: Int, hasBody: Bool) {
        session.beginHeaders()
        let type: StaticString = "application/json"
        session.addHeader(name: "content-type", value: UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount))
        let revision: StaticString = "model-00001"
        session.addHeader(name: "Sluice-Revision", value: UnsafeRawBufferPointer(start: revision.utf8Start, count: revision.utf8CodeUnitCount))
        session.submitResponse(id, status: status, hasBody: hasBody)
    }

    // MARK: H2SessionDelegate

    func h2StreamOpened(_ streamId: Int32) {
        // RFC 9113 §5.1.1: client streams are odd and increase.
        if streamId <= 0 || streamId % 2 == 0 || streamId <= lastOpened { broke("stream \(streamId) opened after \(lastOpened)") }
        lastOpened = max(lastOpened, streamId)
        streams[streamId] = Stream()
    }

    func h2Header(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard var stream = streams[streamId], !closed.contains(streamId) else { return broke("field on stream \(streamId), not open") }
        if stream.headersComplete { return broke("field on stream \(streamId) after its head") }
        stream.fields += 1
        stream.fieldBytes += name.count + value.count + 32
        // Sluice's own HPACK-bomb cap, not the peer's word (hardening.md §2.8).
        if stream.fields > limits.maxHeaderCount || stream.fieldBytes > limits.maxHeaderListBytes {
            broke("stream \(streamId): \(stream.fields) fields, \(stream.fieldBytes) bytes delivered past the caps")
        }
        // RFC 9113 §8.2.1, §8.3: lower-case names, pseudo-headers first, :method once (nghttp2's messaging checks).
        if name.isEmpty || name.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { broke("stream \(streamId): field name not lower-case") }
        if name.first == 0x3A {
            if stream.sawRegularField { broke("stream \(streamId): pseudo-header after a regular field") }
            if name.elementsEqual(":method".utf8) {
                if stream.method != nil { broke("stream \(streamId): two :method") }
                stream.method = Array(value)
            }
            if name.elementsEqual(":path".utf8) { stream.hasPath = true }
            if name.elementsEqual(":scheme".utf8) { stream.hasScheme = true }
        } else {
            stream.sawRegularField = true
        }
        streams[streamId] = stream
    }

    func h2HeadersComplete(_ streamId: Int32, endStream: Bool) {
        guard var stream = streams[streamId], !closed.contains(streamId) else { return broke("head of stream \(streamId), not open") }
        if stream.headersComplete { return broke("second head on stream \(streamId)") }
        if stream.method == nil || (stream.method != Array("CONNECT".utf8) && !(stream.hasPath && stream.hasScheme)) {
            broke("stream \(streamId): head without its pseudo-headers")
        }
        stream.headersComplete = true
        stream.requestEnded = endStream
        streams[streamId] = stream
        ready.append(streamId)
    }

    func h2Data(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) {
        guard var stream = streams[streamId], !closed.contains(streamId) else {
            // A stream the gateway already dropped: the window goes back at once.
            session.consume(streamId, bytes.count)
            return broke("data on stream \(streamId), not open")
        }
        if !stream.headersComplete || stream.requestEnded { broke("data on stream \(streamId) outside its body") }
        stream.held += bytes.count
        heldOnConnection += bytes.count
        // Window updates are manual: nothing beyond what was granted may arrive (RFC 9113 §6.9).
        if stream.held > Int(limits.initialWindowSize) { broke("stream \(streamId) holds \(stream.held) bytes, window \(limits.initialWindowSize)") }
        if heldOnConnection > Int(limits.connectionWindowSize) { broke("connection holds \(heldOnConnection) bytes, window \(limits.connectionWindowSize)") }
        streams[streamId] = stream
    }

    func h2RequestEnded(_ streamId: Int32) {
        guard var stream = streams[streamId], !closed.contains(streamId) else { return broke("end of stream \(streamId), not open") }
        if !stream.headersComplete || stream.requestEnded { broke("stream \(streamId) ended twice or before its head") }
        stream.requestEnded = true
        streams[streamId] = stream
    }

    func h2StreamClosed(_ streamId: Int32, errorCode: UInt32) {
        if closed.contains(streamId) { return broke("stream \(streamId) closed twice") }
        // A refused or ignored stream may close without having opened; the gateway ignores it as we do.
        guard let stream = streams.removeValue(forKey: streamId) else { return }
        heldOnConnection -= stream.held
        if stream.held > 0 { session.consume(streamId, stream.held) }
        closed.insert(streamId)
    }

    func h2ReadResponseBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard var stream = streams[streamId], stream.isAnswered else {
            broke("body read for stream \(streamId), which has no answer with a body")
            return (0, true)
        }
        // Nothing from the pod yet: nghttp2 defers the stream until resumeData.
        if stream.bodyReady == 0 && stream.bodyLeft > 0 { return nil }
        let n = min(buffer.count, stream.bodyReady)
        Self.body.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        stream.bodyLeft -= n
        stream.bodyReady -= n
        streams[streamId] = stream
        return (n, stream.bodyLeft == 0)
    }

    func h2SubmitTrailers(_ streamId: Int32) -> Bool {
        guard let stream = streams[streamId], stream.hasTrailers else { return false }
        session.beginHeaders()
        let zero: StaticString = "0"
        session.addHeader(name: "grpc-status", value: UnsafeRawBufferPointer(start: zero.utf8Start, count: 1))
        session.submitTrailers(streamId)
        return true
    }
}

extension H2FuzzConnection {
    /// Whether `streamId` was ever reported opened (still open or closed since).
    func wasOpened(_ streamId: Int32) -> Bool { streams[streamId] != nil || closed.contains(streamId) }
}
