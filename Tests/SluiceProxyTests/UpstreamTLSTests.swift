// Integration: upstream TLS (gateway → pod) on `https://` endpoints — a Python `ssl` HTTPS pod with a certificate
// made at test time by a CA made at test time; verification, keep-alive reuse, and the `upstreamTLS` config.
import Foundation
import SluiceControl
import SluiceProxy
import SluiceRouting
import SluiceTLS
import XCTest

/// A test CA and leaf certificates it signs (ECDSA P-256), in a TestCertificates scratch directory.
struct TestCA {
    let certs: TestCertificates
    let name: String
    var cert: String { "\(certs.directory)/\(name).crt" }
    var key: String { "\(certs.directory)/\(name).key" }

    init(_ certs: TestCertificates, name: String) throws {
        self.certs = certs
        self.name = name
        let r = runCommand("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                       "-keyout", "\(certs.directory)/\(name).key", "-out", "\(certs.directory)/\(name).crt",
                                       "-days", "2", "-subj", "/O=Sluice Test/CN=\(name)"])
        guard r.status == 0 else { throw TestClientError.malformed("openssl req (CA) failed: \(r.output)") }
    }

    /// A leaf for the subjectAltNames (`IP:127.0.0.1,DNS:pod.test`), signed by this CA.
    func issue(_ leaf: String, san: String) throws -> TLSCertificateFiles {
        let dir = certs.directory
        let files = TLSCertificateFiles(cert: "\(dir)/\(leaf).crt", key: "\(dir)/\(leaf).key")
        var r = runCommand("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                       "-keyout", files.key, "-out", "\(dir)/\(leaf).csr", "-subj", "/O=Sluice Test/CN=\(leaf)"])
        guard r.status == 0 else { throw TestClientError.malformed("openssl req (leaf) failed: \(r.output)") }
        try "subjectAltName=\(san)\nbasicConstraints=CA:FALSE\n".write(toFile: "\(dir)/\(leaf).ext", atomically: true, encoding: .utf8)
        r = runCommand("openssl", ["x509", "-req", "-in", "\(dir)/\(leaf).csr", "-CA", cert, "-CAkey", key, "-CAcreateserial",
                                   "-out", files.cert, "-days", "2", "-extfile", "\(dir)/\(leaf).ext"])
        guard r.status == 0 else { throw TestClientError.malformed("openssl x509 -req failed: \(r.output)") }
        return files
    }
}

/// An HTTPS/1.1 pod in Python (http.server + ssl, keep-alive). It counts completed TLS handshakes, requests and
/// connections it has closed in `<dir>/counts.json`, and answers with the connection's number in `X-Pod-Connection`.
final class PythonTLSPod: @unchecked Sendable {  // fields set in init, read-only after
    let process = Process()
    let port: UInt16
    let stateFile: String

    static let script = #"""
import http.server, json, os, socketserver, ssl, sys, threading
cert, key, state = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
counts = {"handshakes": 0, "requests": 0, "failedHandshakes": 0, "closed": 0}
def dump():
    tmp = state + ".tmp"
    with open(tmp, "w") as f: json.dump(counts, f)
    os.replace(tmp, state)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
if cert != "-": ctx.load_cert_chain(cert, key)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        try:
            if cert != "-": self.request.do_handshake()
        except (ssl.SSLError, OSError):
            with lock:
                counts["failedHandshakes"] += 1; dump()
            raise
        with lock:
            counts["handshakes"] += 1; self.conn_id = counts["handshakes"]; dump()
        super().setup()
    def handle(self):
        try: super().handle()
        except (ssl.SSLError, OSError): pass
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(n) if n else b""
        with lock:
            counts["requests"] += 1; dump()
        body = ("conn=%d path=%s bytes=%d" % (self.conn_id, self.path, len(got))).encode()
        if self.path.startswith("/big"): body = bytes(range(256)) * 4096
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Pod-Connection", str(self.conn_id))
        self.send_header("X-Pod-Forwarded-Proto", self.headers.get("X-Forwarded-Proto", ""))
        self.send_header("X-Pod-ALPN", str(self.request.selected_alpn_protocol()) if cert != "-" else "none")
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *args): pass
if len(sys.argv) > 4: Handler.timeout = float(sys.argv[4])  # idle keep-alive connections close after this
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def get_request(self):
        sock, addr = self.socket.accept()
        if cert == "-": return sock, addr  # plain HTTP (a control for comparisons)
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
    def handle_error(self, request, address): pass
    def shutdown_request(self, request):  # after the handler: the connection is closed once this has run
        super().shutdown_request(request)
        with lock:
            counts["closed"] += 1; dump()
ctx.set_alpn_protocols(["http/1.1"])
server = Server(("127.0.0.1", 0), Handler)
dump()
with open(state + ".port", "w") as f: f.write(str(server.server_address[1]))
server.serve_forever()
"""#

    init(_ files: TLSCertificateFiles, in certs: TestCertificates, name: String, idleTimeout: Double? = nil) throws {
        let scriptPath = "\(certs.directory)/pod.py"
        try PythonTLSPod.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        stateFile = "\(certs.directory)/\(name).json"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptPath, files.cert, files.key, stateFile] + (idleTimeout.map { ["\($0)"] } ?? [])
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        var found: UInt16?
        while found == nil && Date() < deadline {
            if let text = try? String(contentsOfFile: stateFile + ".port", encoding: .utf8), let p = UInt16(text) { found = p } else {
                usleep(20_000)
            }
        }
        guard let found else {
            process.terminate()
            throw TestClientError.malformed("the Python TLS pod did not start")
        }
        port = found
    }

    var counts: [String: Int] {
        guard let data = FileManager.default.contents(atPath: stateFile),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Int] else { return [:] }
        return json
    }

    /// Waits (at most `seconds`) until `counts[key]` reaches `value`; true if it did.
    func wait(until key: String, reaches value: Int, seconds: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while (counts[key] ?? 0) < value {
            if Date() > deadline { return false }
            usleep(5_000)
        }
        return true
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

final class UpstreamTLSTests: XCTestCase {
    private func gateway(to pod: UInt16, _ adjust: (inout ProxySettings) -> Void) throws -> Gateway {
        let revision = "secure-predictor-default-00001"
        let service = ServiceSpec(name: "secure", namespace: "ns",
                                  revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: pod, protocol: .https)])],
                                  traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
        return try Gateway(settings: GatewayFixture.settings(workers: 1, adjust), routes: RouteTable(services: [service], rules: HostRules()))
    }

    func testRequestsReachTheTLSPodAndKeepAliveReusesOneConnection() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = try PythonTLSPod(try ca.issue("pod", san: "IP:127.0.0.1,DNS:pod.test"), in: certs, name: "pod")
        defer { pod.stop() }
        let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        for i in 0..<5 {
            let body = String(repeating: "x", count: 1000 * (i + 1))
            let r = try c.request("POST", "/v1/models/secure:predict", host: "secure.ns.example.com", body: body)
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "conn=1 path=/v1/models/secure:predict bytes=\(body.utf8.count)")
            XCTAssertEqual(r.header("X-Pod-Connection"), "1", "request \(i) reuses the first upstream TLS connection")
            XCTAssertEqual(r.header("X-Pod-Forwarded-Proto"), "http", "X-Forwarded-Proto is about the client side")
            XCTAssertEqual(r.header("X-Pod-ALPN"), "http/1.1")
        }
        // A large response body crosses many TLS records: nothing may be stranded inside OpenSSL.
        var expected: [UInt8] = []
        for _ in 0..<4096 { for b in 0...255 { expected.append(UInt8(b)) } }
        for _ in 0..<3 {
            let big = try c.request("GET", "/big", host: "secure.ns.example.com")
            XCTAssertEqual(big.status, 200)
            XCTAssertTrue(big.body == expected, "1 MiB over many TLS records arrives whole (\(big.body.count) bytes)")
            XCTAssertEqual(big.header("X-Pod-Connection"), "1")
        }
        XCTAssertEqual(pod.counts["handshakes"], 1)
        XCTAssertEqual(pod.counts["requests"], 8)
    }

    func testAPodClosingAnIdleTLSConnectionCostsNoRequest() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = try PythonTLSPod(try ca.issue("pod", san: "IP:127.0.0.1"), in: certs, name: "pod", idleTimeout: 0.3)
        defer { pod.stop() }
        let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        XCTAssertEqual(try c.request("GET", "/a", host: "secure.ns.example.com").header("X-Pod-Connection"), "1")
        XCTAssertTrue(pod.wait(until: "closed", reaches: 1), "the pod closes its idle connection")
        let r = try c.request("POST", "/b", host: "secure.ns.example.com", body: "again")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("X-Pod-Connection"), "2", "a fresh TLS connection after the pod closed the pooled one")
        XCTAssertEqual(pod.counts["requests"], 2)
    }

    func testANewCAFileTakesEffectAtTheNextHandOverAndABrokenOneStopsTheStart() throws {
        let certs = try TestCertificates()
        let trusted = try TestCA(certs, name: "trusted")
        let other = try TestCA(certs, name: "other")
        let pod = try PythonTLSPod(try trusted.issue("pod", san: "IP:127.0.0.1"), in: certs, name: "pod")
        defer { pod.stop() }
        let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: other.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        XCTAssertEqual(try c.request("GET", "/", host: "secure.ns.example.com").status, 502)
        var settings = GatewayFixture.settings(workers: 1)
        settings.upstreamTLS = UpstreamTLSSettings(caFile: trusted.cert)
        gateway.publish(routes: gateway.routes, settings: settings)
        // The hand-over reaches the worker asynchronously: wait (bounded) for the first request the new CA lets
        // through; with the old CA kept, this stays 502 until the deadline.
        let deadline = Date().addingTimeInterval(10)
        var status = try c.request("GET", "/", host: "secure.ns.example.com").status
        while status != 200 && Date() < deadline {
            usleep(5_000)
            status = try TestClient(port: gateway.port).request("GET", "/", host: "secure.ns.example.com").status
        }
        XCTAssertEqual(status, 200, "the new CA is in force")
        XCTAssertEqual(try c.request("GET", "/", host: "secure.ns.example.com").status, 200, "and stays")
        XCTAssertThrowsError(try self.gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: certs.directory + "/nope.pem") }) {
            XCTAssertEqual("\($0)", "upstreamTLS.caFile: \(certs.directory)/nope.pem: No such file or directory")
        }
    }

    func testHTTP2ClientsReachTheTLSPodToo() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = try PythonTLSPod(try ca.issue("pod", san: "IP:127.0.0.1"), in: certs, name: "pod")
        defer { pod.stop() }
        let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let url = "http://secure.ns.example.com:\(gateway.port)/v1/models/secure:predict"
        for _ in 0..<2 {
            let r = runCommand("curl", ["-sS", "--max-time", "10", "--http2-prior-knowledge", "--resolve", "secure.ns.example.com:\(gateway.port):127.0.0.1",
                                        "-d", "abc", "-w", " %{http_version} %{http_code}", url])
            XCTAssertEqual(r.output, "conn=1 path=/v1/models/secure:predict bytes=3 2 200", r.output)
        }
        XCTAssertEqual(pod.counts["handshakes"], 1, "two client connections, one pooled upstream TLS connection")
    }

    func testServerNameIsVerifiedAsADNSName() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        let pod = try PythonTLSPod(try ca.issue("pod", san: "DNS:pod.test"), in: certs, name: "pod")
        defer { pod.stop() }
        // No IP SAN: only a serverName the certificate names passes.
        for (name, status) in [("pod.test", 200), ("other.test", 502), (nil, 502)] as [(String?, Int)] {
            let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: ca.cert, serverName: name) }
            defer { gateway.shutdown(graceMs: 1000) }
            let c = try TestClient(port: gateway.port)
            XCTAssertEqual(try c.request("GET", "/", host: "secure.ns.example.com").status, status, "serverName \(name ?? "nil")")
        }
        XCTAssertEqual(pod.counts["requests"], 1)
    }

    func testAPodSignedByAnotherCAGets502AndNoRequest() throws {
        let certs = try TestCertificates()
        let trusted = try TestCA(certs, name: "trusted")
        let other = try TestCA(certs, name: "other")
        let pod = try PythonTLSPod(try other.issue("rogue", san: "IP:127.0.0.1"), in: certs, name: "rogue")
        defer { pod.stop() }
        let gateway = try gateway(to: pod.port) { $0.upstreamTLS = UpstreamTLSSettings(caFile: trusted.cert) }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        for _ in 0..<3 {
            let r = try c.request("POST", "/v1/models/secure:predict", host: "secure.ns.example.com", body: "secret")
            XCTAssertEqual(r.status, 502)
        }
        XCTAssertEqual(pod.counts["requests"], 0, "no request reaches a pod that failed verification")
        XCTAssertEqual(pod.counts["handshakes"], 0)
        // The gateway did reach the pod: it refused the pod's certificate (the pod sees the failed handshakes).
        let deadline = Date().addingTimeInterval(3)
        while (pod.counts["failedHandshakes"] ?? 0) < 9 && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(pod.counts["failedHandshakes"], 9, "three attempts per request (a failed handshake is a connect failure, retried twice), each a fresh connection, none pooled")
    }

    func testAPodThatNeverFinishesTheHandshakeIsAConnectTimeout() throws {
        let silent = RawBackend()  // the kernel accepts the TCP connection; nobody ever answers the ClientHello
        defer { silent.stop() }
        let gateway = try gateway(to: silent.port) { $0.timeouts.upstreamConnectMs = 300 }
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try TestClient(port: gateway.port)
        let start = Date()
        XCTAssertEqual(try c.request("GET", "/", host: "secure.ns.example.com").status, 504)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3, "the handshake counts against the upstream connect timeout")
    }

    func testEndpointTextFormRoundTrips() throws {
        let e = Endpoint(host: "127.0.0.1", port: 8443, protocol: .https)
        XCTAssertEqual(e.description, "https://127.0.0.1:8443")
        XCTAssertTrue(e.isTLS)
        XCTAssertNotEqual(e, Endpoint(host: "127.0.0.1", port: 8443), "a TLS endpoint has its own pool")
        let yaml = """
        models:
          gs://bucket/model: [https://127.0.0.1:8443]
        services:
        - name: secure
          namespace: ns
          revisions:
            secure-predictor-default-00001: ["https://127.0.0.1:8443", "https://[::1]:8443", 127.0.0.1:8080]
          traffic:
          - {revisionName: secure-predictor-default-00001, percent: 100}
        """
        let config = try GatewayConfig.parse(yaml: yaml, file: "t.yaml")
        let endpoints = config.services[0].revisions[0].endpoints
        XCTAssertEqual(endpoints, [e, Endpoint(host: "::1", port: 8443, protocol: .https), Endpoint(host: "127.0.0.1", port: 8080)])
        XCTAssertEqual(endpoints.map(\.description), ["https://127.0.0.1:8443", "https://[::1]:8443", "127.0.0.1:8080"])
        XCTAssertEqual(config.control.models["gs://bucket/model"], [e])
        XCTAssertEqual(config.proxy.upstreamTLS, UpstreamTLSSettings(), "no upstreamTLS: the system trust store, IP verification")
    }

    func testUpstreamTLSConfigIsReadAndErrorsNameTheField() throws {
        let certs = try TestCertificates()
        let ca = try TestCA(certs, name: "ca")
        try "not a certificate\n".write(toFile: certs.directory + "/junk.pem", atomically: true, encoding: .utf8)
        let file = certs.directory + "/sluice.yaml"
        let dir = certs.directory
        let config = try GatewayConfig.parse(yaml: "upstreamTLS:\n  caFile: ca.crt\n  serverName: pod.test\nservices: []\n", file: file)
        XCTAssertEqual(config.proxy.upstreamTLS, UpstreamTLSSettings(caFile: ca.cert, serverName: "pod.test"))
        let cases: [(String, String)] = [
            ("upstreamTLS:\n  caFile: nope.pem", "\(file): upstreamTLS.caFile: \(dir)/nope.pem: No such file or directory"),
            ("upstreamTLS:\n  caFile: junk.pem", "\(file): upstreamTLS.caFile: \(dir)/junk.pem: not a PEM CA certificate file: "),
            ("upstreamTLS:\n  caFile: \"\"", "\(file): upstreamTLS.caFile: expected a path"),
            ("upstreamTLS:\n  serverName: \"a b\"", "\(file): upstreamTLS.serverName: expected a DNS name or an IP address"),
            ("upstreamTLS:\n  ca: x.pem", "\(file): upstreamTLS.ca: unknown key"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try GatewayConfig.parse(yaml: yaml + "\nservices: []\n", file: file), yaml) {
                XCTAssertTrue("\($0)".hasPrefix(expected), "\($0)\n  expected: \(expected)")
            }
        }
    }
}
