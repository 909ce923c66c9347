// Control layer: reading and validating a configuration file (YAML) into a `GatewayConfig`.
import Foundation
import SluiceProxy
import SluiceRouting
import Yams

extension GatewayConfig {
    /// Reads and parses `file`; the path is used as given in every message.
    public static func load(file: String) throws(ConfigError) -> GatewayConfig {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file, path: "", reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(yaml: text, file: file)
    }

    /// Parses and fully validates, down to building the route table, so a config that loads can serve.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> GatewayConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw syntaxError(error, file: file)
        } catch {
            throw ConfigError(file: file, path: "", reason: "\(error)")
        }
        guard let root else {
            throw ConfigError(file: file, path: "", reason: "the file is empty, expected a mapping with at least services")
        }
        do {
            let config = try decode(ConfigNode(node: root, path: ""), file: file)
            _ = try config.routeTable()
            return config
        } catch {
            var located = error
            located.file = file
            throw located
        }
    }

    private static func syntaxError(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return ConfigError(file: file, path: "", reason: problem, line: mark.line, column: mark.column)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().joined(separator: ", ")
            return ConfigError(file: file, path: "", reason: "duplicate key \(keys) in a mapping",
                               line: context.mark.line, column: context.mark.column)
        case .no, .memory, .reader, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
            return ConfigError(file: file, path: "", reason: error.description)
        }
    }

    private static func decode(_ root: ConfigNode, file: String) throws(ConfigError) -> GatewayConfig {
        let top = try root.mapping(keys: ["listen", "workers", "admin", "timeouts", "limits", "routing", "services", "tls", "upstreamTLS",
                                          "stateDir", "manifests", "models", "readiness", "adminTokenFile", "adminTLS", "shutdownTimeout",
                                          "metrics", "accessLog", "tracing", "retries", "outlierDetection", "revisionQueue", "attemptCountHeader",
                                          "mirror", "stateStore"])
        var proxy = ProxySettings()
        var rules = HostRules()
        if let node = top["listen"] { proxy.listen = try node.address() }
        if let node = top["workers"] { proxy.workers = try node.int(in: 1...1024) }
        var control = try decodeControl(top)
        if let node = top["adminTLS"] { control.adminTLS = try decodeAdminTLS(node, file: file) }
        if let node = top["admin"] {
            let admin = try node.address()
            // The admin API changes routes: off the loopback interface only behind a bearer token.
            guard isLoopback(admin.host) || control.adminTokenFile != nil else {
                throw node.error("\(admin) is not a loopback address (127.0.0.0/8 or ::1); set adminTokenFile to expose the admin API elsewhere")
            }
            proxy.admin = admin
        }
        if let node = top["timeouts"] { proxy.timeouts = try decodeTimeouts(node) }
        if let node = top["shutdownTimeout"] {
            // A process-wide bound, not a per-request one like `timeouts:`, hence top-level (Kubernetes'
            // terminationGracePeriodSeconds sits on the pod too). 0 would cut every in-flight request at once.
            proxy.shutdownTimeoutMs = try node.milliseconds()
            guard proxy.shutdownTimeoutMs > 0 else { throw node.error("must be greater than 0 (in-flight requests get this long to finish)") }
        }
        if let node = top["limits"] { proxy.limits = try decodeLimits(node) }
        if let node = top["tls"] { proxy.tls = try decodeTLS(node, file: file) }
        if let node = top["upstreamTLS"] { proxy.upstreamTLS = try decodeUpstreamTLS(node, file: file) }
        if let node = top["metrics"] {
            proxy.metrics = try decodeMetrics(node)
            // One socket per address: a metrics listener on the proxy's or the admin API's address could never bind.
            if let address = proxy.metrics.listen, address.port != 0, address == proxy.listen || address == proxy.admin {
                throw ConfigNode(node: node.node, path: node.child("listen"))
                    .error("\(address) is already the \(address == proxy.listen ? "listen" : "admin") address")
            }
        }
        if let node = top["accessLog"] { proxy.accessLog = try decodeAccessLog(node) }
        if let node = top["tracing"] { proxy.tracing = try decodeTracing(node) }
        if let node = top["retries"] { proxy.retries = try decodeRetries(node) }
        if let node = top["outlierDetection"] { proxy.outlierDetection = try decodeOutlierDetection(node) }
        if let node = top["revisionQueue"] { proxy.revisionQueue = try decodeRevisionQueue(node) }
        if let node = top["attemptCountHeader"] { proxy.attemptCountHeader = try node.bool() }
        if let node = top["mirror"] { proxy.mirror = try decodeMirrorSettings(node) }
        if let node = top["routing"] {
            let routing = try node.mapping(keys: ["domain", "serviceHostTemplate", "componentSuffix", "tagHeaderRouting", "revisionHeader"])
            if let value = routing["domain"] { rules.domain = try value.string() }
            if let value = routing["serviceHostTemplate"] { rules.serviceHostTemplate = try value.string() }
            if let value = routing["componentSuffix"] { rules.componentSuffix = try value.string() }
            if let value = routing["tagHeaderRouting"] { rules.tagHeaderRouting = try value.bool() }
            if let value = routing["revisionHeader"] { proxy.revisionHeader = try value.bool() }
        }
        // Static services are optional: a gateway driven by InferenceService manifests may have none.
        let serviceNodes = try top["services"]?.list() ?? []
        let services = try serviceNodes.map { (node) throws(ConfigError) in try decodeService(node, retries: proxy.retries) }
        var config = GatewayConfig(proxy: proxy, hostRules: rules, services: services, file: file)
        config.control = control
        config.healthChecks = try decodeHealthChecks(serviceNodes, defaults: control.readiness)
        return config
    }

    private static func decodeControl(_ top: ConfigMapping) throws(ConfigError) -> ControlSettings {
        var control = ControlSettings()
        if let node = top["stateDir"] { control.stateDir = try node.string() }
        if let node = top["stateStore"] { control.stateStore = try decodeStateStore(node) }
        if let node = top["manifests"] { control.manifestsDir = try node.string() }
        if let node = top["adminTokenFile"] { control.adminTokenFile = try node.string() }
        if let node = top["models"] {
            for (storageUri, value) in try node.entries() {
                var endpoints: [Endpoint] = []
                for endpointNode in try value.list() {
                    endpoints.append(try endpointNode.endpoint())
                }
                control.models[storageUri] = endpoints
            }
        }
        if let node = top["readiness"] { control.readiness = try decodeProbe(node, defaults: control.readiness) }
        return control
    }

    static func isLoopback(_ host: String) -> Bool {
        AdminAuth.isLoopback(host)
    }

    private static func decodeTimeouts(_ node: ConfigNode) throws(ConfigError) -> ProxyTimeouts {
        let mapping = try node.mapping(keys: ["requestHeader", "keepAliveIdle", "upstreamConnect", "upstreamResponse", "bodyIdle"])
        var timeouts = ProxyTimeouts()
        // Only the upstream response wait may be switched off: streaming answers (SSE) have no end time.
        func positive(_ key: String) throws(ConfigError) -> Int? {
            guard let value = mapping[key] else { return nil }
            let milliseconds = try value.milliseconds()
            guard milliseconds > 0 else { throw value.error("must be greater than 0 (only upstreamResponse can be 0, to disable it)") }
            return milliseconds
        }
        if let value = try positive("requestHeader") { timeouts.requestHeaderMs = value }
        if let value = try positive("keepAliveIdle") { timeouts.keepAliveIdleMs = value }
        if let value = try positive("upstreamConnect") { timeouts.upstreamConnectMs = value }
        if let value = mapping["upstreamResponse"] { timeouts.upstreamResponseMs = try value.milliseconds() }
        if let value = try positive("bodyIdle") { timeouts.bodyIdleMs = value }
        return timeouts
    }

    private static func decodeLimits(_ node: ConfigNode) throws(ConfigError) -> ProxyLimits {
        let mapping = try node.mapping(keys: ["maxHeaderBytes", "maxHeaderCount", "maxRequestTargetBytes",
                                              "maxRequestBodyBytes", "bufferBytes", "maxRequestsPerConnection", "maxStreamsPerConnection"])
        var limits = ProxyLimits()
        func positive(_ key: String, isSize: Bool) throws(ConfigError) -> Int? {
            guard let value = mapping[key] else { return nil }
            let number = isSize ? try value.bytes() : try value.int()
            guard number > 0 else { throw value.error("must be greater than 0") }
            return number
        }
        if let value = try positive("maxHeaderBytes", isSize: true) { limits.maxHeaderBytes = value }
        if let value = try positive("maxHeaderCount", isSize: false) { limits.maxHeaderCount = value }
        if let value = try positive("maxRequestTargetBytes", isSize: true) { limits.maxRequestTargetBytes = value }
        if let value = mapping["maxRequestBodyBytes"] { limits.maxRequestBodyBytes = try value.bytes() }  // 0: no limit
        if let value = try positive("bufferBytes", isSize: true) { limits.bufferBytes = value }
        if let value = try positive("maxRequestsPerConnection", isSize: false) { limits.maxRequestsPerConnection = value }
        if let value = try positive("maxStreamsPerConnection", isSize: false) { limits.maxStreamsPerConnection = value }
        // The request line is inside the header block: a larger target limit could never trigger 414.
        if limits.maxRequestTargetBytes > limits.maxHeaderBytes, let value = mapping["maxRequestTargetBytes"] ?? mapping["maxHeaderBytes"] {
            throw value.error("maxRequestTargetBytes (\(limits.maxRequestTargetBytes)) is above maxHeaderBytes (\(limits.maxHeaderBytes)), which includes the request line")
        }
        return limits
    }

    /// The keys of a static service (`services[i]`).
    static let serviceKeys = ["name", "namespace", "tagRouting", "revisions", "traffic", "healthCheck", "retries", "stickyKey", "mirror"]

    /// A static service; its own `retries:` starts from the gateway's (its `healthCheck` is decodeHealthChecks').
    private static func decodeService(_ node: ConfigNode, retries: RetryPolicy) throws(ConfigError) -> ServiceSpec {
        let mapping = try node.mapping(keys: serviceKeys)
        let name = try mapping.required("name").string()
        let namespace = try mapping.required("namespace").string()
        let tagRouting = try mapping["tagRouting"]?.bool() ?? false
        var revisions: [RevisionSpec] = []
        for (revisionName, value) in try mapping.required("revisions").entries() {
            // Checked here rather than in RouteTable so the path is the file's (`revisions.<name>`).
            guard DNSName.isLabel1035(revisionName) else {
                throw value.error("revision name is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 bytes)")
            }
            guard case .sequence = value.node else {
                throw value.error("expected a list of endpoints, got \(value.found) (write [] for a revision without endpoints)")
            }
            var endpoints: [Endpoint] = []
            for endpointNode in try value.list() {
                let endpoint = try endpointNode.endpoint()
                guard !endpoints.contains(endpoint) else { throw endpointNode.error("duplicate endpoint \(endpoint)") }
                endpoints.append(endpoint)
            }
            revisions.append(RevisionSpec(name: revisionName, endpoints: endpoints))
        }
        var traffic: [TrafficTargetSpec] = []
        for targetNode in try mapping.required("traffic").list() {
            let target = try targetNode.mapping(keys: ["revisionName", "percent", "tag", "latestRevision"])
            traffic.append(TrafficTargetSpec(
                revisionName: try target.required("revisionName").string(),
                percent: try target.required("percent").int(in: 0...100),
                tag: try target["tag"]?.string(),
                latestRevision: try target["latestRevision"]?.bool() ?? false))
        }
        let own = try mapping["retries"].map { (node) throws(ConfigError) in try decodeRetries(node, base: retries) }
        // `header:NAME` or `cookie:NAME`, as the `serving.sluice.dev/sticky-key` annotation; list the canary first.
        let sticky = try mapping["stickyKey"].map { (node) throws(ConfigError) in
            let text = try node.string()
            switch StickyKey.parse(text) {
            case .success(let key): return key
            case .failure(let error): throw node.error("\"\(text)\": \(error.reason)")
            }
        }
        let mirror = try mapping["mirror"].map { (node) throws(ConfigError) in try decodeServiceMirror(node) }
        return ServiceSpec(name: name, namespace: namespace, tagRouting: tagRouting, revisions: revisions, traffic: traffic,
                           retries: own, stickyKey: sticky, mirror: mirror)
    }
}
