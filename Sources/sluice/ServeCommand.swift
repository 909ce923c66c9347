// `sluice serve`: loads the configuration, starts the data plane and the admin listener, reloads on SIGHUP.
import SluiceBlockingHTTP
import ArgumentParser
import SluiceControl
import SluiceDemo
import SluiceProxy
import SluiceRouting
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

    func run() throws {
        // Every thread started from here on inherits this mask, so the signals reach only sigwait below.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGHUP, SIGINT, SIGTERM] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var loaded = try loadConfig()
        var routes = try routeTable(loaded)
        let gateway = try Gateway(settings: loaded.proxy, routes: routes)
        let admin = try startAdmin(loaded.proxy.admin, gateway: gateway)
        raiseFileLimit()
        print("sluice \(Sluice.version): listening on \(loaded.proxy.listen.host):\(gateway.port) with \(gateway.workerCount) workers; admin on \(loaded.proxy.admin); \(routes.services.count) services")
        fflush(nil)

        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            switch received {
            case SIGHUP:
                do {
                    let next = try loadConfig()
                    routes = try routeTable(next)
                    if next.proxy.listen != loaded.proxy.listen || next.proxy.workers != loaded.proxy.workers || next.proxy.admin != loaded.proxy.admin {
                        log("reload: listen, admin and workers changes need a restart; other changes applied")
                    }
                    var settings = next.proxy
                    settings.listen = loaded.proxy.listen
                    gateway.publish(routes: routes, settings: settings)
                    loaded = next
                    log("reload: \(config) applied (\(routes.services.count) services)")
                } catch {
                    log("reload: \(error); the running configuration stays")
                }
            default:
                log("shutting down: draining connections")
                admin.stop()
                gateway.shutdown(graceMs: 10_000)
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
        return loaded
    }

    private func routeTable(_ config: GatewayConfig) throws -> RouteTable {
        try config.routeTable()
    }

    private func startAdmin(_ address: SocketAddressSpec, gateway: Gateway) throws -> BlockingServer {
        let server = try BlockingServer(host: address.host, port: address.port) { request in
            switch (request.method, request.target) {
            case ("GET", "/healthz"):
                return .json(status: 200, "{\"status\": \"ok\", \"connections\": \(gateway.activeConnections)}")
            default:
                return .json(status: 404, "{\"error\": \"not found\"}")
            }
        }
        server.start()
        return server
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
    let line = "sluice: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Lets the gateway hold as many connections as the hard limit allows (10 000 idle keep-alives need more than 1024).
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
