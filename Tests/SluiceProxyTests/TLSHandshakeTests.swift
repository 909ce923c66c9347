// Integration: HTTPS through the gateway with real clients (curl, Python's ssl, openssl s_client): proxied
// requests, SNI, ALPN, refused protocols and ciphers, the handshake timeout.
import Foundation
import SluiceProxy
import SluiceTLS
import XCTest

final class TLSHandshakeTests: XCTestCase {
    func testCurlRequestIsProxiedOverTLS() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert])
        let r = runCommand("curl", ["-sS", "--max-time", "10", "--cacert", cert.cert, "--resolve", "\(serviceHost):\(f.port):127.0.0.1",
                             "-w", "\n%{http_code} %{http_version}", "-d", irisBody, "-H", "Content-Type: application/json",
                             "https://\(serviceHost):\(f.port)/v1/models/sklearn-iris:predict"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(#""proto": "https""#), r.output)
        XCTAssertTrue(r.output.hasSuffix("200 1.1"), r.output)
    }
}
