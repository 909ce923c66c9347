// Control layer: the `metrics`, `accessLog` and `tracing` sections of the configuration file, checked into the
// data plane's telemetry settings (ranges, the access log's directory, the OTLP collector's URL).
import Foundation
import SluiceProxy

extension GatewayConfig {
    /// `metrics: {listen: 127.0.0.1:9091, istio: true}`. The listener serves GET /metrics without a token: metrics
    /// carry no secrets and change nothing, so unlike `admin` any address is allowed (Prometheus scrapes a port of
    /// its own, often from another host).
    static func decodeMetrics(_ node: ConfigNode) throws(ConfigError) -> MetricsSettings {
        let mapping = try node.mapping(keys: ["listen", "istio"])
        var settings = MetricsSettings()
        if let value = mapping["listen"] { settings.listen = try value.address() }
        if let value = mapping["istio"] { settings.istio = try value.bool() }
        return settings
    }

    /// `accessLog: {path: stdout | off | /var/log/sluice/access.log, format: json | envoy, sample: 0.1, errorsOnly: false}`.
    /// A file's directory must exist now, so a typo is refused with its field instead of failing at open time.
    static func decodeAccessLog(_ node: ConfigNode) throws(ConfigError) -> AccessLogSettings {
        let mapping = try node.mapping(keys: ["path", "format", "sample", "errorsOnly"])
        var settings = AccessLogSettings()
        if let value = mapping["path"] {
            switch try value.string() {
            case "off": settings.destination = .off
            case "stdout": settings.destination = .stdout
            case "": throw value.error("expected stdout, off or a file path")
            case let path:
                let directory = (path as NSString).deletingLastPathComponent
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory, isDirectory: &isDirectory),
                      isDirectory.boolValue else {
                    throw value.error("\(directory): no such directory (the access log file is created there)")
                }
                guard !path.hasSuffix("/") else { throw value.error("\(path) is a directory; name the log file") }
                settings.destination = .file(path)
            }
        }
        if let value = mapping["format"] {
            switch try value.string() {
            case "json": settings.format = .json
            case "envoy": settings.format = .envoy
            default: throw value.error("expected json or envoy, got \(value.found)")
            }
        }
        if let value = mapping["sample"] { settings.sampleRate = try value.double(in: 0...1) }
        if let value = mapping["errorsOnly"] { settings.errorsOnly = try value.bool() }
        return settings
    }

    /// `tracing: {sampleRate: 0.01, responseHeader: false, otlp: {endpoint: http://127.0.0.1:4318/v1/traces,
    /// encoding: json | protobuf}, exportQueue: 2048}`.
    static func decodeTracing(_ node: ConfigNode) throws(ConfigError) -> TracingSettings {
        let mapping = try node.mapping(keys: ["sampleRate", "responseHeader", "otlp", "exportQueue"])
        var settings = TracingSettings()
        if let value = mapping["sampleRate"] { settings.sampleRate = try value.double(in: 0...1) }
        if let value = mapping["responseHeader"] { settings.responseHeader = try value.bool() }
        if let value = mapping["exportQueue"] { settings.exportQueueSpans = try value.int(in: 1...1_048_576) }
        if let otlpNode = mapping["otlp"] {
            let otlp = try otlpNode.mapping(keys: ["endpoint", "encoding"])
            settings.otlpEndpoint = try otlpEndpoint(try otlp.required("endpoint"))
            if let value = otlp["encoding"] {
                switch try value.string() {
                case "json": settings.otlpEncoding = .json
                case "protobuf": settings.otlpEncoding = .protobuf
                default: throw value.error("expected json or protobuf, got \(value.found)")
                }
            }
        }
        return settings
    }

    /// An OTLP/HTTP traces URL: `http://`, an IP literal (nothing resolves DNS), an optional port (80 without one,
    /// as for any http URL) and a path (`/v1/traces` when none is given, as OTLP's base-endpoint rule appends).
    /// Returned canonical (`http://127.0.0.1:4318/v1/traces`), so that equal settings compare equal.
    private static func otlpEndpoint(_ node: ConfigNode) throws(ConfigError) -> String {
        let text = try node.string()
        if text.lowercased().hasPrefix("https://") {
            throw node.error("https is not supported: spans go over plain HTTP to a collector or agent on this host or network (http://IP:port/v1/traces)")
        }
        guard text.lowercased().hasPrefix("http://") else {
            throw node.error("expected an OTLP/HTTP URL like http://127.0.0.1:4318/v1/traces, got \(node.found)")
        }
        let rest = text.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = String(rest[..<slash])
        var path = String(rest[slash...])
        guard !authority.isEmpty else { throw node.error("the URL has no host: expected http://IP:port/v1/traces") }
        guard !path.contains(where: { $0 == " " || $0 == "\t" || $0 == "#" }) else {
            throw node.error("the path \(path) has a space or a fragment")
        }
        if path.isEmpty || path == "/" { path = "/v1/traces" }
        let hasPort = authority.hasPrefix("[") ? authority.contains("]:") : authority.contains(":")
        if !hasPort { authority += ":80" }
        let address = try node.address(authority)
        return "http://\(address)\(path)"
    }
}
