// Test support: real etcd members (Debian's /usr/bin/etcd) on 127.0.0.1, each with its own temporary data dir and
// log; started, stopped (SIGTERM), killed (SIGKILL) and restarted by pid, and all stopped on stopAll()/deinit.
import Foundation
import SluiceControl
import XCTest

/// The certificate files of a TLS cluster: the server's pair, the CA that signed it, and whether members demand a
/// client certificate signed by that CA (`--client-cert-auth`); then `clientCertFile`/`clientKeyFile` are the pair
/// the cluster's client settings (and its health check) present.
struct EtcdClusterTLS {
    var certFile: String
    var keyFile: String
    var caFile: String
    var requiresClientCertificate: Bool
    var clientCertFile: String? = nil
    var clientKeyFile: String? = nil
}

struct EtcdClusterError: Error, CustomStringConvertible {
    let description: String
}

final class EtcdCluster: @unchecked Sendable {  // driven by one test thread at a time
    struct Member {
        let name: String
        let clientPort: UInt16
        let peerPort: UInt16
        let dataDirectory: String
        let logPath: String
        var process: Process?
    }

    let directory: String
    private(set) var members: [Member]
    let tls: EtcdClusterTLS?
    /// Extra etcd flags for every member (e.g. `--experimental-watch-progress-notify-interval=500ms`).
    let extraArguments: [String]
    /// Client settings the health check uses (a TLS cluster's CA and client certificate, credentials once auth is on).
    var healthSettings: (inout EtcdSettings) -> Void = { _ in }

    /// `size` members (1 or 3): member i listens for clients on basePort + 2i and for peers on basePort + 2i + 1.
    /// Starts them all and waits until each answers.
    init(size: Int, basePort: UInt16, tls: EtcdClusterTLS? = nil, extraArguments: [String] = [], directory: String? = nil,
         timeout: TimeInterval = 20) throws {
        let root = directory ?? NSTemporaryDirectory() + "sluice-etcd-" + UUID().uuidString
        self.directory = root
        self.tls = tls
        self.extraArguments = extraArguments
        members = (0..<size).map { index in
            Member(name: "m\(index)", clientPort: basePort + UInt16(2 * index), peerPort: basePort + UInt16(2 * index + 1),
                   dataDirectory: "\(root)/m\(index).etcd", logPath: "\(root)/m\(index).log", process: nil)
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        do {
            for index in members.indices { try launch(index) }
            for index in members.indices { try waitUntilHealthy(member: index, timeout: timeout) }
        } catch {
            stopAll()
            throw error
        }
    }

    deinit {
        stopAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var scheme: String { tls == nil ? "http" : "https" }
    var clientURLs: [String] { members.map { "\(scheme)://127.0.0.1:\($0.clientPort)" } }

    /// Settings for a client of every member (a TLS cluster's CA filled in).
    func settings(prefix: String = "/sluice/") -> EtcdSettings {
        var settings = EtcdSettings(endpoints: clientURLs, prefix: prefix)
        settings.caFile = tls?.caFile
        settings.certFile = tls?.clientCertFile
        settings.keyFile = tls?.clientKeyFile
        return settings
    }

    private func launch(_ index: Int) throws {
        let member = members[index]
        let cluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        var arguments = [
            "--name", member.name, "--data-dir", member.dataDirectory,
            "--listen-client-urls", "\(scheme)://127.0.0.1:\(member.clientPort)",
            "--advertise-client-urls", "\(scheme)://127.0.0.1:\(member.clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "sluice-test-\(members[0].clientPort)",
            // Short election timings: a test cluster on loopback elects and fails over in a fraction of a second.
            "--heartbeat-interval", "50", "--election-timeout", "500",
        ]
        if let tls {
            arguments += ["--cert-file", tls.certFile, "--key-file", tls.keyFile, "--trusted-ca-file", tls.caFile]
            if tls.requiresClientCertificate { arguments.append("--client-cert-auth") }
        }
        arguments += extraArguments
        _ = FileManager.default.createFile(atPath: member.logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: member.logPath) else {
            throw EtcdClusterError(description: "cannot open \(member.logPath)")
        }
        log.seekToEndOfFile()
        let process = Process()
        // setpriv execs etcd (same pid) with a parent-death signal: a test process killed before its deinit
        // (a timeout's SIGKILL) takes its members along instead of leaving them on the ports. The signal fires
        // when the launching thread ends, so start members from a thread that outlives them (XCTest's main one).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--pdeathsig", "KILL", "/usr/bin/etcd"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
            process.arguments = arguments
        }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        members[index].process = process
    }

    /// Starts a stopped or killed member again on its data dir: it rejoins the cluster.
    func start(member index: Int, timeout: TimeInterval = 20) throws {
        precondition(members[index].process == nil, "member \(index) is running")
        try launch(index)
        try waitUntilHealthy(member: index, timeout: timeout)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`.
    func stop(member index: Int, timeout: TimeInterval = 10) {
        signal(member: index, SIGTERM, timeout: timeout)
    }

    /// SIGKILL: a crash, without a clean shutdown.
    func kill(member index: Int) {
        signal(member: index, SIGKILL, timeout: 10)
    }

    func stopAll() {
        for index in members.indices { stop(member: index) }
    }

    private func signal(member index: Int, _ signal: Int32, timeout: TimeInterval) {
        guard let process = members[index].process else { return }
        members[index].process = nil
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }  // polling the exit, bounded by the deadline
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Polls until the member answers a range through the client (an authentication refusal counts: it answered
    /// with a leader); throws with the member's log when the deadline passes.
    func waitUntilHealthy(member index: Int, timeout: TimeInterval = 20) throws {
        var settings = settings()
        settings.endpoints = [clientURLs[index]]
        settings.requestTimeoutMilliseconds = 1_000
        healthSettings(&settings)
        let client = try EtcdClient(settings: settings)
        let deadline = Date().addingTimeInterval(timeout)
        var lastError = "not tried"
        while Date() < deadline {
            guard members[index].process?.isRunning == true else {
                throw EtcdClusterError(description: "etcd member \(index) exited:\n\(log(member: index))")
            }
            do {
                _ = try client.range("/health-probe")
                return
            } catch {
                if case .failed = error.kind { return }
                lastError = error.description
            }
            usleep(50_000)  // polling the member's health, bounded by the deadline
        }
        throw EtcdClusterError(description: "etcd member \(index) not healthy after \(timeout) s (\(lastError)):\n\(log(member: index))")
    }

    func log(member index: Int) -> String {
        let text = (try? String(contentsOfFile: members[index].logPath, encoding: .utf8)) ?? "(no log)"
        return String(text.suffix(4_000))
    }

    /// Every member's log tail, for a failure message.
    var logs: String { members.indices.map { "--- \(members[$0].name)\n\(log(member: $0))" }.joined(separator: "\n") }

    /// Runs etcdctl (API v3) against the cluster with `arguments`, bounded by `timeout`; the exit status and output.
    @discardableResult
    func etcdctl(_ arguments: [String], timeout: TimeInterval = 15) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        var tlsArguments: [String] = []
        if let tls { tlsArguments = ["--cacert", tls.caFile] }
        process.arguments = ["--endpoints", clientURLs.joined(separator: ","), "--dial-timeout", "3s"] + tlsArguments + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let outputPath = "\(directory)/etcdctl-\(UUID().uuidString).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        guard let output = FileHandle(forWritingAtPath: outputPath) else { return (-1, "cannot open \(outputPath)") }
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "\(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }  // polling the exit, bounded by the deadline
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        try? output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, text)
    }
}
