// Control layer: the configuration of the control plane — state directory and store, manifest directory, where models'
// pods are (storageUri → endpoints), readiness probes and admin authentication (token, TLS).
import SluiceRouting
import SluiceTLS

public struct ControlSettings: Sendable {
    /// Revision history and applied manifests live here (`sluice serve --state-dir` overrides).
    public var stateDir = "./sluice-state"
    /// Where the rollout state lives: `stateDir` alone, or etcd shared by every replica (`stateStore:`).
    public var stateStore = StateStoreSetting.file
    /// Every manifest in this directory is applied at start and re-applied on change (`--manifests` overrides).
    public var manifestsDir: String? = nil
    /// Where a revision's pods are, by the manifest's storageUri (KServe would pull the model there).
    public var models: [String: [Endpoint]] = [:]
    public var readiness = ProbeSettings()
    /// The bearer token the admin API requires (read from this file); mandatory for a non-loopback admin address.
    public var adminTokenFile: String? = nil
    /// The admin listener's certificate and key (`adminTLS`): https, so that the token is not sent in clear.
    public var adminTLS: TLSCertificateFiles? = nil
    public init() {}
}
