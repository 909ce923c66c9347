// Protocol layer (SluiceHTTP2): the client side of HTTP/2 on nghttp2 (h2c by prior knowledge toward a pod),
// bytes in and bytes out like H2Session, with manual flow control: the window reopens only as `consume` says.
import CNGHTTP2
import SluiceIO

/// What a client session reports. Called from inside `receive` and `send`; the delegate must not call `receive` or
/// `send` from a callback (submitting, resuming, consuming and resetting are fine).
public protocol H2ClientSessionDelegate: AnyObject {
    /// One response field of `streamId` (pseudo-headers first); `isTrailer` for the trailer block.
    func h2cHeader(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isTrailer: Bool)
    /// A header block ended (`isTrailer`: the trailers; `endStream`: the response ends with it).
    func h2cHeadersComplete(_ streamId: Int32, isTrailer: Bool, endStream: Bool)
    /// Response body bytes; they count against flow control until `consume`.
    func h2cData(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer)
    /// END_STREAM on a DATA frame.
    func h2cDataEnded(_ streamId: Int32)
    /// The stream closed; `errorCode` 0 after a normal end, else the RST_STREAM (or GOAWAY) code.
    func h2cStreamClosed(_ streamId: Int32, errorCode: UInt32)
    /// Copies request body bytes: count and end, or nil when nothing is at hand (deferred until `resumeData`).
    func h2cReadRequestBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)?
    /// The peer sent GOAWAY: no new streams on this connection.
    func h2cGoAway()
}

public final class H2ClientSession {
    private var session: OpaquePointer?
    /// unowned(unsafe). Invariant: the delegate (H2UpstreamConnection) owns the session and never frees it from inside
    /// one of its callbacks (close is deferred to the end of the tick: PoolLifetimeTests under AddressSanitizer).
    unowned(unsafe) let delegate: any H2ClientSessionDelegate
    private var nameValues: [nghttp2_nv] = []
    private var isGoingAway = false
    /// Per-stream receive window (and 16× that for the connection).
    public static let streamWindow: Int32 = 65_535

    public init(delegate: any H2ClientSessionDelegate) {
        self.delegate = delegate
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnStreamClose)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_no_closed_streams(option, 1)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 4096)
        let rc = nghttp2_session_client_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        precondition(rc == 0, "nghttp2_session_client_new2 failed (out of memory)")
        var settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(Self.streamWindow)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: 65_536),
        ]
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 16 * Self.streamWindow)
    }

    deinit { nghttp2_session_del(session) }

    // MARK: Bytes in, bytes out

    /// Feeds the pod's bytes; false when the connection must close.
    public func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 0 else { return true }
        return nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count) >= 0
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

    /// The pod's SETTINGS_MAX_CONCURRENT_STREAMS (nghttp2 assumes 100 until the pod says otherwise).
    public var maxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }

    public var receivedGoAway: Bool { isGoingAway }

    // MARK: Requests

    /// Submits a request: `fields` are (name, value) buffers valid during the call (nghttp2 copies them), pseudo-headers
    /// first. With `hasBody` the body is pulled through `h2cReadRequestBody`. Returns the stream id, or a negative error.
    public func submitRequest(_ fields: [(UnsafeRawBufferPointer, UnsafeRawBufferPointer)], hasBody: Bool) -> Int32 {
        nameValues.removeAll(keepingCapacity: true)
        for (name, value) in fields {
            nameValues.append(nghttp2_nv(name: UnsafeMutablePointer(mutating: name.baseAddress!.assumingMemoryBound(to: UInt8.self)),
                                         value: UnsafeMutablePointer(mutating: (value.baseAddress ?? name.baseAddress!).assumingMemoryBound(to: UInt8.self)),
                                         namelen: name.count, valuelen: value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
        }
        if hasBody {
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: clientReadRequestBody)
            return nghttp2_submit_request(session, nil, nameValues, nameValues.count, &provider, nil)
        }
        return nghttp2_submit_request(session, nil, nameValues, nameValues.count, nil, nil)
    }

    /// More request body is at hand (or its end): wake a deferred stream.
    public func resumeData(_ streamId: Int32) {
        _ = nghttp2_session_resume_data(session, streamId)
    }

    public func resetStream(_ streamId: Int32, _ code: H2ErrorCode) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamId, code.rawValue)
    }

    /// Grants `count` bytes of window back to the pod (stream and connection): the client took them.
    public func consume(_ streamId: Int32, _ count: Int) {
        guard count > 0 else { return }
        _ = nghttp2_session_consume(session, streamId, count)
    }

    /// Ends the connection politely (GOAWAY NO_ERROR).
    public func goAway() {
        _ = nghttp2_session_terminate_session(session, H2ErrorCode.noError.rawValue)
    }

    // MARK: Callback bodies

    fileprivate func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Int32 {
        guard frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
        let category = frame.pointee.headers.cat
        if category == NGHTTP2_HCAT_RESPONSE {
            delegate.h2cHeader(frame.pointee.hd.stream_id, name: name, value: value, isTrailer: false)
        } else if category == NGHTTP2_HCAT_HEADERS {
            delegate.h2cHeader(frame.pointee.hd.stream_id, name: name, value: value, isTrailer: true)
        }
        return 0
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(hd.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            let category = frame.pointee.headers.cat
            if category == NGHTTP2_HCAT_RESPONSE {
                delegate.h2cHeadersComplete(hd.stream_id, isTrailer: false, endStream: endStream)
            } else if category == NGHTTP2_HCAT_HEADERS {
                delegate.h2cHeadersComplete(hd.stream_id, isTrailer: true, endStream: endStream)
            }
        case Int(NGHTTP2_DATA.rawValue):
            if endStream { delegate.h2cDataEnded(hd.stream_id) }
        case Int(NGHTTP2_GOAWAY.rawValue):
            isGoingAway = true
            delegate.h2cGoAway()
        default:
            break
        }
        return 0
    }
}

private func clientSession(_ userData: UnsafeMutableRawPointer?) -> H2ClientSession {
    Unmanaged<H2ClientSession>.fromOpaque(userData!).takeUnretainedValue()
}

private let clientOnHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    clientSession(userData).header(frame!, UnsafeRawBufferPointer(start: name, count: nameLength), UnsafeRawBufferPointer(start: value, count: valueLength))
}

private let clientOnFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    clientSession(userData).frameReceived(frame!)
}

private let clientOnDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamId, data, length, userData in
    clientSession(userData).delegate.h2cData(streamId, UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private let clientOnStreamClose: nghttp2_on_stream_close_callback = { _, streamId, errorCode, userData in
    clientSession(userData).delegate.h2cStreamClosed(streamId, errorCode: errorCode)
    return 0
}

private let clientReadRequestBody: nghttp2_data_source_read_callback = { _, streamId, buffer, length, dataFlags, _, userData in
    guard let read = clientSession(userData).delegate.h2cReadRequestBody(streamId, into: UnsafeMutableRawBufferPointer(start: buffer, count: length)) else {
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
    if read.isEnd { dataFlags!.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
    return read.count
}
