// Integration: HTTPS through the gateway with real clients (curl, Python's ssl, openssl s_client): proxied
// requests, SNI, ALPN, refused protocols, ciphers and groups, the handshake timeout.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceTLS
import XCTest

final class TLSHandshakeTests: XCTestCase {
    /// curl over HTTP/1.1 unless `extra` asks for another version (curl prefers h2 when ALPN offers it).
    func curl(_ f: GatewayFixture, cacert: String, _ extra: [String] = []) -> CommandResult {
        let version = extra.contains { $0.hasPrefix("--http") } ? [] : ["--http1.1"]
        return runCommand("curl", version + ["-sS", "--max-time", "10", "--cacert", cacert, "--resolve", "\(serviceHost):\(f.port):127.0.0.1",
                            "-w", "\n%{http_code} %{http_version}", "-d", irisBody, "-H", "Content-Type: application/json"]
                   + extra + ["https://\(serviceHost):\(f.port)/v1/models/sklearn-iris:predict"])
    }

    func testCurlRequestIsProxiedOverTLS() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert])
        let r = curl(f, cacert: cert.cert)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(#""proto": "https""#), r.output)
        XCTAssertTrue(r.output.hasSuffix("200 1.1"), r.output)
    }

    /// Large bodies and pipelined requests: TLS records (16 KiB) rarely line up with the proxy's reads, so
    /// OpenSSL holds decrypted bytes that no epoll edge announces; none may be stranded.
    func testLargeBodiesAndPipelinedRequestsAreNotStrandedInsideOpenSSL() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert])
        let body = certs.directory + "/body.bin"
        try Data(repeating: 0x61, count: 3 * 1024 * 1024 + 17).write(to: URL(fileURLWithPath: body))
        let r = curl(f, cacert: cert.cert, ["--data-binary", "@" + body])
        // curl joins its two data arguments (the iris body, then the file) with "&".
        XCTAssertTrue(r.output.contains("\"bytes\": \(3 * 1024 * 1024 + 17 + irisBody.utf8.count + 1)"), r.output)
        XCTAssertTrue(r.output.hasSuffix("200 1.1"), r.output)

        let script = """
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname=sys.argv[3])
        one = ("GET /v2/health/ready HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" % sys.argv[3]).encode()
        s.sendall(one * 50)
        data = b""
        while data.count(b"HTTP/1.1 200") < 50:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        print("responses=%d" % data.count(b"HTTP/1.1 200"))
        """
        let path = certs.directory + "/pipeline.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let p = runCommand("python3", [path, "\(f.port)", cert.cert, serviceHost])
        XCTAssertTrue(p.output.contains("responses=50"), p.output)
    }

    /// A large response through partial TLS writes (SSL_MODE_ENABLE_PARTIAL_WRITE, EAGAIN, moving buffer).
    func testLargeResponseIsRelayedWhole() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let big = [UInt8](repeating: 0x62, count: 5 * 1024 * 1024 + 3)
        let f = try GatewayFixture(split: 0, workers: 1, settings: { $0.tls = TLSSettings(certificates: [cert]) },
                                   handler1: { _ in BlockingResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: big) })
        let r = runCommand("curl", ["-sS", "--max-time", "20", "--cacert", cert.cert, "--resolve", "\(serviceHost):\(f.port):127.0.0.1",
                                    "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--limit-rate", "20M",
                                    "https://\(serviceHost):\(f.port)/v1/models/sklearn-iris"])
        XCTAssertEqual(r.output, "200 \(big.count)")
    }

    func testPythonSSLKeepAliveRequests() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert])
        let r = runCommand("python3", [try pythonClientScript(in: certs), "once", "\(f.port)", cert.cert, serviceHost])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("version=TLSv1.3 alpn=http/1.1 status=200,200"), r.output)
        XCTAssertTrue(r.output.contains(#""proto": "https""#), r.output)
    }

    func testSNIChoosesTheCertificateAndUnknownNamesGetTheDefault() throws {
        let certs = try TestCertificates()
        let first = try certs.make("first", dnsNames: ["first.example.com"])
        let second = try certs.make("second", dnsNames: [serviceHost, "*.kserve-test.example.com"])
        let f = try tlsGateway([first, second])
        func subject(_ name: String?) -> String? {
            servedSubject(sClient(port: f.port, name.map { ["-servername", $0] } ?? ["-noservername"]))
        }
        XCTAssertEqual(subject(serviceHost), "subject=O = Sluice Test, CN = \(serviceHost)")
        XCTAssertEqual(subject("latest-sklearn-iris.kserve-test.example.com"), "subject=O = Sluice Test, CN = \(serviceHost)")
        XCTAssertEqual(subject("first.example.com"), "subject=O = Sluice Test, CN = first.example.com")
        XCTAssertEqual(subject("unknown.example.org"), "subject=O = Sluice Test, CN = first.example.com")
        XCTAssertEqual(subject(nil), "subject=O = Sluice Test, CN = first.example.com")
        // And a request over the SNI-chosen certificate verifies and is proxied.
        let r = curl(f, cacert: second.cert)
        XCTAssertTrue(r.output.hasSuffix("200 1.1"), r.output)
    }

    func testALPNPrefersH2AndServesHTTP2OverTLS() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert])
        XCTAssertTrue(sClient(port: f.port, ["-alpn", "h2,http/1.1"]).output.contains("ALPN protocol: h2"))
        XCTAssertTrue(sClient(port: f.port, ["-alpn", "http/1.1"]).output.contains("ALPN protocol: http/1.1"))
        // No overlap: no ALPN at all (not a fatal alert), and the connection speaks HTTP/1.1.
        let none = sClient(port: f.port, ["-alpn", "spdy/3"])
        XCTAssertTrue(none.output.contains("No ALPN negotiated"), none.output)
        // curl over h2 reaches the pod through the HTTP/2 connection, and HTTP/1.1 still works.
        let h2 = curl(f, cacert: cert.cert, ["--http2"])
        XCTAssertTrue(h2.output.hasSuffix("200 2"), h2.output)
        XCTAssertTrue(h2.output.contains(#""proto": "https""#), "the pod hears X-Forwarded-Proto: https over h2 too: \(h2.output)")
        XCTAssertTrue(curl(f, cacert: cert.cert, ["--http1.1"]).output.hasSuffix("200 1.1"))
    }

    func testWithHTTP2OffOnlyHTTP11IsOffered() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert]) { $0.offersH2 = false }
        XCTAssertTrue(sClient(port: f.port, ["-alpn", "h2,http/1.1"]).output.contains("ALPN protocol: http/1.1"))
        // curl asking for h2 falls back to HTTP/1.1 cleanly.
        let r = curl(f, cacert: cert.cert, ["--http2"])
        XCTAssertTrue(r.output.hasSuffix("200 1.1"), r.output)
    }

    func testOldProtocolsWeakCiphersAndOtherGroupsAreRefused() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 1)
        // The client allows everything (SECLEVEL=0), so each failure is the gateway's refusal.
        for version in ["-tls1", "-tls1_1"] {
            let r = sClient(port: f.port, [version, "-cipher", "DEFAULT@SECLEVEL=0"])
            XCTAssertTrue(r.output.contains("alert protocol version"), "\(version): \(r.output)")
        }
        for cipher in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"] {
            let r = sClient(port: f.port, ["-tls1_2", "-cipher", cipher + "@SECLEVEL=0"])
            XCTAssertTrue(r.output.contains("alert handshake failure"), "\(cipher): \(r.output)")
        }
        for group in ["X448", "secp521r1"] {
            let r = sClient(port: f.port, ["-groups", group])
            XCTAssertTrue(r.output.contains("alert handshake failure"), "\(group): \(r.output)")
        }
        // The allowed ones work, and the client's order wins (no server preference, as Mozilla advises).
        XCTAssertTrue(sClient(port: f.port, ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"])
            .output.contains("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"))
        XCTAssertTrue(sClient(port: f.port, ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"])
            .output.contains("Cipher is TLS_CHACHA20_POLY1305_SHA256"))
        XCTAssertTrue(sClient(port: f.port, ["-groups", "P-384"]).output.contains("Cipher is TLS_AES"))
    }

    func testHandshakeTimeoutClosesASilentClient() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 1) { $0.handshakeTimeoutMs = 300 }
        let start = Date()
        let silent = try TestClient(port: f.port)
        XCTAssertTrue(try silent.isClosedByPeer())
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
        // Half a ClientHello is no better than silence.
        let partial = try TestClient(port: f.port)
        try partial.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        XCTAssertTrue(try partial.isClosedByPeer())
        XCTAssertLessThan(Date().timeIntervalSince(start), 6)
        // And the gateway still serves.
        XCTAssertTrue(curl(f, cacert: cert.cert).output.hasSuffix("200 1.1"))
    }

    func testPlainHTTPOnATLSListenerIsClosed() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 1)
        let c = try TestClient(port: f.port)
        try c.send("GET / HTTP/1.1\r\nHost: \(serviceHost)\r\n\r\n")
        // OpenSSL answers a non-TLS first record with nothing useful; the gateway closes without HTTP.
        var closed = false
        for _ in 0..<4 where !closed { closed = (try? c.isClosedByPeer()) ?? true }
        XCTAssertTrue(closed)
    }
}
