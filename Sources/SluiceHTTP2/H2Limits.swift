// Protocol layer (SluiceHTTP2): the limits of one HTTP/2 server session — nghttp2 options, the SETTINGS we send,
// and the limits nghttp2 does not enforce itself (hardening.md §2.8).

public struct H2Limits: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    public var maxConcurrentStreams: UInt32 = 100
    /// SETTINGS_INITIAL_WINDOW_SIZE: the per-stream receive window, and so what one stream can make us buffer.
    public var initialWindowSize: UInt32 = 65_535
    /// The connection receive window, raised by a WINDOW_UPDATE after the preface.
    public var connectionWindowSize: Int32 = 1 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE advertised; also our own cap on decoded header bytes (name + value + 32 each).
    public var maxHeaderListBytes: Int = 65_536
    /// Our own cap on decoded fields per header block (HPACK bomb: counted in on_header, not trusted to the peer).
    public var maxHeaderCount: Int = 100
    /// nghttp2_option_set_stream_reset_rate_limit (CVE-2023-44487): token bucket burst and rate per second.
    public var streamResetBurst: UInt64 = 1000
    public var streamResetRate: UInt64 = 33
    /// Our own rapid-reset cap: more RST_STREAM frames than this from the client within one second ends the connection.
    public var maxResetsPerSecond: Int = 200
    /// nghttp2_option_set_max_continuations (CONTINUATION flood).
    public var maxContinuations: Int = 8
    /// nghttp2_option_set_max_settings (SETTINGS flood).
    public var maxSettings: Int = 32
    /// nghttp2_option_set_max_outbound_ack (PING and SETTINGS ack floods).
    public var maxOutboundAck: Int = 1000
    /// Streams one connection may open in its life; then a graceful GOAWAY (HAProxy `max-total-streams`).
    public var maxStreamsPerConnection: Int = 1000

    public init() {}
}
