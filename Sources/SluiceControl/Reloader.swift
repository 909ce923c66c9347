// Control layer: reloading the configuration file (SIGHUP) and the certificate files as one generation — the file,
// the certificates and the control plane's routes are all validated first, then applied together, or nothing is.
import SluiceProxy
import SluiceRouting
import SluiceTLS
import Synchronization

/// Why a reload was refused; everything running stays as it was.
public struct ReloadError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The one place that changes the running configuration after start (nginx's reload: build a whole new generation,
/// then swap it). Reloads are serialised; each one is all or nothing.
public final class Reloader: Sendable {
    private let plane: ControlPlane
    private let gateway: Gateway
    /// The configuration in force. Its lock serialises reloads and certificate re-reads, so two never interleave.
    private let running: Mutex<GatewayConfig>

    public init(plane: ControlPlane, gateway: Gateway, config: GatewayConfig) {
        self.plane = plane
        self.gateway = gateway
        self.running = Mutex(config)
    }

    /// The configuration in force (start-only settings as at start).
    public var config: GatewayConfig { running.withLock { $0 } }

    /// Applies `next`, a freshly loaded file, as one generation: the certificates are read and checked and the
    /// control plane's routes built (and the rollout state saved) before anything applies; then certificates,
    /// settings and routes are handed to the workers together, under the plane's lock, so a probe-driven table
    /// published at the same time is either older (and replaced) or newer (and comes after). Throws, with the old
    /// certificates, settings and routes all still in force, when any part fails.
    ///
    /// Returns the settings that changed but apply only at start (`listen`, `workers`, ...): they keep their
    /// running values until a restart.
    @discardableResult
    public func reload(_ next: GatewayConfig) throws(ReloadError) -> [String] {
        let gateway = self.gateway
        let plane = self.plane
        return try running.withLock { running throws(ReloadError) -> [String] in
            var next = next
            var needsRestart: [String] = []
            func keep<Value: Equatable>(_ name: String, _ path: WritableKeyPath<GatewayConfig, Value>) {
                guard next[keyPath: path] != running[keyPath: path] else { return }
                needsRestart.append(name)
                next[keyPath: path] = running[keyPath: path]
            }
            // The listeners, the worker threads, the admin server, the state lock and the watchers exist once.
            keep("listen", \.proxy.listen)
            keep("workers", \.proxy.workers)
            keep("admin", \.proxy.admin)
            keep("adminTokenFile", \.control.adminTokenFile)
            keep("stateDir", \.control.stateDir)
            keep("manifests", \.control.manifestsDir)
            keep("accessLog.path", \.proxy.accessLog.destination)

            let context: TLSContext?
            do {
                context = try gateway.buildTLS(next.proxy.tls)
            } catch {
                throw ReloadError(description: "\(error)")
            }
            let settings = next.proxy
            do {
                try plane.reconfigure(next) { table in gateway.publish(routes: table, settings: settings, tls: context) }
            } catch {
                throw ReloadError(description: "\(error)")
            }
            running = next
            return needsRestart
        }
    }

    /// Re-reads the running configuration's certificate files (a renewal rewrote them in place: cert-manager,
    /// certbot, a Secret mount): new handshakes use them, established connections keep theirs. A broken pair
    /// throws with the file and the reason, and the running certificates stay.
    public func reloadCertificates() throws(GatewayError) {
        let gateway = self.gateway
        try running.withLock { running throws(GatewayError) in try gateway.reloadTLS(running.proxy.tls) }
    }
}
