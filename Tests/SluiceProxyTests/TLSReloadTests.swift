// Integration: certificates reload while traffic flows: no failed request, new handshakes get the new
// certificate, established connections keep going, a broken pair is refused and the old one stays.
import Foundation
import SluiceControl
import SluiceProxy
import SluiceTLS
import XCTest

final class TLSReloadTests: XCTestCase {
    func testReloadDuringTrafficFailsNoRequestAndNewHandshakesSeeTheNewCertificate() throws {
        let certs = try TestCertificates()
        let old = try certs.make("old", dnsNames: [serviceHost], organization: "Generation One")
        let new = try certs.make("new", dnsNames: [serviceHost], organization: "Generation Two")
        let bundle = try certs.bundle([old, new])
        let f = try tlsGateway([old], workers: 2)
        // The shared client's loop mode, plus one line: the organisation its long-lived connection was served.
        let script = certs.directory + "/reload-client.py"
        try (pythonClient + "\nif mode == \"loop\": print(\"long_lived=%s\" % organization(long_lived))\n")
            .write(toFile: script, atomically: true, encoding: .utf8)

        // The client opens its long-lived connection, then makes 200 rounds of (a fresh connection's request, a
        // request on the long-lived one) while the certificates flip between the two generations.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "loop", "\(f.port)", bundle, serviceHost, "200"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        // No reload before the long-lived connection has finished its handshake under generation one: that is
        // certain once a second connection (the first fresh one, opened after that handshake) is open.
        let opened = Date().addingTimeInterval(30)
        while f.gateway.activeConnections < 2 && process.isRunning && Date() < opened { usleep(200) }
        XCTAssertGreaterThanOrEqual(f.gateway.activeConnections, 2, "the client's first fresh connection was seen")
        var reloads = 0
        while process.isRunning && reloads < 400 {
            try f.gateway.reloadTLS(TLSSettings(certificates: [reloads % 2 == 0 ? new : old]))
            reloads += 1
            usleep(5_000)  // pacing only: the assertions below do not depend on any timing
        }
        try f.gateway.reloadTLS(TLSSettings(certificates: [new]))
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let report = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(report.contains("ok=400 fail=0"), report)
        XCTAssertGreaterThan(reloads, 1, report)
        // The long-lived connection began under generation one, kept it through every reload and outlived them
        // all (its 200 requests count in ok=); fresh connections during the flips saw both generations.
        XCTAssertTrue(report.contains("long_lived=Generation One"), report)
        XCTAssertTrue(report.contains("orgs=Generation One,Generation Two"), report)

        // publish is synchronous: the very next handshake sees the last generation, on every worker.
        for _ in 0..<4 {
            XCTAssertEqual(servedSubject(sClient(port: f.port, ["-servername", serviceHost])),
                           "subject=O = Generation Two, CN = \(serviceHost)")
        }
    }

    func testABrokenPairIsRefusedAndTheRunningCertificateStays() throws {
        let certs = try TestCertificates()
        let good = try certs.make("good", dnsNames: [serviceHost], organization: "Good")
        let other = try certs.make("other", dnsNames: [serviceHost], organization: "Other")
        let f = try tlsGateway([good], workers: 2)
        let c = try TestClient(port: f.port)  // plain TCP, idle: must not be disturbed by the refused reload

        XCTAssertThrowsError(try f.gateway.reloadTLS(TLSSettings(certificates: [TLSCertificateFiles(cert: good.cert, key: other.key)]))) {
            let text = "\($0)"
            XCTAssertTrue(text.hasPrefix("tls.certificates[0]: \(other.key): does not match the certificate in \(good.cert)"), text)
        }
        XCTAssertThrowsError(try f.gateway.reloadTLS(TLSSettings(certificates: [good, TLSCertificateFiles(cert: certs.directory + "/missing.crt", key: good.key)]))) {
            XCTAssertEqual("\($0)", "tls.certificates[1]: \(certs.directory)/missing.crt: No such file or directory")
        }
        XCTAssertThrowsError(try f.gateway.reloadTLS(nil))
        XCTAssertEqual(servedSubject(sClient(port: f.port, ["-servername", serviceHost])), "subject=O = Good, CN = \(serviceHost)")
        XCTAssertEqual(f.gateway.tlsContext?.certificates, [good])
        _ = c
    }

    func testTheConfigurationFileReloadPathPublishesRereadCertificates() throws {
        let certs = try TestCertificates()
        let first = try certs.make("site", dnsNames: [serviceHost], organization: "Before Renewal")
        let f = try tlsGateway([first], workers: 1)
        // A renewal rewrites the files in place; the SIGHUP path reloads the file and calls reloadTLS.
        try certs.make("site", dnsNames: [serviceHost], organization: "After Renewal")
        let configFile = certs.directory + "/sluice.yaml"
        try """
        tls:
          certificates:
            - {cert: site.crt, key: site.key}
          handshakeTimeout: 5s
        services: []
        """.write(toFile: configFile, atomically: true, encoding: .utf8)
        let config = try GatewayConfig.load(file: configFile)
        XCTAssertEqual(config.proxy.tls?.handshakeTimeoutMs, 5_000)
        XCTAssertEqual(config.proxy.tls?.certificates, [first])  // relative to the file's directory
        try f.gateway.reloadTLS(config.proxy.tls)
        XCTAssertEqual(servedSubject(sClient(port: f.port, ["-servername", serviceHost])), "subject=O = After Renewal, CN = \(serviceHost)")
    }
}
