// Proxy layer: one gRPC call relayed from a downstream H2Stream onto a stream of an H2UpstreamConnection.
// Request DATA is pulled from the H2Stream as nghttp2 frames it (the client's window is granted only then); response
// DATA goes to the H2Stream's buffer and the pod's window is granted only as the client takes it. Response headers
// and trailers (grpc-status, grpc-message) are collected here and handed over whole.
import SluiceHTTP1
import SluiceHTTP2
import SluiceIO
import SluiceRouting

final class H2UpstreamStream {
    /// unowned(unsafe): the H2Stream owns this object and clears the link (cancel) before it goes away; the
    /// connection keeps a cancelled stream until nghttp2 closes it (later, when it was still connecting), and then
    /// finds the link cleared. PoolLifetimeTests (a call cancelled while connecting) breaks this under ASan.
    unowned(unsafe) var downstream: H2Stream?
    let connection: H2UpstreamConnection
    /// Strong, though the worker keeps retired pools alive for their connections anyway: a stream may outlive its
    /// connection's end-of-tick task by a tick (its H2Stream lets go of it later), and it still counts outstanding.
    let pool: ConnectionPool
    let revision: Revision
    var streamId: Int32 = -1
    private(set) var responseStarted = false
    private(set) var responseEnded = false
    private var isOutstanding = true
    /// Response bytes received and not yet granted back to the pod (held for the client).
    private var unconsumed = 0
    /// Field bytes of the header block being received, and (name, value) spans into them.
    let fieldBytes: ByteBuffer
    private(set) var fields: [(name: ByteSpan, value: ByteSpan)] = []
    private(set) var status = 0

    init(downstream: H2Stream, connection: H2UpstreamConnection, pool: ConnectionPool, revision: Revision) {
        self.downstream = downstream
        self.connection = connection
        self.pool = pool
        self.revision = revision
        fieldBytes = pool.worker.buffers.take()
        pool.outstanding += 1
    }

    var isConnecting: Bool { connection.state == .connecting }

    // MARK: From the downstream

    func requestBodyAvailable() {
        connection.resumeData(streamId)
    }

    /// The client took `count` response bytes.
    func responseTaken(_ count: Int) {
        let n = min(count, unconsumed)
        guard n > 0 else { return }
        unconsumed -= n
        connection.consume(streamId, n)
    }

    /// Gives back the window of response bytes handed to the client's stream and not yet taken: the pod's stream
    /// is over (or abandoned), and unconsumed bytes would shrink the whole connection's window for good.
    func releaseWindow() {
        guard unconsumed > 0 else { return }
        let n = unconsumed
        unconsumed = 0
        connection.consume(streamId, n)
    }

    /// The client reset the stream or the gateway gave up on it: reset the pod's stream at once.
    func cancel() {
        releaseWindow()
        downstream = nil
        finishOutstanding()
        if !responseEnded { connection.cancel(streamId, code: .cancel) }
    }

    // MARK: From the connection

    func connected() {
        downstream?.upstreamConnected()
    }

    func readRequestBody(into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        guard let downstream else { return (0, true) }
        return downstream.pullGRPCRequestBody(into: buffer)
    }

    func header(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isTrailer: Bool) {
        if !isTrailer, name.count == 7, name.first == 0x3A {  // ":status" (nghttp2 validated it: 3 digits)
            status = Int(value[0] &- 0x30) * 100 + Int(value[1] &- 0x30) * 10 + Int(value[2] &- 0x30)
            return
        }
        let nameSpan = ByteSpan(start: fieldBytes.readableBytes, count: name.count)
        fieldBytes.append(name)
        let valueSpan = ByteSpan(start: fieldBytes.readableBytes, count: value.count)
        fieldBytes.append(value)
        fields.append((nameSpan, valueSpan))
    }

    func headersComplete(isTrailer: Bool, endStream: Bool) {
        defer {
            fieldBytes.clear()
            fields.removeAll(keepingCapacity: true)
        }
        if status < 200 && !isTrailer { status = 0; return }  // 1xx: not relayed
        if endStream { responseEnded = true; finishOutstanding() }
        guard let downstream else { return }
        if isTrailer {
            downstream.grpcResponseTrailers(self)
        } else {
            responseStarted = true
            downstream.grpcResponseHead(self, status: status, endStream: endStream)
        }
    }

    func data(_ bytes: UnsafeRawBufferPointer) {
        unconsumed += bytes.count
        downstream?.grpcResponseData(bytes)
    }

    func ended() {
        responseEnded = true
        finishOutstanding()
        downstream?.grpcResponseEnded()
    }

    func closed(errorCode: UInt32) {
        finishOutstanding()
        pool.worker.buffers.give(fieldBytes)
        guard let downstream, !responseEnded else { return }
        // REFUSED_STREAM: the pod did not process it (RFC 9113 §8.7), so it may go again.
        downstream.grpcUpstreamFailed(self, errorCode: errorCode, connectFailed: false,
                                      mayRetry: errorCode == H2ErrorCode.refusedStream.rawValue)
    }

    /// `wasReused`: the connection had served streams before; a failure before any answer is then most likely the
    /// pod closing an idle connection as the stream started (the same race the HTTP/1.1 exchange retries).
    func connectionFailed(neverConnected: Bool, wasReused: Bool) {
        finishOutstanding()
        pool.worker.buffers.give(fieldBytes)
        guard let downstream, !responseEnded else { return }
        downstream.grpcUpstreamFailed(self, errorCode: H2ErrorCode.cancel.rawValue, connectFailed: neverConnected,
                                      mayRetry: (wasReused || neverConnected) && !responseStarted)
    }

    private func finishOutstanding() {
        if isOutstanding { pool.outstanding -= 1; isOutstanding = false }
    }
}
