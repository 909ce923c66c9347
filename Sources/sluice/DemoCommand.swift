// `sluice demo`: runs iris predictors standing in for KServe model servers, until SIGINT or SIGTERM.
// Part of the CLI layer; the servers and models live in SluiceDemo.

import SluiceBlockingHTTP
import ArgumentParser
import Glibc
import SluiceDemo

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run demo iris predictors standing in for KServe model servers.",
        discussion: """
            Each --listen starts one predictor; the n-th --version and --revision apply to the n-th --listen \
            (defaults: version 1, revision <model>-predictor-default-0000n). With no --listen, runs v1 on \
            127.0.0.1:9001 and v2 on 127.0.0.1:9002.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Address to serve one predictor on (repeatable).", valueName: "host:port"))
    var listen: [String] = []

    @Option(name: .long, help: "Model name served at /v1/models/<name> and /v2/models/<name>.")
    var model = "sklearn-iris"

    @Option(name: .long, help: ArgumentHelp("Model version 1 or 2, paired with --listen in order (repeatable).",
                                            valueName: "1|2"))
    var version: [Int] = []

    @Option(name: .long, help: ArgumentHelp("Revision reported in X-Demo-Revision, paired with --listen (repeatable).",
                                            valueName: "name"))
    var revision: [String] = []

    struct Predictor {
        let host: String
        let port: UInt16
        let version: IrisModel.Version
        let revision: String
    }

    func validate() throws {
        _ = try predictors()
    }

    func predictors() throws -> [Predictor] {
        let addresses = listen.isEmpty ? ["127.0.0.1:9001", "127.0.0.1:9002"] : listen
        // The default pair is one v1 and one v2, so a canary split between them is visible out of the box.
        let versions = listen.isEmpty && version.isEmpty ? [1, 2] : version
        guard versions.count <= addresses.count, revision.count <= addresses.count else {
            throw ValidationError("More --version or --revision values than predictors (--listen).")
        }
        return try addresses.enumerated().map { index, address in
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]),
                  colon > address.startIndex else {
                throw ValidationError("--listen '\(address)' is not host:port.")
            }
            let number = index < versions.count ? versions[index] : 1
            guard let modelVersion = IrisModel.Version(rawValue: number) else {
                throw ValidationError("--version \(number) is not 1 or 2.")
            }
            let serial = String(index + 1)
            let name = index < revision.count
                ? revision[index]
                : "\(model)-predictor-default-" + String(repeating: "0", count: max(0, 5 - serial.count)) + serial
            return Predictor(host: String(address[..<colon]), port: port, version: modelVersion, revision: name)
        }
    }

    func run() throws {
        // Blocked before any server thread exists, so every thread inherits the mask and sigwait below sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var servers: [BlockingServer] = []
        for predictor in try predictors() {
            let handler = predictorHandler(modelName: model, version: predictor.version, revision: predictor.revision)
            let server = try BlockingServer(host: predictor.host, port: predictor.port, handler: handler)
            server.start()
            servers.append(server)
            print("demo predictor \(model) v\(predictor.version.rawValue) (revision \(predictor.revision)) "
                + "on \(predictor.host):\(server.port)")
        }
        // Scripts (make run, tests) wait for these lines through a pipe, where stdout is fully buffered.
        // fflush(nil) flushes every stream; naming `stdout` is rejected in Swift 6 as unsynchronised global state.
        fflush(nil)

        var received: Int32 = 0
        sigwait(&signals, &received)
        for server in servers { server.stop() }
    }
}
