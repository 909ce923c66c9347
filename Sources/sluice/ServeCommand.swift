// `sluice serve`: loads the configuration and the saved rollout state, starts the data plane, the admin API and the
// readiness prober, applies a manifest directory, reloads the configuration on SIGHUP (through `Reloader`) and
// drains on SIGTERM or SIGINT.
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
        // Every thread started from here on inherits this mask, so the signals reach only sigwait below.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGHUP, SIGINT, SIGTERM] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        raiseFileLimit()

        let loaded = try loadConfig()
        let store: StateStore
        let plane: ControlPlane
        let gatewayBox = Mutex<Gateway?>(nil)
        do {
            store = try StateStore(directory: loaded.control.stateDir)
            plane = try ControlPlane(config: loaded, store: store) { routes in
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
        plane.start()
        let adminServer = try startAdmin(loaded, plane: plane, gateway: gateway)
        if let directory = loaded.control.manifestsDir { try watchManifests(directory, plane: plane) }
        if let tls = loaded.proxy.tls { try watchCertificates(tls, reloader: reloader) }
        print("sluice \(Sluice.version): listening on \(loaded.proxy.listen.host):\(gateway.port) with \(gateway.workerCount) workers; admin on \(loaded.proxy.admin); state in \(loaded.control.stateDir); \(plane.routes.services.count) services")
        fflush(nil)

        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            switch received {
            case SIGHUP:
                // One generation: the file, its certificates and the routes all validate, then all apply, or none.
                do {
                    let needsRestart = try reloader.reload(try loadConfig())
                    if !needsRestart.isEmpty {
                        log("reload: these settings need a restart and keep their running values: \(needsRestart.joined(separator: ", "))")
                    }
                    log("reload: \(config) applied (\(plane.routes.services.count) services)")
                } catch {
                    log("reload: \(error); the running configuration stays")
                }
            default:
                // readyz false → stop accepting → finish in flight → stop; the admin API answers /readyz
                // (503) until the workers are done.
                let graceMs = gateway.settings.shutdownTimeoutMs
                log("shutting down: draining connections (up to \(graceMs) ms)")
                gateway.shutdown()
                spanExporter?.stop()  // after the drain: the last requests' spans go out too
                adminServer.stop()
                plane.stop()
                return
            }
        }
    }

    private func loadConfig() throws -> GatewayConfig {
        var loaded = try GatewayConfig.load(file: config)
        if let workers { loaded.proxy.workers = workers }
        if let listen {
            guard let address = parseAddress(listen) else { throw ValidationError("--listen: expected IP:port, got \(listen)") }
            loaded.proxy.listen = address
        }
        if let admin {
            guard let address = parseAddress(admin) else { throw ValidationError("--admin: expected IP:port, got \(admin)") }
            loaded.proxy.admin = address
        }
        if let stateDir { loaded.control.stateDir = stateDir }
        if let manifests { loaded.control.manifestsDir = manifests }
        return loaded
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

    private func startAdmin(_ config: GatewayConfig, plane: ControlPlane, gateway: Gateway) throws -> BlockingServer {
        var token: String? = nil
        if let file = config.control.adminTokenFile {
            token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token?.isEmpty == false else { throw ValidationError("adminTokenFile \(file) is empty") }
        }
        let api = AdminAPI(plane: plane, token: token, gateway: gateway)
        let server = try BlockingServer(host: config.proxy.admin.host, port: config.proxy.admin.port, handler: api.handle)
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
            watcher.start {
                do {
                    try reloader.reloadCertificates()
                    log("tls: certificates in \(directory) changed; reloaded")
                } catch {
                    log("tls: \(error); the running certificates stay")
                }
            }
        }
    }

    /// Applies every `.yaml`, `.yml` and `.json` file of `directory` (in name order), now and after each change.
    private func watchManifests(_ directory: String, plane: ControlPlane) throws {
        @Sendable func applyAll() {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json") }.sorted()
            for file in files {
                let path = directory + "/" + file
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
                do {
                    for (isvc, result) in try plane.apply(text, defaultNamespace: "default", source: path) where result != .unchanged {
                        log("manifests: \(path): inferenceservice.serving.kserve.io/\(isvc.name) \(result)")
                    }
                } catch {
                    log("manifests: \(path): \(error.description)")
                }
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

func log(_ message: String) {
    Posix.writeStderr("sluice: \(message)\n")
}

/// Lets the gateway hold as many connections as the hard limit allows (10 000 idle keep-alives need more than 1024).
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
