// Test support for TLS: certificates made at test time with the openssl command line (never committed), a
// gateway on a TLS listener, and bounded runs of the command-line clients (curl, openssl s_client, python3).
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceTLS
import XCTest

/// A scratch directory of self-signed ECDSA P-256 certificates; removed on deinit.
final class TestCertificates: @unchecked Sendable {  // written during setup only
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "sluice-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Makes `<name>.crt`/`<name>.key` for the DNS names (the first is also the CN); `organization` tells
    /// certificates for the same names apart.
    @discardableResult
    func make(_ name: String, dnsNames: [String], organization: String = "Sluice Test") throws -> TLSCertificateFiles {
        let files = TLSCertificateFiles(cert: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        let san = dnsNames.map { "DNS:\($0)" }.joined(separator: ",")
        let r = runCommand("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", files.key, "-out", files.cert, "-days", "2",
                                "-subj", "/O=\(organization)/CN=\(dnsNames[0])", "-addext", "subjectAltName=\(san)"])
        guard r.status == 0 else { throw TestClientError.malformed("openssl req failed: \(r.output)") }
        return files
    }

    /// A CA bundle holding these (self-signed) certificates, for clients' trust.
    func bundle(_ files: [TLSCertificateFiles], name: String = "bundle") throws -> String {
        let path = "\(directory)/\(name).pem"
        let text = try files.map { try String(contentsOfFile: $0.cert, encoding: .utf8) }.joined()
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

struct CommandResult {
    var status: Int32
    var output: String
}

/// Runs a command with stdin from `input` (or empty), stdout and stderr together, killed after `timeout`.
func runCommand(_ command: String, _ arguments: [String], input: String = "", timeout: TimeInterval = 30,
         environment: [String: String] = [:]) -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [command] + arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe()
    let inPipe = Pipe()
    process.standardOutput = out
    process.standardError = out
    process.standardInput = inPipe
    do { try process.run() } catch { return CommandResult(status: -1, output: "\(error)") }
    inPipe.fileHandleForWriting.write(Data(input.utf8))
    try? inPipe.fileHandleForWriting.close()
    let finished = DispatchSemaphore(value: 0)
    let collected = OutputBox()
    DispatchQueue.global().async {
        collected.data = out.fileHandleForReading.readDataToEndOfFile()
        finished.signal()
    }
    if finished.wait(timeout: .now() + timeout) == .timedOut {
        process.terminate()
        _ = finished.wait(timeout: .now() + 5)
    }
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, output: String(decoding: collected.data, as: UTF8.self))
}

private final class OutputBox: @unchecked Sendable { var data = Data() }  // written before the semaphore signals

/// `openssl s_client` against the gateway; stdin is empty, so it completes the handshake and quits.
func sClient(port: UInt16, _ extra: [String], input: String = "") -> CommandResult {
    // OPENSSL_CONF=/dev/null: the client side must not be limited by Debian's system policy (MinProtocol
    // TLSv1.2, SECLEVEL=2), so that a refused old protocol or cipher is the gateway's refusal.
    runCommand("openssl", ["s_client", "-connect", "127.0.0.1:\(port)"] + extra, input: input, timeout: 20,
        environment: ["OPENSSL_CONF": "/dev/null"])
}

/// The `subject=` line s_client prints for the served certificate.
func servedSubject(_ result: CommandResult) -> String? {
    result.output.split(separator: "\n").first { $0.hasPrefix("subject=") }.map(String.init)
}

/// A gateway fixture with TLS on its listener; the backends echo what the gateway told them.
func tlsGateway(_ certificates: [TLSCertificateFiles], workers: Int = 2,
                configure: (inout TLSSettings) -> Void = { _ in }) throws -> GatewayFixture {
    var tls = TLSSettings(certificates: certificates)
    configure(&tls)
    let echo: @Sendable (BlockingRequest) -> BlockingResponse = { request in
        .json("{\"proto\": \"\(request.header("X-Forwarded-Proto") ?? "")\", \"path\": \"\(request.path)\", \"bytes\": \(request.body.count)}")
    }
    return try GatewayFixture(split: 0, workers: workers, settings: { $0.tls = tls }, handler1: echo, handler2: echo)
}

/// A Python `ssl` client: `once` makes one connection with two keep-alive requests and prints what it saw;
/// `loop N` makes N rounds of (a request on a fresh connection, a request on one long-lived connection) and
/// prints the counts and the certificate organisations it was served.
let pythonClient = #"""
import socket, ssl, sys
mode, port, cafile, host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])  # this client speaks HTTP/1.1 only, so it must not offer h2

def connect():
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)

def request(s):
    s.sendall(b"POST /v1/models/sklearn-iris:predict HTTP/1.1\r\nHost: " + host.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk: raise EOFError("closed before the head")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length": length = int(value)
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk: raise EOFError("closed in the body")
        rest += chunk
    return int(head.split(b" ")[1]), rest[:length].decode()

def organization(s):
    for rdn in s.getpeercert()["subject"]:
        for key, value in rdn:
            if key == "organizationName": return value
    return "?"

if mode == "once":
    s = connect()
    status1, body1 = request(s)
    status2, _ = request(s)
    print("version=%s alpn=%s status=%d,%d body=%s" % (s.version(), s.selected_alpn_protocol(), status1, status2, body1))
else:
    ok = fail = 0
    orgs = set()
    errors = []
    long_lived = connect()
    orgs.add(organization(long_lived))
    for i in range(int(sys.argv[5])):
        for fresh in (True, False):
            try:
                s = connect() if fresh else long_lived
                if fresh: orgs.add(organization(s))
                status, _ = request(s)
                if fresh: s.close()
                if status == 200: ok += 1
                else: fail += 1; errors.append("status %d" % status)
            except Exception as e:
                fail += 1; errors.append(repr(e))
    print("ok=%d fail=%d orgs=%s errors=%s" % (ok, fail, ",".join(sorted(orgs)), errors[:3]))
"""#

/// Writes the Python client next to the certificates and returns its path.
func pythonClientScript(in certs: TestCertificates) throws -> String {
    let path = certs.directory + "/client.py"
    try pythonClient.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
