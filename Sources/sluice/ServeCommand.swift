// `sluice serve`: loads the configuration and the saved rollout state, starts the data plane, the admin API (and the
// metrics-only listener) and the readiness prober, applies a manifest directory, reloads the configuration on SIGHUP
// (through `Reloader`) and drains on SIGTERM or SIGINT; each step is an event line on stderr.
import ArgumentParser
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceIO
import SluiceProxy
import SluiceRouting
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the gateway on a configuration file.")

    @Option(name: .long, help: "The configuration file.")
    var config: String = "config/sluice.yaml"

    @Option(name: .long, help: "Worker threads (overrides the file; default one per core).")
    var workers: Int?

    @Option(name: .long, help: "Listen address, IP:port (overrides the file).")
    var listen: String?

    @Option(name: .long, help: "Admin API address, IP:port (overrides the file).")
    var admin: String?

    @Option(name: .long, help: "Directory of the revision history and applied manifests (overrides stateDir).")
    var stateDir: String?

    @Option(name: .long, help: "Apply every manifest in this directory at start and whenever it changes (overrides manifests).")
    var manifests: String?

    func run() throws {
        let events = EventLog()
        do {
            try serve(events: events)
        } catch {
            // Even a failed start is an event line, so that a log pipeline sees why the gateway is not there.
            events.record(Event("gateway.start_failed", reason: "StartFailed", level: .error, message: "\(error)"))
            throw ExitCode.failure
        }
    }

    /// Starts everything, then serves until SIGTERM or SIGINT; throws only while starting.
    private func serve(events: EventLog) throws {
        // Every thread started from here on inherits this mask, so the signals reach only sigwait below.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGHUP, SIGINT, SIGTERM, SIGUSR1] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        raiseFileLimit()

        let overrides = try overridesFromOptions()
        let file = config
        let load = { () throws(ConfigError) -> GatewayConfig in
            var loaded = try GatewayConfig.load(file: file)
            overrides(&loaded)
            return loaded
        }
        let loaded = try load()
        let store: StateStore
        let plane: ControlPlane
        let gatewayBox = Mutex<Gateway?>(nil)
        do {
            store = try StateStore(directory: loaded.control.stateDir)
            plane = try ControlPlane(config: loaded, store: store, events: events) { routes in
                gatewayBox.withLock { $0 }?.publish(routes: routes)
            }
        } catch let error as StateStoreError {
            throw ValidationError(error.description)
        } catch let error as ControlError {
            throw ValidationError(error.description)
        }
        let gateway = try Gateway(settings: loaded.proxy, routes: plane.routes)
        gatewayBox.withLock { $0 = gateway }
        let reloader = Reloader(plane: plane, gateway: gateway, config: loaded)
        let spanExporter = try startSpanExporter(loaded.proxy.tracing, gateway: gateway)
        // Every /metrics family, in order. The data plane's workers add theirs here.
        let metrics = MetricsEndpoint(writers: [
            ProcessMetrics.write,
            { ProcessMetrics.writeBuildInfo(version: Sluice.version, into: &$0) },
            plane.writeMetrics,
            reloader.writeMetrics,
            events.writeMetrics,
            { spanExporter?.writeMetrics(into: &$0) },
            gateway.writeMetrics,
            { gateway.accessLogStats.write(into: &$0) },
        ])
        // `sluice top`: a minute of the revisions' totals, sampled every 5 s off the request path.
        let top = TopSampler { gateway.revisionStats().map(RevisionCounts.init) }
        top.start()
        plane.start()
        let adminServer = try startAdmin(loaded, plane: plane, gateway: gateway, metrics: metrics, top: top)
        let metricsServer = try startMetricsListener(loaded, metrics: metrics)
        if let directory = loaded.control.manifestsDir { try watchManifests(directory, plane: plane) }
        if let tls = loaded.proxy.tls { try watchCertificates(tls, reloader: reloader) }
        events.record(startedEvent(loaded, gateway: gateway, services: plane.routes.services.count,
                                   metricsPort: metricsServer?.port))

        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            switch received {
            case SIGHUP:
                // One generation: the file, its certificates and the routes all validate, then all apply, or none;
                // the reloader records which, with the field and reason of a refusal.
                reloader.reload(from: load)
            case SIGUSR1:
                // logrotate's postrotate: the access log file is reopened (by the path) before its next write.
                gateway.reopenAccessLog()
                events.record(Event("accesslog.reopened", reason: "AccessLogReopened", message: "access log reopened (SIGUSR1)"))
            case SIGINT, SIGTERM:
                // readyz false → stop accepting → finish in flight → stop; the admin API answers /readyz
                // (503) until the workers are done.
                let graceMs = gateway.settings.shutdownTimeoutMs
                let started = Date()
                events.record(Event("drain.started", reason: "DrainStarted",
                                    message: "shutting down: draining connections (up to \(graceMs) ms)",
                                    fields: [("signal", .string(received == SIGINT ? "SIGINT" : "SIGTERM")),
                                             ("connections", .int(gateway.activeConnections)), ("shutdownTimeoutMs", .int(graceMs))]))
                gateway.shutdown()
                let elapsedMs = Int(Date().timeIntervalSince(started) * 1000)
                events.record(Event("drain.finished", reason: "DrainFinished", message: "drained in \(elapsedMs) ms; stopping",
                                    fields: [("durationMs", .int(elapsedMs)), ("connections", .int(gateway.activeConnections))]))
                spanExporter?.stop()  // after the drain: the last requests' spans go out too
                metricsServer?.stop()
                adminServer.stop()
                plane.stop()
                return
            default:
                // A signal added to the mask without a case here is ignored rather than taken for a shutdown.
                continue
            }
        }
    }

    /// The command-line settings that override the file's, checked once; applied to every load (start and SIGHUP).
    private func overridesFromOptions() throws -> @Sendable (inout GatewayConfig) -> Void {
        let listenAddress = try listen.map { text in
            guard let address = parseAddress(text) else { throw ValidationError("--listen: expected IP:port, got \(text)") }
            return address
        }
        let adminAddress = try admin.map { text in
            guard let address = parseAddress(text) else { throw ValidationError("--admin: expected IP:port, got \(text)") }
            return address
        }
        let (workers, stateDir, manifests) = (self.workers, self.stateDir, self.manifests)
        return { loaded in
            if let workers { loaded.proxy.workers = workers }
            if let listenAddress { loaded.proxy.listen = listenAddress }
            if let adminAddress { loaded.proxy.admin = adminAddress }
            if let stateDir { loaded.control.stateDir = stateDir }
            if let manifests { loaded.control.manifestsDir = manifests }
        }
    }

    /// OTLP span export, when `tracing.otlpEndpoint` is set (read at start, like the queues it drains).
    private func startSpanExporter(_ tracing: TracingSettings, gateway: Gateway) throws -> OTLPExporter? {
        guard let endpoint = tracing.otlpEndpoint else { return nil }
        let exporter: OTLPExporter
        do { exporter = try OTLPExporter(gateway: gateway, endpoint: endpoint, encoding: tracing.otlpEncoding) } catch {
            throw ValidationError(error.description)
        }
        exporter.start()
        return exporter
    }

    /// `gateway.started`: versions, listeners and workers, what an operator checks first.
    private func startedEvent(_ config: GatewayConfig, gateway: Gateway, services: Int, metricsPort: UInt16?) -> Event {
        let listen = SocketAddressSpec(host: config.proxy.listen.host, port: gateway.port)
        var listeners: [String: JSONValue] = ["proxy": .string(listen.description), "admin": .string(config.proxy.admin.description)]
        if let metricsPort, let metricsListen = config.proxy.metrics.listen {
            listeners["metrics"] = .string(SocketAddressSpec(host: metricsListen.host, port: metricsPort).description)
        }
        let versions = JSONValue.object(["sluice": .string(Sluice.version)].merging(
            VersionCommand.libraryVersions.map { ($0.0, JSONValue.string($0.1)) }) { first, _ in first })
        return Event("gateway.started", reason: "Started",
                     message: "sluice \(Sluice.version): listening on \(listen)\(config.proxy.tls == nil ? "" : " (TLS)") with \(gateway.workerCount) workers; admin on \(config.proxy.admin); state in \(config.control.stateDir); \(services) services",
                     fields: [("version", .string(Sluice.version)), ("versions", versions), ("listeners", .object(listeners)),
                              ("workers", .int(gateway.workerCount)), ("tls", .bool(config.proxy.tls != nil)),
                              ("stateDir", .string(config.control.stateDir)), ("services", .int(services)),
                              ("pid", .int(Int(getpid())))])
    }

    private func startAdmin(_ config: GatewayConfig, plane: ControlPlane, gateway: Gateway, metrics: MetricsEndpoint, top: TopSampler) throws -> BlockingServer {
        var token: String? = nil
        if let file = config.control.adminTokenFile {
            token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token?.isEmpty == false else { throw ValidationError("adminTokenFile \(file) is empty") }
        }
        let api = AdminAPI(plane: plane, token: token, gateway: gateway, metrics: metrics, top: top)
        let server = try BlockingServer(host: config.proxy.admin.host, port: config.proxy.admin.port, handler: api.handle)
        server.start()
        return server
    }

    /// `metrics.listen`: GET /metrics without a token, for Prometheus to scrape a port of its own.
    private func startMetricsListener(_ config: GatewayConfig, metrics: MetricsEndpoint) throws -> BlockingServer? {
        guard let address = config.proxy.metrics.listen else { return nil }
        let server: BlockingServer
        do {
            server = try BlockingServer(host: address.host, port: address.port, handler: metrics.handleMetricsOnly)
        } catch {
            throw ValidationError("metrics.listen \(address): \(error)")
        }
        server.start()
        return server
    }

    /// Reloads the certificates when a file in their directories changes (cert-manager, certbot, a Secret mount):
    /// new handshakes use the new pair, established connections keep theirs; a broken pair is logged and refused.
    /// The directories are those at start; the reloader re-reads the files the running configuration names.
    private func watchCertificates(_ tls: TLSSettings, reloader: Reloader) throws {
        let directories = Set(tls.certificates.flatMap { [$0.cert, $0.key] }.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path })
        for directory in directories {
            let watcher: DirectoryWatcher
            do { watcher = try DirectoryWatcher(directory: directory) } catch { throw ValidationError("\(error)") }
            // The reloader records the outcome (tls.reloaded or tls.reload_refused with the file and reason).
            watcher.start { try? reloader.reloadCertificates() }
        }
    }

    /// Applies every `.yaml`, `.yml` and `.json` file of `directory` (in name order), now and after each change.
    private func watchManifests(_ directory: String, plane: ControlPlane) throws {
        @Sendable func applyAll() {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json") }.sorted()
            for file in files {
                let path = directory + "/" + file
                let text: String
                do {
                    text = try String(contentsOfFile: path, encoding: .utf8)
                } catch {
                    plane.events.record(Event("manifests.unreadable", reason: "ManifestUnreadable", level: .warning,
                                              message: "\(path): cannot read: \(error.localizedDescription)", fields: [("source", .string(path))]))
                    continue
                }
                // The plane records each applied service (isvc.applied, with source) and each refusal.
                _ = try? plane.apply(text, defaultNamespace: "default", source: path)
            }
        }
        applyAll()
        let watcher: DirectoryWatcher
        do { watcher = try DirectoryWatcher(directory: directory) } catch { throw ValidationError(error.description) }
        watcher.start(applyAll)
    }
}

/// Parses `IP:port` or `[IPv6]:port`.
func parseAddress(_ text: String) -> SocketAddressSpec? {
    guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return SocketAddressSpec(host: host, port: port)
}

/// Lets the gateway hold as many connections as the hard limit allows (10 000 idle keep-alives need more than 1024).
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
