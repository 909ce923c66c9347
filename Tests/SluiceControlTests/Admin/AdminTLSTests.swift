// Tests for the admin listener's TLS setting: a pair that does not load stops the configuration at its field.
// (The handshake itself, with curl and kubectl, is in Tests/e2e/test_kubectl.py.)
import SluiceControl
import XCTest

final class AdminTLSTests: XCTestCase {
    func testAnAdminCertificateThatDoesNotLoadIsRefusedAtItsField() {
        XCTAssertThrowsError(try GatewayConfig.parse(yaml: "adminTLS: {cert: /nonexistent/admin.crt, key: /nonexistent/admin.key}\n",
                                                     file: "t.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("t.yaml: adminTLS.cert: /nonexistent/admin.crt: "), "\(error)")
        }
        XCTAssertThrowsError(try GatewayConfig.parse(yaml: "adminTLS: {cert: /nonexistent/admin.crt}\n", file: "t.yaml")) { error in
            XCTAssertTrue("\(error)".contains("key"), "\(error)")
        }
    }
}
