// Integration: certificate reloads through the control layer's `Reloader` are counted by result for /metrics and
// recorded as events (tls.reloaded, tls.reload_refused). Here, not in SluiceControlTests, for the certificate fixture.
import Foundation
import SluiceControl
import SluiceProxy
import XCTest

final class CertificateReloadEventsTests: XCTestCase {
    func scrape(_ s: ReloaderTests.Stack) -> String {
        var exposition = MetricsExposition(format: .prometheus)
        s.reloader.writeMetrics(into: &exposition)
        s.plane.events.writeMetrics(into: &exposition)
        return String(decoding: exposition.finish(), as: UTF8.self)
    }

    func testCertificateReloadsAreCountedByResultAndRecorded() throws {
        let certs = try TestCertificates()
        let pair = try certs.make("one", dnsNames: [serviceHost])
        let s = try ReloaderTests.Stack(ReloaderTests.config(tls: [pair]))
        XCTAssertTrue(scrape(s).contains(#"sluice_certificate_reloads_total{result="ok"} 0"#))

        try s.reloader.reloadCertificates()
        // A renewal that wrote a broken key: refused, the running certificates stay.
        try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: pair.key))
        XCTAssertThrowsError(try s.reloader.reloadCertificates())
        XCTAssertEqual(s.gateway.tlsContext?.certificates, [pair])

        let text = scrape(s)
        XCTAssertTrue(text.contains(#"sluice_certificate_reloads_total{result="ok"} 1"#), text)
        XCTAssertTrue(text.contains(#"sluice_certificate_reloads_total{result="refused"} 1"#), text)
        XCTAssertTrue(text.contains(#"sluice_events_total{reason="CertificatesReloaded"} 1"#), text)
        XCTAssertTrue(text.contains(#"sluice_events_total{reason="CertificateReloadRefused"} 1"#), text)
        XCTAssertTrue(text.contains(#"sluice_config_reloads_total{result="ok"} 0"#), "a certificate reload is not a configuration reload")
    }
}
