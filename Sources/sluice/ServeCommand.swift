// `sluice serve`: loads the configuration and the saved rollout state, starts the data plane, the admin API (and the
// metrics-only listener) and the readiness prober, applies a manifest directory, reloads the configuration on SIGHUP
// (through `Reloader`) and drains on SIGTERM or SIGINT; claims its listen addresses (one sluice per address), and
// with --takeover receives the listeners of the sluice serving them and tells it to drain; each step is an event
// line on stderr.
import ArgumentParser
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceIO
import SluiceProxy
import SluiceRouting
import SluiceTLS
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

    @Option(name: .long, help: "File holding the bearer token the admin API requires (overrides adminTokenFile; needed for a non-loopback --admin).")
    var adminTokenFile: String?

    @Option(name: .long, help: "The admin API's TLS certificate (PEM; with --admin-tls-key; overrides adminTLS).")
    var adminTlsCert: String?

    @Option(name: .long, help: "The admin API's TLS private key (PEM; with --admin-tls-cert).")
    var adminTlsKey: String?

    @Option(name: .long, help: "Directory of the revision history and applied manifests (overrides stateDir).")
    var stateDir: String?

    @Option(name: .long, help: "Apply every manifest in this directory at start and whenever it changes (overrides manifests).")
    var manifests: String?

    @Flag(name: .long, help: "Take the listening sockets over from the sluice serving this listen address (its state directory, admin and metrics ports too), then tell it to drain and exit: a binary upgrade without losing a request.")
    var takeover = false

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
        // SIGUSR2 is internal: the takeover thread's nudge once a new process serves our listeners.
        for s in [SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2] { sigaddset(&signals, s) }
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
        // The file's `admin:` is checked as it loads; an address from --admin is checked here, on the merged
        // settings, before any socket is bound or claimed: an admin API reachable from elsewhere without a token
        // would let anyone there change the routes.
        if let refusal = AdminAuth.exposureRefusal(loaded.proxy.admin, hasToken: loaded.control.adminTokenFile != nil) {
            throw ValidationError(refusal)
        }
        if !AdminAuth.isLoopback(loaded.proxy.admin.host) && loaded.control.adminTLS == nil {
            events.record(Event("admin.plaintext", reason: "AdminPlaintext", level: .warning,
                                message: "the admin API on \(loaded.proxy.admin) takes its bearer token over plain HTTP: anyone on the way can read it, and kubectl does not send it at all (client-go sends a kubeconfig's credentials over https only); set adminTLS (--admin-tls-cert, --admin-tls-key)"))
        }
        // One sluice per listen address: each is claimed before anything is bound or the state directory locked.
        // With --takeover the client listener's sockets and claim come from the running process instead, which
        // releases its admin and metrics ports and its state directory only once they were checked.
        let claims = ListenClaims()
        var handover: TakeoverClient? = nil
        if takeover {
            guard loaded.proxy.listen.port != 0 else { throw ValidationError("--takeover needs a fixed listen port (the configuration asks for port 0)") }
            let client = try TakeoverClient.connect(loaded.proxy.listen)
            try client.verify(listen: loaded.proxy.listen)
            // What can fail later is checked now, while a refusal still leaves the running process untouched.
            do {
                if let tls = loaded.proxy.tls { _ = try Gateway.tlsContext(tls) }
                if let file = loaded.control.adminTokenFile { _ = try String(contentsOfFile: file, encoding: .utf8) }
            } catch {
                try client.refuse("\(error)")
            }
            events.record(Event("takeover.started", reason: "TakeoverStarted",
                                message: "taking over \(loaded.proxy.listen) from sluice process \(client.pid): received \(client.listeners.count) listening sockets",
                                fields: [("fromPid", .int(Int(client.pid))), ("listeners", .int(client.listeners.count))]))
            try client.release()
            handover = client
        } else {
            try claims.claim(loaded.proxy.listen, role: "listen")
            try ListenClaims.probeExclusive(loaded.proxy.listen, role: "listen")
        }
        try claims.claim(loaded.proxy.admin, role: "admin")
        if let metricsListen = loaded.proxy.metrics.listen { try claims.claim(metricsListen, role: "metrics.listen") }
        let store: StateStore
        let plane: ControlPlane
        let gatewayBox = Mutex<Gateway?>(nil)
        do {
            // After a release the old process may still be closing the lock file: wait for it, boundedly.
            store = try StateStore(directory: loaded.control.stateDir, waitMs: handover == nil ? 0 : 10_000)
            plane = try ControlPlane(config: loaded, store: store, events: events) { routes in
                gatewayBox.withLock { $0 }?.publish(routes: routes)
            }
        } catch let error as StateStoreError {
            throw ValidationError(error.description)
        } catch let error as ControlError {
            throw ValidationError(error.description)
        }
        handover?.handOverDescriptors()  // the gateway's now: it closes them, on failure or when it drains
        let gateway = try Gateway(settings: loaded.proxy, routes: plane.routes, adopting: handover?.listeners ?? [])
        gatewayBox.withLock { $0 = gateway }
        let listenAddress = SocketAddressSpec(host: loaded.proxy.listen.host, port: gateway.port)
        if let handover { claims.adopt(handover.claimFD, for: listenAddress) } else if loaded.proxy.listen.port == 0 {
            try claims.claim(listenAddress, role: "listen")
        }
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
        let top = TopSampler { gateway.revisionStats().filter { !$0.shadow }.map(RevisionCounts.init) }  // client traffic only
        top.start()
        // Canary analysis: checks each running analysis's interval about once a second, from the same totals.
        let analyzer = CanaryAnalyzer(plane: plane) { gateway.revisionStats().map(RevisionCounts.init) }
        analyzer.start()
        plane.start()
        let adminServer = try startAdmin(loaded, plane: plane, gateway: gateway, metrics: metrics, top: top)
        let metricsServer = try startMetricsListener(loaded, metrics: metrics)
        let adminAddress = SocketAddressSpec(host: loaded.proxy.admin.host, port: adminServer.port)
        let metricsAddress = metricsServer.map { SocketAddressSpec(host: loaded.proxy.metrics.listen!.host, port: $0.port) }
        if loaded.proxy.admin.port == 0 { try claims.claim(adminAddress, role: "admin") }
        plane.setServingAddresses(listen: "\(listenAddress)", admin: "\(adminAddress)")
        if let metricsAddress, loaded.proxy.metrics.listen?.port == 0 { try claims.claim(metricsAddress, role: "metrics.listen") }
        if let handover {
            // Our workers accept on the shared sockets already: the old process may stop accepting.
            do { try handover.drain() } catch {
                events.record(Event("takeover.drain_unconfirmed", reason: "TakeoverDrainUnconfirmed", level: .warning, message: "\(error)"))
            }
        }
        // The next takeover asks us, on the claim socket of the client listener.
        let takeoverRequested = Atomic<Bool>(false)
        let takeoverServer = TakeoverServer(
            claimFD: claims.descriptor(for: listenAddress)!, listeners: gateway.listenerDescriptors, address: listenAddress, events: events,
            hooks: .init(release: {
                // The new process binds these next; the data plane keeps serving with the routes in force.
                adminServer.stop()
                metricsServer?.stop()
                claims.release(adminAddress)
                if let metricsAddress { claims.release(metricsAddress) }
                analyzer.stop()
                plane.stop()
            }, drain: {
                takeoverRequested.store(true, ordering: .releasing)
                kill(getpid(), SIGUSR2)
            }))
        takeoverServer.start()
        if let directory = loaded.control.manifestsDir { try watchManifests(directory, plane: plane) }
        if let tls = loaded.proxy.tls { try watchCertificates(tls, reloader: reloader) }
        events.record(startedEvent(loaded, gateway: gateway, services: plane.routes.services.count,
                                   metricsPort: metricsServer?.port, takeoverFrom: handover?.pid))

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
            case SIGINT, SIGTERM, SIGUSR2:
                // SIGUSR2 counts only from the takeover thread, once a new process accepts on our listeners.
                if received == SIGUSR2 && !takeoverRequested.load(ordering: .acquiring) { continue }
                // readyz false → stop accepting → finish in flight → stop; the admin API answers /readyz
                // (503) until the workers are done (after a takeover the admin API is the new process's already).
                let graceMs = gateway.settings.shutdownTimeoutMs
                let started = Date()
                let cause = received == SIGUSR2 ? "takeover" : received == SIGINT ? "SIGINT" : "SIGTERM"
                events.record(Event("drain.started", reason: "DrainStarted",
                                    message: "shutting down\(received == SIGUSR2 ? " (taken over)" : ""): draining connections (up to \(graceMs) ms)",
                                    fields: [("signal", .string(cause)),
                                             ("connections", .int(gateway.activeConnections)), ("shutdownTimeoutMs", .int(graceMs))]))
                gateway.shutdown()
                let elapsedMs = Int(Date().timeIntervalSince(started) * 1000)
                events.record(Event("drain.finished", reason: "DrainFinished", message: "drained in \(elapsedMs) ms; stopping",
                                    fields: [("durationMs", .int(elapsedMs)), ("connections", .int(gateway.activeConnections))]))
                takeoverServer.stop()
                spanExporter?.stop()  // after the drain: the last requests' spans go out too
                metricsServer?.stop()
                adminServer.stop()
                analyzer.stop()
                plane.stop()
                return
            default:
                // A signal added to the mask without a case here is ignored rather than taken for a shutdown.
                continue
            }
        }
    }

    /// Where the state lives, for the start line.
    static func stateDescription(_ control: ControlSettings) -> String {
        switch control.stateStore {
        case .file: return control.stateDir
        case .etcd(let etcd): return "etcd \(etcd.client.endpoints.joined(separator: ",")) under \(etcd.client.prefix) (snapshot in \(control.stateDir))"
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
        guard (adminTlsCert == nil) == (adminTlsKey == nil) else { throw ValidationError("--admin-tls-cert and --admin-tls-key go together") }
        let adminTLS = adminTlsCert.flatMap { cert in adminTlsKey.map { TLSCertificateFiles(cert: cert, key: $0) } }
        if let adminTLS {
            do { _ = try AdminTLS(adminTLS) } catch { throw ValidationError("--admin-tls-\(error.isKey ? "key" : "cert"): \(error)") }
        }
        let (workers, stateDir, manifests, adminTokenFile) = (self.workers, self.stateDir, self.manifests, self.adminTokenFile)
        return { loaded in
            if let workers { loaded.proxy.workers = workers }
            if let listenAddress { loaded.proxy.listen = listenAddress }
            if let adminAddress { loaded.proxy.admin = adminAddress }
            if let stateDir { loaded.control.stateDir = stateDir }
            if let manifests { loaded.control.manifestsDir = manifests }
            if let adminTokenFile { loaded.control.adminTokenFile = adminTokenFile }
            if let adminTLS { loaded.control.adminTLS = adminTLS }
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
    private func startedEvent(_ config: GatewayConfig, gateway: Gateway, services: Int, metricsPort: UInt16?, takeoverFrom: Int32?) -> Event {
        let listen = SocketAddressSpec(host: config.proxy.listen.host, port: gateway.port)
        var listeners: [String: JSONValue] = ["proxy": .string(listen.description), "admin": .string(config.proxy.admin.description)]
        if let metricsPort, let metricsListen = config.proxy.metrics.listen {
            listeners["metrics"] = .string(SocketAddressSpec(host: metricsListen.host, port: metricsPort).description)
        }
        let versions = JSONValue.object(["sluice": .string(Sluice.version)].merging(
            VersionCommand.libraryVersions.map { ($0.0, JSONValue.string($0.1)) }) { first, _ in first })
        return Event("gateway.started", reason: "Started",
                     message: "sluice \(Sluice.version): listening on \(listen)\(config.proxy.tls == nil ? "" : " (TLS)") with \(gateway.workerCount) workers; admin on \(config.proxy.admin)\(config.control.adminTLS == nil ? "" : " (TLS)"); state in \(Self.stateDescription(config.control)); \(services) services",
                     fields: [("version", .string(Sluice.version)), ("versions", versions), ("listeners", .object(listeners)),
                              ("workers", .int(gateway.workerCount)), ("tls", .bool(config.proxy.tls != nil)), ("adminTLS", .bool(config.control.adminTLS != nil)),
                              ("stateDir", .string(config.control.stateDir)), ("services", .int(services)),
                              ("pid", .int(Int(getpid())))] + (takeoverFrom.map { [("takeoverFromPid", .int(Int($0)))] } ?? []))
    }

    private func startAdmin(_ config: GatewayConfig, plane: ControlPlane, gateway: Gateway, metrics: MetricsEndpoint, top: TopSampler) throws -> BlockingServer {
        var token: String? = nil
        if let file = config.control.adminTokenFile {
            token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token?.isEmpty == false else { throw ValidationError("adminTokenFile \(file) is empty") }
        }
        let api = AdminAPI(plane: plane, token: token, gateway: gateway, metrics: metrics, top: top)
        let transport: AdminTLS?
        do { transport = try config.control.adminTLS.map(AdminTLS.init) } catch { throw ValidationError("adminTLS: \(error)") }
        let server = try BlockingServer(host: config.proxy.admin.host, port: config.proxy.admin.port, transport: transport, handler: api.handle)
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
