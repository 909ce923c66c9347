// Configuration: the `tls` section — certificates checked at load, errors naming the field and the file.
import Foundation
import SluiceControl
import SluiceProxy
import SluiceTLS
import XCTest

final class TLSConfigTests: XCTestCase {
    private func parse(_ tls: String, in certs: TestCertificates) throws(ConfigError) -> GatewayConfig {
        try GatewayConfig.parse(yaml: tls + "\nservices: []\n", file: certs.directory + "/sluice.yaml")
    }

    func testCertificatesAndTimeoutAreRead() throws {
        let certs = try TestCertificates()
        let a = try certs.make("a", dnsNames: ["a.example.com"])
        let b = try certs.make("b", dnsNames: ["b.example.com"])
        let config = try parse("tls:\n  certificates:\n    - {cert: a.crt, key: a.key}\n    - {cert: \(b.cert), key: \(b.key)}\n  handshakeTimeout: 3s", in: certs)
        XCTAssertEqual(config.proxy.tls?.certificates, [a, b])
        XCTAssertEqual(config.proxy.tls?.handshakeTimeoutMs, 3_000)
        XCTAssertEqual(config.proxy.tls?.offersH2, true, "h2 is offered unless tls.http2 is false")
        XCTAssertNil(try GatewayConfig.parse(yaml: "services: []\n", file: "x.yaml").proxy.tls)
    }

    func testErrorsNameTheFieldAndTheFileProblem() throws {
        let certs = try TestCertificates()
        try certs.make("a", dnsNames: ["a.example.com"])
        try certs.make("b", dnsNames: ["b.example.com"])
        try "not a certificate\n".write(toFile: certs.directory + "/junk.crt", atomically: true, encoding: .utf8)
        let file = certs.directory + "/sluice.yaml"
        let dir = certs.directory
        let cases: [(String, String)] = [
            ("tls:\n  certificates:\n    - {cert: a.crt, key: b.key}",
             "\(file): tls.certificates[0].key: \(dir)/b.key: does not match the certificate in \(dir)/a.crt"),
            ("tls:\n  certificates:\n    - {cert: a.crt, key: a.key}\n    - {cert: nope.crt, key: a.key}",
             "\(file): tls.certificates[1].cert: \(dir)/nope.crt: No such file or directory"),
            ("tls:\n  certificates:\n    - {cert: junk.crt, key: a.key}",
             "\(file): tls.certificates[0].cert: \(dir)/junk.crt: not a PEM certificate chain: error:0480006C:PEM routines::no start line"),
            ("tls:\n  certificates:\n    - {cert: a.crt, key: a.crt}",
             "\(file): tls.certificates[0].key: \(dir)/a.crt: not a PEM private key: "),
            ("tls:\n  certificates: []", "\(file): tls.certificates: at least one certificate is needed"),
            ("tls:\n  certificates:\n    - {cert: a.crt}", "\(file): tls.certificates[0].key: required"),
            ("tls:\n  certificates:\n    - {cert: a.crt, key: a.key}\n  handshakeTimeout: 10", "\(file): tls.handshakeTimeout: expected a duration"),
            ("tls:\n  certs: []", "\(file): tls.certs: unknown key"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try parse(yaml, in: certs), yaml) {
                XCTAssertTrue("\($0)".hasPrefix(expected), "\($0)\n  expected: \(expected)")
            }
        }
    }
}
