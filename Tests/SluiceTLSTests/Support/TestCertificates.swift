// Test support: self-signed ECDSA P-256 certificates made at test time with the openssl command line (never
// committed), as Tests/SluiceProxyTests/TLSFixture.swift makes them; this target does not import the proxy tests.
import Foundation
import SluiceTLS

/// A scratch directory of certificates; removed on deinit.
final class TestCertificates {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "sluice-tls-unit-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Makes `<name>.crt`/`<name>.key` for the DNS names (the first is also the CN).
    func make(_ name: String, dnsNames: [String]) throws -> TLSCertificateFiles {
        let files = TLSCertificateFiles(cert: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        let san = dnsNames.map { "DNS:\($0)" }.joined(separator: ",")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-keyout", files.key, "-out", files.cert, "-days", "2",
                             "-subj", "/O=Sluice Test/CN=\(dnsNames[0])", "-addext", "subjectAltName=\(san)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = output.fileHandleForReading.readDataToEndOfFile()  // ends when openssl exits (it reads no stdin)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CertificateError(message: "openssl req failed: " + String(decoding: text, as: UTF8.self))
        }
        return files
    }
}

struct CertificateError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
