// Tests for the admin API's authentication: the bearer token's comparison, the API server's 401 with its challenge,
// and which admin addresses need a token.
import SluiceBlockingHTTP
@testable import SluiceControl
import SluiceProxy
import XCTest

final class AdminAuthTests: XCTestCase {
    func testARequestWithoutTheTokenGetsTheAPIServersUnauthorizedStatusAndABearerChallenge() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let api = AdminAPI(plane: plane, token: "s3cret")
        for authorization in [nil, "Bearer nope", "Basic czNjcmV0"] {
            let request = BlockingRequest(method: "GET", target: AdminAPI.prefix + "/inferenceservices",
                                          headers: authorization.map { [("Authorization", $0)] } ?? [])
            let response = api.handle(request)
            XCTAssertEqual(response.status, 401, "\(authorization ?? "no Authorization")")
            let status = JSONValue.parse(response.body)
            XCTAssertEqual(status?["kind"]?.stringValue, "Status")
            XCTAssertEqual(status?["status"]?.stringValue, "Failure")
            XCTAssertEqual(status?["reason"]?.stringValue, "Unauthorized")
            XCTAssertEqual(status?["message"]?.stringValue, "Unauthorized")
            XCTAssertEqual(status?["code"]?.intValue, 401)
            XCTAssertEqual(response.headers.first { $0.0 == "WWW-Authenticate" }?.1, #"Bearer realm="sluice""#)
        }
    }

    func testOnlyTheWholeTokenBehindTheBearerSchemeIsAccepted() {
        XCTAssertTrue(AdminAuth.presents("Bearer s3cret", token: "s3cret"))
        XCTAssertTrue(AdminAuth.presents("bearer s3cret", token: "s3cret"), "the scheme is case-insensitive")
        XCTAssertTrue(AdminAuth.presents("BEARER s3cret", token: "s3cret"))
        for value in ["Bearer s3cre", "Bearer s3cret2", "Bearer s3creT", "Bearer  s3cret", "Bearer s3cret ", "Bearer ", "Bearer",
                      "", "s3cret", "Basic s3cret", "Bearers3cret", "Bearer s3cret\u{0}"] {
            XCTAssertFalse(AdminAuth.presents(value, token: "s3cret"), "\(value.debugDescription)")
        }
    }

    func testTheComparisonFoldsLengthAndEveryByteIntoOneResult() {
        let secret = Array("abcdef".utf8)
        XCTAssertTrue(AdminAuth.constantTimeEqual(ArraySlice(secret), secret))
        // A guess that is the secret twice over matches it byte for byte (modulo indexing): only the length differs.
        XCTAssertFalse(AdminAuth.constantTimeEqual(ArraySlice(secret + secret), secret))
        XCTAssertFalse(AdminAuth.constantTimeEqual(ArraySlice(secret.dropLast()), secret))
        XCTAssertFalse(AdminAuth.constantTimeEqual([], secret))
        XCTAssertFalse(AdminAuth.constantTimeEqual(ArraySlice(Array("abcdeF".utf8)), secret))
        XCTAssertFalse(AdminAuth.constantTimeEqual(ArraySlice(Array("Abcdef".utf8)), secret))
        XCTAssertTrue(AdminAuth.constantTimeEqual([], []))
        XCTAssertFalse(AdminAuth.constantTimeEqual([0], []))
    }

    func testLoopbackIs127Slash8AndColonColon1Only() {
        for host in ["127.0.0.1", "127.255.3.4", "127.0.0.0", "::1", "0:0:0:0:0:0:0:1", "localhost"] {
            XCTAssertTrue(AdminAuth.isLoopback(host), host)
        }
        for host in ["0.0.0.0", "10.0.0.1", "192.0.2.1", "128.0.0.1", "126.255.255.255", "::", "::2", "::ffff:127.0.0.1",
                     "127.foo", "127.0.0.1.example.com", "", "example.com"] {
            XCTAssertFalse(AdminAuth.isLoopback(host), host)
        }
    }

    func testANonLoopbackAdminAddressNeedsAToken() {
        XCTAssertNil(AdminAuth.exposureRefusal(SocketAddressSpec(host: "127.0.0.1", port: 15000), hasToken: false))
        XCTAssertNil(AdminAuth.exposureRefusal(SocketAddressSpec(host: "0.0.0.0", port: 15000), hasToken: true))
        let refusal = AdminAuth.exposureRefusal(SocketAddressSpec(host: "0.0.0.0", port: 15000), hasToken: false)
        XCTAssertEqual(refusal?.contains("0.0.0.0:15000 is not a loopback address"), true, refusal ?? "nil")
        XCTAssertEqual(refusal?.contains("bearer token"), true)
    }
}
