// Control layer: the `tls` section of the configuration file: certificates (checked by loading them) and
// the handshake timeout; `adminTLS`, the admin listener's pair; and `upstreamTLS`: how pods on https:// endpoints are
// verified.
import Foundation
import SluiceProxy
import SluiceTLS

extension GatewayConfig {
    /// `tls: {certificates: [{cert: path, key: path}, ...], handshakeTimeout: 10s, http2: true}`. Relative paths are taken
    /// from the configuration file's directory, so a file and its certificates move together. Every pair is
    /// loaded and checked here, so a file that loads has certificates that serve; errors name the field and
    /// the file's problem (`tls.certificates[1].key: /etc/sluice/b.key: does not match the certificate…`).
    static func decodeTLS(_ node: ConfigNode, file: String) throws(ConfigError) -> TLSSettings {
        let mapping = try node.mapping(keys: ["certificates", "handshakeTimeout", "http2"])
        let base = (file as NSString).deletingLastPathComponent
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
        }
        let list = try mapping.required("certificates")
        var pairs: [TLSCertificateFiles] = []
        var nodes: [ConfigMapping] = []
        for entry in try list.list() {
            let pair = try entry.mapping(keys: ["cert", "key"])
            pairs.append(TLSCertificateFiles(cert: resolve(try pair.required("cert").string()),
                                             key: resolve(try pair.required("key").string())))
            nodes.append(pair)
        }
        guard !pairs.isEmpty else { throw list.error("at least one certificate is needed") }
        var settings = TLSSettings(certificates: pairs)
        if let value = mapping["handshakeTimeout"] {
            let milliseconds = try value.milliseconds()
            guard milliseconds > 0 else { throw value.error("must be greater than 0") }
            settings.handshakeTimeoutMs = milliseconds
        }
        if let value = mapping["http2"] { settings.offersH2 = try value.bool() }
        do {
            _ = try TLSContext(certificates: pairs, offerH2: settings.offersH2)
        } catch {
            let pair = nodes[error.index]
            let field = error.isKey ? pair["key"] : pair["cert"]
            throw (field ?? list).error(error.description)
        }
        return settings
    }

    /// `adminTLS: {cert: FILE, key: FILE}`: the admin listener's pair (relative paths from the file's directory),
    /// checked as it loads.
    static func decodeAdminTLS(_ node: ConfigNode, file: String) throws(ConfigError) -> TLSCertificateFiles {
        let mapping = try node.mapping(keys: ["cert", "key"])
        let base = (file as NSString).deletingLastPathComponent
        func resolve(_ path: String) -> String { path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path }
        let pair = TLSCertificateFiles(cert: resolve(try mapping.required("cert").string()), key: resolve(try mapping.required("key").string()))
        do {
            _ = try AdminTLS(pair)
        } catch {
            throw ((error.isKey ? mapping["key"] : mapping["cert"]) ?? node).error(error.description)
        }
        return pair
    }


    /// `upstreamTLS: {caFile: path, serverName: name}`, for `https://` endpoints. Pods are always verified: against
    /// `caFile` (relative to the configuration file's directory), or the system's default trust store without one;
    /// the certificate must name `serverName` (also sent as SNI), or without one the endpoint's IP address. The CA
    /// file is loaded here, so errors name the field and the file (`upstreamTLS.caFile: /etc/ca.pem: No such file…`).
    static func decodeUpstreamTLS(_ node: ConfigNode, file: String) throws(ConfigError) -> UpstreamTLSSettings {
        let mapping = try node.mapping(keys: ["caFile", "serverName"])
        let base = (file as NSString).deletingLastPathComponent
        var settings = UpstreamTLSSettings()
        if let value = mapping["serverName"] {
            let name = try value.string()
            guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "/" }) else {
                throw value.error("expected a DNS name or an IP address, got \(value.found)")
            }
            settings.serverName = name
        }
        if let value = mapping["caFile"] {
            let path = try value.string()
            guard !path.isEmpty else { throw value.error("expected a path to a PEM file of CA certificates") }
            let resolved = path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
            do {
                _ = try TLSClientContext(caFile: resolved)
            } catch {
                throw value.error(error.description)
            }
            settings.caFile = resolved
        }
        return settings
    }
}
