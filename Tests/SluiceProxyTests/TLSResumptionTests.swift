// Integration: session resumption by tickets whose keys every worker shares, and their rotation.
import Foundation
import SluiceProxy
import SluiceTLS
import XCTest

final class TLSResumptionTests: XCTestCase {
    /// One full handshake saves the session, then `resumptions` more connections present it. With two
    /// SO_REUSEPORT workers, each connection lands on either one (by the kernel's hash of the client port), so
    /// nine connections all on the same worker would happen 1 time in 256: resumption works across workers.
    /// s_client that sends one request and waits for the answer: TLS 1.3 tickets arrive after the handshake,
    /// so a client that quit right after its Finished could miss them (-sess_out would then write nothing).
    private func exchange(port: UInt16, _ extra: [String]) -> CommandResult {
        sClient(port: port, extra + ["-ign_eof"], input: "GET /v2/health/ready HTTP/1.1\r\nHost: \(serviceHost)\r\nConnection: close\r\n\r\n")
    }

    private func resume(port: UInt16, _ extra: [String], resumptions: Int, file: String) -> [String] {
        let first = exchange(port: port, extra + ["-sess_out", file])
        var outcomes = [first.output.split(separator: "\n").first { $0.hasPrefix("New,") || $0.hasPrefix("Reused,") }.map(String.init) ?? first.output]
        for _ in 0..<resumptions {
            let r = exchange(port: port, extra + ["-sess_in", file])
            outcomes.append(r.output.split(separator: "\n").first { $0.hasPrefix("New,") || $0.hasPrefix("Reused,") }.map(String.init) ?? r.output)
        }
        return outcomes
    }

    func testTLS13And12SessionsResumeOnEveryWorker() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 2)
        for (version, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let outcomes = resume(port: f.port, [version, "-servername", serviceHost], resumptions: 8,
                                  file: certs.directory + "/session\(version).pem")
            XCTAssertTrue(outcomes[0].hasPrefix("New, \(name)"), outcomes[0])
            for outcome in outcomes.dropFirst() { XCTAssertTrue(outcome.hasPrefix("Reused, \(name)"), "\(version): \(outcomes)") }
        }
    }

    func testSessionsSurviveACertificateReloadAndTwoKeyRotations() throws {
        let certs = try TestCertificates()
        let cert = try certs.make("service", dnsNames: [serviceHost])
        let f = try tlsGateway([cert], workers: 2)
        let file = certs.directory + "/session.pem"
        XCTAssertTrue(resume(port: f.port, ["-tls1_3"], resumptions: 0, file: file)[0].hasPrefix("New,"))
        // A reload builds new SSL_CTXs; the ticket keys are the process's, so the session still resumes.
        try f.gateway.reloadTLS(TLSSettings(certificates: [cert]))
        TLSContext.rotateTicketKeys()
        TLSContext.rotateTicketKeys()
        // Encrypted under the key now third-newest: still accepted (keys[2]).
        let again = exchange(port: f.port, ["-tls1_3", "-sess_in", file])
        XCTAssertTrue(again.output.contains("Reused, TLSv1.3"), again.output)
        // A third rotation drops that key: a full handshake, no failure.
        TLSContext.rotateTicketKeys()
        let full = exchange(port: f.port, ["-tls1_3", "-sess_in", file])
        XCTAssertTrue(full.output.contains("New, TLSv1.3"), full.output)
    }
}
