// Protocol layer (SluiceHTTP2): one HTTP/2 server session over libnghttp2 — bytes in (`receive`), frames out into
// a ByteBuffer (`send`), events out to a delegate; no sockets and no routing. nghttp2's HTTP messaging checks stay on
// (RFC 9113 §8: pseudo-headers, connection-specific fields, content-length vs DATA), window updates are manual
// (the proxy grants window only for bytes the upstream took), and the attack limits of hardening.md §2.8 apply.
import CNGHTTP2
import SluiceIO

public enum H2ErrorCode: UInt32 {
    case noError = 0, protocolError = 1, internalError = 2, flowControlError = 3, refusedStream = 7, cancel = 8,
        enhanceYourCalm = 11
}

public final class H2Session {
    private var session: OpaquePointer?
    /// unowned(unsafe). Invariant: the delegate (H2Connection) owns the session and outlives it; it never feeds or
    /// drains the session from inside the session's callbacks (its isInSession guard). H2AttackTests under
    /// AddressSanitizer.
    unowned(unsafe) let delegate: any H2SessionDelegate
    let limits: H2Limits
    /// The header block being decoded (HEADERS + CONTINUATION are contiguous, so one block at a time per connection).
    private var blockBytes = 0
    private var blockFields = 0
    private var blockRefused = false
    /// Streams opened so far (for the per-connection cap) and RST_STREAM frames received in the current second.
    public private(set) var streamsOpened = 0
    private var resetWindowStart: Int64 = 0
    private var resetsInWindow = 0
    private var now: Int64 = 0
    /// Set when the session ended the connection itself (a flood, the stream cap): nothing more will be read.
    public private(set) var terminatedReason: StaticString?
    public private(set) var isGoingAway = false
    /// Where response header lists are put together: shared by the sessions of one thread (H2HeaderScratch).
    private let scratch: H2HeaderScratch
    private var headerBytes: ByteBuffer { scratch.bytes }
    private var headerOffsets: [(Int, Int, Int, Int, UInt8)] {
        get { scratch.offsets }
        _modify { yield &scratch.offsets }
    }
    private var nameValues: [nghttp2_nv] {
        get { scratch.nameValues }
        _modify { yield &scratch.nameValues }
    }

    /// `scratch`: one per thread, shared by its sessions (a session of its own when omitted).
    public init(delegate: any H2SessionDelegate, limits: H2Limits, scratch: H2HeaderScratch = H2HeaderScratch()) {
        self.delegate = delegate
        self.limits = limits
        self.scratch = scratch
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        // Never nghttp2_option_set_no_http_messaging: its checks are the RFC 9113 §8.2 downgrade rules (hardening.md §2.7).
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_no_closed_streams(option, 1)
        nghttp2_option_set_stream_reset_rate_limit(option, limits.streamResetBurst, limits.streamResetRate)
        nghttp2_option_set_max_continuations(option, limits.maxContinuations)
        nghttp2_option_set_max_settings(option, limits.maxSettings)
        nghttp2_option_set_max_outbound_ack(option, limits.maxOutboundAck)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 4096)
        nghttp2_option_set_max_send_header_block_length(option, 65_536)
        let rc = nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        precondition(rc == 0, "nghttp2_session_server_new2 failed (out of memory)")
        var settings: [nghttp2_settings_entry] = [
            entry(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams),
            entry(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits.initialWindowSize),
            entry(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, UInt32(limits.maxHeaderListBytes)),
            entry(NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
            entry(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096),
            entry(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1),
        ]
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, limits.connectionWindowSize)
    }

    deinit { nghttp2_session_del(session) }

    private func entry(_ id: nghttp2_settings_id, _ value: UInt32) -> nghttp2_settings_entry {
        nghttp2_settings_entry(settings_id: Int32(id.rawValue), value: value)
    }

    // MARK: Bytes in, bytes out

    /// Feeds client bytes; false when the connection must close (a protocol error nghttp2 could not answer).
    public func receive(_ bytes: UnsafeRawBufferPointer, now: Int64) -> Bool {
        guard bytes.count > 0 else { return true }
        self.now = now
        let n = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        if n >= 0 { return true }
        // Fatal for the connection. nghttp2 returns some of these without queueing a GOAWAY; the client still gets one.
        switch Int32(n) {
        case NGHTTP2_ERR_FLOODED.rawValue: terminate(.enhanceYourCalm, reason: "flood")
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue: terminate(.enhanceYourCalm, reason: "CONTINUATION flood")
        default: terminate(.protocolError, reason: "protocol error")
        }
        return false
    }

    /// Serialises pending frames into `out` until it holds `limit` bytes or nothing is pending; false on a fatal error.
    public func send(into out: ByteBuffer, limit: Int) -> Bool {
        while out.readableBytes < limit {
            var chunk: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &chunk)
            if n < 0 { return false }
            if n == 0 { return true }
            out.append(UnsafeRawBufferPointer(start: chunk, count: n))
        }
        return true
    }

    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    // MARK: Responses

    /// Starts a response header list; add fields with `addHeader`, then `submitResponse`.
    public func beginHeaders() {
        headerBytes.clear()
        headerOffsets.removeAll(keepingCapacity: true)
    }

    /// Adds a response field; the name is lower-cased (RFC 9113 §8.2.1). `indexed: false` for a value that differs
    /// on every response (a request id, a trace id): HPACK then sends it as a literal without indexing (RFC 7541
    /// §6.2.2) instead of inserting it into the dynamic table, where it would only evict the fields that do repeat
    /// (and cost nghttp2 an entry's allocation and copy per response).
    public func addHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, indexed: Bool = true) {
        let nameStart = headerBytes.readableBytes
        headerBytes.reserve(name.count)
        let room = headerBytes.writable
        for i in 0..<name.count {  // into the free room directly: an append per byte checked the room every time
            let b = name[i]
            room[i] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
        }
        headerBytes.commit(name.count)
        let valueStart = headerBytes.readableBytes
        headerBytes.append(value)
        headerOffsets.append((nameStart, name.count, valueStart, value.count,
                              UInt8(indexed ? NGHTTP2_NV_FLAG_NONE.rawValue : NGHTTP2_NV_FLAG_NO_INDEX.rawValue)))
    }

    public func addHeader(name: StaticString, value: UnsafeRawBufferPointer, indexed: Bool = true) {
        addHeader(name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), value: value, indexed: indexed)
    }

    /// Submits `:status` and the fields added since `beginHeaders`; with `hasBody` the body is pulled through
    /// `h2ReadResponseBody` (deferred while nothing is buffered).
    public func submitResponse(_ streamId: Int32, status: Int, hasBody: Bool) {
        var statusText: (UInt8, UInt8, UInt8) = (UInt8(48 + status / 100 % 10), UInt8(48 + status / 10 % 10), UInt8(48 + status % 10))
        nameValues.removeAll(keepingCapacity: true)
        let base = headerBytes.readable.baseAddress
        let statusName: StaticString = ":status"
        withUnsafeMutableBytes(of: &statusText) { status in
            nameValues.append(nghttp2_nv(name: UnsafeMutablePointer(mutating: statusName.utf8Start), value: status.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                         namelen: 7, valuelen: 3, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
            for (n, nl, v, vl, flags) in headerOffsets {
                let p = UnsafeMutablePointer(mutating: base!.assumingMemoryBound(to: UInt8.self))
                nameValues.append(nghttp2_nv(name: p + n, value: p + v, namelen: nl, valuelen: vl, flags: flags))
            }
            // nghttp2 copies the fields during the call, so the scratch can be reused at once.
            if hasBody {
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readResponseBody)
                _ = nghttp2_submit_response(session, streamId, nameValues, nameValues.count, &provider)
            } else {
                _ = nghttp2_submit_response(session, streamId, nameValues, nameValues.count, nil)
            }
        }
    }

    /// Submits the fields added since `beginHeaders` as the response's trailers (ending the stream); call from
    /// `h2SubmitTrailers`.
    public func submitTrailers(_ streamId: Int32) {
        nameValues.removeAll(keepingCapacity: true)
        let base = headerBytes.readable.baseAddress
        for (n, nl, v, vl, flags) in headerOffsets {
            let p = UnsafeMutablePointer(mutating: base!.assumingMemoryBound(to: UInt8.self))
            nameValues.append(nghttp2_nv(name: p + n, value: p + v, namelen: nl, valuelen: vl, flags: flags))
        }
        _ = nghttp2_submit_trailer(session, streamId, nameValues, nameValues.count)
    }

    /// More response body is buffered (or its end): wake a deferred stream.
    public func resumeData(_ streamId: Int32) {
        _ = nghttp2_session_resume_data(session, streamId)
    }

    public func resetStream(_ streamId: Int32, _ code: H2ErrorCode) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamId, code.rawValue)
    }

    /// Grants `count` bytes of window back to the client (stream and connection): the upstream took them.
    public func consume(_ streamId: Int32, _ count: Int) {
        guard count > 0 else { return }
        _ = nghttp2_session_consume(session, streamId, count)
    }

    // MARK: Ending the connection

    /// Graceful shutdown, first step: GOAWAY with last-stream-id 2^31-1 (RFC 9113 §6.8).
    public func announceShutdown() {
        guard !isGoingAway else { return }
        isGoingAway = true
        _ = nghttp2_submit_shutdown_notice(session)
    }

    /// Graceful shutdown, second step (a round trip later): GOAWAY with the last stream we will process.
    public func goAway() {
        isGoingAway = true
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                                  H2ErrorCode.noError.rawValue, nil, 0)
    }

    /// Ends the connection at once with GOAWAY `code` (floods); pending frames are still sent.
    public func terminate(_ code: H2ErrorCode, reason: StaticString) {
        if terminatedReason == nil { terminatedReason = reason }
        isGoingAway = true
        _ = nghttp2_session_terminate_session(session, code.rawValue)
    }

    // MARK: Callback bodies

    fileprivate func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        blockBytes = 0
        blockFields = 0
        blockRefused = false
        if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
            delegate.h2StreamOpened(frame.pointee.hd.stream_id)
        }
        return 0
    }

    fileprivate func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Int32 {
        // HPACK bomb: count what the decoder produced, as RFC 9113 §6.5.2 sizes it (name + value + 32).
        blockBytes += name.count + value.count + 32
        blockFields += 1
        if blockBytes > limits.maxHeaderListBytes || blockFields > limits.maxHeaderCount {
            // TEMPORAL_CALLBACK_FAILURE: nghttp2 resets this stream and keeps the connection (and HPACK state).
            blockRefused = true
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
            delegate.h2Header(frame.pointee.hd.stream_id, name: name, value: value)
        }
        return 0
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(hd.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            if blockRefused { return 0 }
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                streamsOpened += 1
                delegate.h2HeadersComplete(hd.stream_id, endStream: endStream)
                if streamsOpened == limits.maxStreamsPerConnection && !isGoingAway {
                    // Renew the connection: this stream is the last one it serves (graceful, RFC 9113 §6.8).
                    isGoingAway = true
                    _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), hd.stream_id, H2ErrorCode.noError.rawValue, nil, 0)
                }
            } else if endStream {
                delegate.h2RequestEnded(hd.stream_id)
            }
        case Int(NGHTTP2_DATA.rawValue):
            if endStream { delegate.h2RequestEnded(hd.stream_id) }
        case Int(NGHTTP2_RST_STREAM.rawValue):
            // CVE-2023-44487 on top of nghttp2's own token bucket: a client resetting too fast loses the connection.
            if now - resetWindowStart >= 1000 {
                resetWindowStart = now
                resetsInWindow = 0
            }
            resetsInWindow += 1
            if resetsInWindow > limits.maxResetsPerSecond {
                terminate(.enhanceYourCalm, reason: "rapid reset")
            }
        default:
            break
        }
        return 0
    }
}

// nghttp2 calls C function pointers; these forward to the session found through user_data (no captures, no allocation).

private func session(_ userData: UnsafeMutableRawPointer?) -> H2Session {
    Unmanaged<H2Session>.fromOpaque(userData!).takeUnretainedValue()
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    session(userData).beginHeaders(frame!)
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    session(userData).header(frame!, UnsafeRawBufferPointer(start: name, count: nameLength), UnsafeRawBufferPointer(start: value, count: valueLength))
}

private let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    session(userData).frameReceived(frame!)
}

private let onDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamId, data, length, userData in
    session(userData).delegate.h2Data(streamId, UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, streamId, errorCode, userData in
    session(userData).delegate.h2StreamClosed(streamId, errorCode: errorCode)
    return 0
}

private let readResponseBody: nghttp2_data_source_read_callback = { _, streamId, buffer, length, dataFlags, _, userData in
    guard let read = session(userData).delegate.h2ReadResponseBody(streamId, into: UnsafeMutableRawBufferPointer(start: buffer, count: length)) else {
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
    if read.isEnd {
        dataFlags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
        if session(userData).delegate.h2SubmitTrailers(streamId) { dataFlags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue) }
    }
    return read.count
}

/// Response header scratch, reused by every response: bytes, then name/value offsets, then the nghttp2 vector. A
/// response's list is built and submitted in one go (`beginHeaders` … `submitResponse` or `submitTrailers`, and
/// nghttp2 copies the fields during the submit), so the sessions of one thread share one scratch: an idle HTTP/2
/// connection holds none of its 6.6 KB. Never shared between threads.
public final class H2HeaderScratch {
    let bytes = ByteBuffer(capacity: 4096)
    var offsets: [(Int, Int, Int, Int, UInt8)] = []
    var nameValues: [nghttp2_nv] = []

    public init() {
        offsets.reserveCapacity(32)
        nameValues.reserveCapacity(32)
    }
}
