// Control layer: `stateStore:` in the configuration file — the local state directory (file, the default) or etcd
// shared by every replica (endpoints, key prefix, lease TTL, this replica's name, TLS and user/password).
import Foundation

/// Where the InferenceServices, their revision history and their status live.
public enum StateStoreSetting: Sendable, Equatable {
    /// `stateDir`'s state.json: one gateway, one truth.
    case file
    /// Shared by every replica through etcd; `stateDir` keeps this replica's last snapshot.
    case etcd(EtcdStoreSettings)
}

public struct EtcdStoreSettings: Sendable, Equatable {
    public var client: EtcdSettings
    /// The replica's lease (membership and leadership): a replica gone this long loses both.
    public var leaseTTLSeconds: Int64 = 10
    /// How this replica is listed in `sluice get gateways` and named as leader; nil: host name and admin port.
    public var replicaName: String?

    public init(client: EtcdSettings, leaseTTLSeconds: Int64 = 10, replicaName: String? = nil) {
        self.client = client
        self.leaseTTLSeconds = leaseTTLSeconds
        self.replicaName = replicaName
    }
}

extension GatewayConfig {
    /// `stateStore: {kind: etcd, endpoints: [http://127.0.0.1:2379], prefix: /sluice/, leaseTTL: 10s, replicaName: a,
    /// username: u, passwordFile: F, caFile: F, certFile: F, keyFile: F, requestTimeout: 5s}` or `{kind: file}`.
    static func decodeStateStore(_ node: ConfigNode) throws(ConfigError) -> StateStoreSetting {
        let mapping = try node.mapping(keys: ["kind", "endpoints", "prefix", "leaseTTL", "replicaName", "username", "passwordFile",
                                              "caFile", "certFile", "keyFile", "requestTimeout"])
        let kindNode = try mapping.required("kind")
        switch try kindNode.string() {
        case "file":
            if let extra = ["endpoints", "prefix", "leaseTTL", "replicaName", "username", "passwordFile", "caFile", "certFile", "keyFile", "requestTimeout"]
                .first(where: { mapping[$0] != nil }) {
                throw ConfigNode(node: node.node, path: node.child(extra)).error("only for kind: etcd")
            }
            return .file
        case "etcd":
            break
        case let other:
            throw kindNode.error("unknown state store \"\(other)\" (file or etcd)")
        }
        let endpointsNode = try mapping.required("endpoints")
        var endpoints: [String] = []
        for entry in try endpointsNode.list() {
            let url = try entry.string()
            guard let scheme = url.split(separator: ":").first, scheme == "http" || scheme == "https",
                  let components = URLComponents(string: url), components.host?.isEmpty == false, components.port != nil,
                  components.path.isEmpty || components.path == "/" else {
                throw entry.error("\"\(url)\" is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)")
            }
            endpoints.append(url.hasSuffix("/") ? String(url.dropLast()) : url)
        }
        guard !endpoints.isEmpty else { throw endpointsNode.error("needs at least one etcd endpoint") }
        var client = EtcdSettings(endpoints: endpoints)
        if let value = mapping["prefix"] {
            let prefix = try value.string()
            guard prefix.hasPrefix("/"), prefix.hasSuffix("/"), prefix.count > 1 else {
                throw value.error("must start and end with \"/\" and name a folder (\"/sluice/\"), so that two prefixes never overlap")
            }
            client.prefix = prefix
        }
        if let value = mapping["username"] { client.username = try value.string() }
        if let value = mapping["passwordFile"] {
            let file = try value.string()
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw value.error("cannot read \(file)") }
            client.password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard (client.username == nil) == (client.password == nil) else {
            throw node.error("username and passwordFile go together (etcd's authentication takes both)")
        }
        for (key, path) in [("caFile", \EtcdSettings.caFile), ("certFile", \.certFile), ("keyFile", \.keyFile)] {
            guard let value = mapping[key] else { continue }
            let file = try value.string()
            guard FileManager.default.isReadableFile(atPath: file) else { throw value.error("cannot read \(file)") }
            client[keyPath: path] = file
        }
        guard (client.certFile == nil) == (client.keyFile == nil) else {
            throw node.error("certFile and keyFile go together (a client certificate needs its key)")
        }
        if client.caFile != nil || client.certFile != nil, !endpoints.allSatisfy({ $0.hasPrefix("https:") }) {
            throw endpointsNode.error("caFile, certFile and keyFile are for https:// endpoints; every endpoint here must be https://")
        }
        if let value = mapping["requestTimeout"] {
            client.requestTimeoutMilliseconds = try value.milliseconds()
            guard client.requestTimeoutMilliseconds > 0 else { throw value.error("must be greater than 0") }
        }
        var settings = EtcdStoreSettings(client: client)
        if let value = mapping["leaseTTL"] {
            let ms = try value.milliseconds()
            guard ms >= 2_000, ms % 1_000 == 0 else { throw value.error("must be whole seconds, at least 2s (etcd's leases count in seconds)") }
            settings.leaseTTLSeconds = Int64(ms / 1_000)
        }
        if let value = mapping["replicaName"] {
            let name = try value.string()
            guard !name.isEmpty, name.utf8.count <= 253, name.allSatisfy({ $0.isLetter || $0.isNumber || "-.:_".contains($0) }) else {
                throw value.error("\"\(name)\" is not a replica name (letters, digits, - . : _; at most 253)")
            }
            settings.replicaName = name
        }
        return .etcd(settings)
    }
}
