// Tests for the control layer's persisted rollout state: lossless round trip, and refusal of a newer format.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class RolloutStateCodingTests: XCTestCase {
    typealias F = RolloutFixtures

    /// The seed's workflow up to step 5, with a not-ready and an annotated revision on the way.
    func workflowState() throws -> RolloutState {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1.25)
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        _ = try driver.apply(F.promote, at: F.t0 + 30)
        _ = try driver.apply(F.rollback, at: F.t0 + 40)
        _ = try driver.apply(F.tagged, at: F.t0 + 50)
        driver.ready(3, at: F.t0 + 60)
        let other = RolloutRulesTests.manifest(annotations: [InferenceService.endpointsAnnotation: "[::1]:9100"])
        let isvc = try XCTUnwrap(ManifestDecoder.decode(other, defaultNamespace: "default").first)
        XCTAssertEqual(driver.state.apply(isvc, now: F.t0 + 70, resolveEndpoints: F.lookup), .created)
        return driver.state
    }

    func testRoundTripKeepsEverythingAUserSees() throws {
        let state = try workflowState()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(state)
        let decoded = try JSONDecoder().decode(RolloutState.self, from: data)
        XCTAssertEqual(decoded, state)
        XCTAssertEqual(decoded.serviceSpecs(), state.serviceSpecs(), "the gateway serves the same traffic after a restart")
        XCTAssertEqual(IsvcTable.render(decoded.resources(), allNamespaces: true, now: F.t0 + 600),
                       IsvcTable.render(state.resources(), allNamespaces: true, now: F.t0 + 600))
        XCTAssertEqual(try encoder.encode(decoded), data, "stable encoding: re-saving changes nothing")
        let top = try JSONDecoder().decode(JSONValue.self, from: data)
        XCTAssertEqual(top["formatVersion"], .int(1))
        XCTAssertEqual(top["services"]?["default/sklearn-iris"]?["revisions"]?.arrayValue?.first?["endpoints"],
                       .array([.string("[::1]:9100")]))
    }

    func testHTTPSAndH2CEndpointsFromTheAnnotationSurviveTheStateFile() throws {
        var state = RolloutState()
        let text = "https://127.0.0.1:8443,h2c://127.0.0.1:8081,https://[::1]:8443"
        let manifest = RolloutRulesTests.manifest(annotations: [InferenceService.endpointsAnnotation: text])
        let isvc = try XCTUnwrap(ManifestDecoder.decode(manifest, defaultNamespace: "default").first)
        XCTAssertEqual(state.apply(isvc, now: F.t0, resolveEndpoints: F.lookup), .created)
        let expected = [Endpoint(host: "127.0.0.1", port: 8443, protocol: .https), Endpoint(host: "127.0.0.1", port: 8081, protocol: .h2c),
                        Endpoint(host: "::1", port: 8443, protocol: .https)]
        XCTAssertEqual(state.records().first?.revisions.first?.endpoints, expected)
        let data = try JSONEncoder().encode(state)
        let decoded = try JSONDecoder().decode(RolloutState.self, from: data)
        XCTAssertEqual(decoded.records().first?.revisions.first?.endpoints, expected)
        let top = try JSONDecoder().decode(JSONValue.self, from: data)
        XCTAssertEqual(top["services"]?["default/sklearn-iris"]?["revisions"]?.arrayValue?.first?["endpoints"],
                       .array(text.split(separator: ",").map { .string(String($0)) }))
    }

    func testNewerFormatIsRefusedWithAClearMessage() throws {
        let data = try JSONEncoder().encode(try workflowState())
        guard case .object(var top) = try JSONDecoder().decode(JSONValue.self, from: data) else { return XCTFail("not an object") }
        top["formatVersion"] = .int(2)
        let newer = try JSONEncoder().encode(JSONValue.object(top))
        XCTAssertThrowsError(try JSONDecoder().decode(RolloutState.self, from: newer)) { error in
            XCTAssertEqual(error as? RolloutStateFormatError, RolloutStateFormatError(found: 2, supported: 1))
            XCTAssertEqual("\(error)",
                           "the rollout state has formatVersion 2 but this sluice reads up to 1: it was written by a newer sluice; refusing to start so it is not overwritten (upgrade sluice or restore a backup)")
        }
        top["formatVersion"] = nil
        let unversioned = try JSONEncoder().encode(JSONValue.object(top))
        XCTAssertThrowsError(try JSONDecoder().decode(RolloutState.self, from: unversioned), "no version: corrupt, refused")
    }

    func testCorruptEndpointIsRefused() throws {
        let data = try JSONEncoder().encode(try workflowState())
        let text = try XCTUnwrap(String(data: data, encoding: .utf8)).replacingOccurrences(of: "127.0.0.1:9001", with: "nowhere")
        XCTAssertThrowsError(try JSONDecoder().decode(RolloutState.self, from: Data(text.utf8)))
    }
}
