// Proxy layer: the observability knobs — metrics, access log, trace context — as plain values (config: metrics:,
// accessLog:, tracing:).

/// `/metrics` on the admin listener, and optionally on a listener of its own.
public struct MetricsSettings: Hashable, Sendable {
    /// A metrics-only listener (GET /metrics, no token), for Prometheus to scrape a port of its own; nil: none.
    public var listen: SocketAddressSpec? = nil
    /// Also expose Istio's standard metrics (`istio_requests_total`, …) for the same requests, with Istio's labels,
    /// so that the dashboards, Kiali graphs and Flagger queries KServe users run keep working.
    public var istio = true
    public init() {}
}

/// One line per finished request.
public struct AccessLogSettings: Hashable, Sendable {
    public enum Destination: Hashable, Sendable {
        case off
        case stdout
        /// A file, appended to and reopened on SIGUSR1 (logrotate's `postrotate`).
        case file(String)
    }

    public enum Format: Hashable, Sendable {
        /// One JSON object per line (the default).
        case json
        /// Envoy's default access log format.
        case envoy
    }

    public var destination: Destination = .off
    public var format: Format = .json
    /// The share of requests logged, 0...1 (errors-only applies first).
    public var sampleRate: Double = 1
    /// Log only requests that failed: a status ≥ 400 or none, a gateway answer, an abort, or a gRPC status other than OK.
    public var errorsOnly = false
    public init() {}
}

/// W3C Trace Context and span export.
public struct TracingSettings: Hashable, Sendable {
    /// The share of requests without an incoming `traceparent` that start a sampled trace, 0...1 (every request
    /// gets a trace id for its log line; only sampled ones are exported). An incoming `traceparent` keeps its flag.
    public var sampleRate: Double = 0.01
    /// Send `traceresponse: 00-<trace id>-<span id>-<flags>` (W3C Trace Context Level 2) back to the client.
    public var responseHeader = false
    /// Where sampled spans go: an OTLP/HTTP collector's traces URL (`http://127.0.0.1:4318/v1/traces`); nil: not exported.
    public var otlpEndpoint: String? = nil
    /// OTLP/HTTP encoding of exported spans.
    public var otlpEncoding: OTLPEncoding = .json
    /// Spans waiting for export beyond this are dropped and counted (per worker).
    public var exportQueueSpans = 2048

    public enum OTLPEncoding: Hashable, Sendable {
        case json
        case protobuf
    }
    public init() {}
}
