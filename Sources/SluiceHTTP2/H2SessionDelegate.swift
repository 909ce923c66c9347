// Protocol layer (SluiceHTTP2): what an H2Session reports to the connection that owns it.

/// What a session reports. Called from inside `receive` and `send`; the delegate must not call `receive` or `send`
/// from a callback (submitting, resuming, consuming and resetting are fine).
public protocol H2SessionDelegate: AnyObject {
    /// A request header block begins on a new stream.
    func h2StreamOpened(_ streamId: Int32)
    /// One decoded request field (pseudo-headers first; names are lower-case, values validated by nghttp2).
    func h2Header(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    /// The request head is complete; `endStream` when the request has no body.
    func h2HeadersComplete(_ streamId: Int32, endStream: Bool)
    /// Request body bytes (valid only during the call). They count against flow control until `consume`.
    func h2Data(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer)
    /// The request body ended (END_STREAM on DATA or on trailers; request trailers are not relayed).
    func h2RequestEnded(_ streamId: Int32)
    /// The stream is closed; `errorCode` is the RST_STREAM code (0 after a normal end).
    func h2StreamClosed(_ streamId: Int32, errorCode: UInt32)
    /// Copies response body bytes into `buffer`: the count and whether the body ends there, or nil when nothing is
    /// buffered yet (the stream is deferred until `resumeData`).
    func h2ReadResponseBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)?
    /// The response body of `streamId` just ended: true when the delegate submitted trailers (`submitTrailers`)
    /// during this call, so that the last DATA frame does not carry END_STREAM.
    func h2SubmitTrailers(_ streamId: Int32) -> Bool
}

extension H2SessionDelegate {
    public func h2SubmitTrailers(_ streamId: Int32) -> Bool { false }
}
