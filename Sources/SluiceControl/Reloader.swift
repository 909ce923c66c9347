// Control layer: reloading the configuration file (SIGHUP) and the certificate files as one generation — the file,
// the certificates and the control plane's routes are all validated first, then applied together, or nothing is —
// and recording each outcome (an event, a count for /metrics).
import SluiceProxy
import SluiceRouting
import SluiceTLS
import Synchronization

/// Why a reload was refused; everything running stays as it was.
public struct ReloadError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The configuration field at fault (`services[0].traffic`, `tls.certificates`), when one is.
    public var field: String?
    /// Why, without the file and field (`percents add up to 110, must be 100`).
    public var reason: String
    public init(description: String, field: String? = nil, reason: String? = nil) {
        self.description = description
        self.field = field
        self.reason = reason ?? description
    }
}

/// The one place that changes the running configuration after start (nginx's reload: build a whole new generation,
/// then swap it). Reloads are serialised; each one is all or nothing.
public final class Reloader: Sendable {
    private let plane: ControlPlane
    private let gateway: Gateway
    /// The configuration in force. Its lock serialises reloads and certificate re-reads, so two never interleave.
    private let running: Mutex<GatewayConfig>
    /// Outcomes so far, for /metrics: configuration reloads and certificate reloads, each ok or refused.
    private let outcomes = Mutex<(config: Outcomes, certificates: Outcomes)>((Outcomes(), Outcomes()))

    struct Outcomes {
        var ok: UInt64 = 0
        var refused: UInt64 = 0
    }

    public init(plane: ControlPlane, gateway: Gateway, config: GatewayConfig) {
        self.plane = plane
        self.gateway = gateway
        self.running = Mutex(config)
    }

    private var events: EventLog { plane.events }

    /// SIGHUP: loads the file with `load` and reloads it (`reload(_:)`); a file that does not load is refused with
    /// its field and reason. Either way the outcome is recorded; returns whether the new file is in force.
    @discardableResult
    public func reload(from load: () throws(ConfigError) -> GatewayConfig) -> Bool {
        let next: GatewayConfig
        do {
            next = try load()
        } catch {
            refused(ReloadError(description: error.description, field: error.path.isEmpty ? nil : error.path, reason: error.reason),
                    file: error.file)
            return false
        }
        do {
            try reload(next)
            return true
        } catch {
            return false
        }
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
        let needsRestart: [String]
        do {
            needsRestart = try install(next)
        } catch {
            refused(error, file: next.file)
            throw error
        }
        outcomes.withLock { $0.config.ok += 1 }
        let routes = plane.routes.services.count
        var message = "\(next.file) applied (\(routes) services)"
        if !needsRestart.isEmpty {
            message += "; \(needsRestart.joined(separator: ", ")) changed but keep their running values until a restart"
        }
        events.record(Event("config.reloaded", reason: "Reloaded", level: needsRestart.isEmpty ? .info : .warning, message: message,
                            fields: [("file", .string(next.file)), ("services", .int(routes)),
                                     ("needsRestart", .array(needsRestart.map(JSONValue.string)))]))
        return needsRestart
    }

    private func refused(_ error: ReloadError, file: String) {
        outcomes.withLock { $0.config.refused += 1 }
        var fields: [(String, JSONValue)] = [("file", .string(file))]
        if let field = error.field { fields.append(("field", .string(field))) }
        fields.append(("error", .string(error.reason)))
        events.record(Event("config.reload_refused", reason: "ReloadRefused", level: .warning,
                            message: "reload refused: \(error.description); the running configuration stays", fields: fields))
    }

    private func install(_ next: GatewayConfig) throws(ReloadError) -> [String] {
        let gateway = self.gateway
        let plane = self.plane
        return try running.withLock { running throws(ReloadError) -> [String] in
            var next = next
            var needsRestart: [String] = []
            func keep<Value: Equatable>(_ name: String, _ path: WritableKeyPath<GatewayConfig, Value>) {
                guard next[keyPath: path] != running[keyPath: path] else { return }
                if !needsRestart.contains(name) { needsRestart.append(name) }
                next[keyPath: path] = running[keyPath: path]
            }
            // The listeners, the worker threads, the admin server, the state lock and the watchers exist once.
            keep("listen", \.proxy.listen)
            keep("workers", \.proxy.workers)
            keep("admin", \.proxy.admin)
            keep("adminTokenFile", \.control.adminTokenFile)
            keep("adminTLS", \.control.adminTLS)
            keep("stateDir", \.control.stateDir)
            // The etcd session (its client, lease and watch) is made once, with the plane.
            keep("stateStore", \.control.stateStore)
            keep("manifests", \.control.manifestsDir)
            // The metrics listener is bound, the access log file opened and the span exporter connected once, at
            // start; the access log's format, sampling and filter and the tracing rates apply at once.
            keep("metrics.listen", \.proxy.metrics.listen)
            keep("accessLog.path", \.proxy.accessLog.destination)
            keep("tracing.otlp", \.proxy.tracing.otlpEndpoint)
            keep("tracing.otlp", \.proxy.tracing.otlpEncoding)

            let context: TLSContext?
            do {
                context = try gateway.buildTLS(next.proxy.tls)
            } catch {
                throw ReloadError(description: "\(error)", field: "tls.certificates")
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
        let files: [TLSCertificateFiles]
        do {
            files = try running.withLock { running throws(GatewayError) in
                try gateway.reloadTLS(running.proxy.tls)
                return running.proxy.tls?.certificates ?? []
            }
        } catch {
            outcomes.withLock { $0.certificates.refused += 1 }
            events.record(Event("tls.reload_refused", reason: "CertificateReloadRefused", level: .warning,
                                message: "certificate reload refused: \(error.description); the running certificates stay"))
            throw error
        }
        outcomes.withLock { $0.certificates.ok += 1 }
        events.record(Event("tls.reloaded", reason: "CertificatesReloaded",
                            message: "certificates reloaded: new handshakes use them, established connections keep theirs",
                            fields: [("certificates", .array(files.map { .string($0.cert) }))]))
    }

    /// `sluice_config_reloads_total{result}` and `sluice_certificate_reloads_total{result}`.
    public func writeMetrics(into exposition: inout MetricsExposition) {
        let (config, certificates) = outcomes.withLock { $0 }
        exposition.family("sluice_config_reloads", .counter, help: "Configuration reloads (SIGHUP), by result: ok, or refused with everything left as it was.")
        exposition.counter(MetricLabels(["result": "ok"]), config.ok)
        exposition.counter(MetricLabels(["result": "refused"]), config.refused)
        exposition.family("sluice_certificate_reloads", .counter, help: "Certificate reloads (files changed on disk), by result.")
        exposition.counter(MetricLabels(["result": "ok"]), certificates.ok)
        exposition.counter(MetricLabels(["result": "refused"]), certificates.refused)
    }
}
