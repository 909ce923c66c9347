// Tests for the control layer's tag hosts: names too long for a `latest-` DNS label (kserve#2428).
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class RolloutTagHostLengthTests: XCTestCase {
    typealias F = RolloutFixtures

    /// kserve#2428: `latest-` + a 39-character name + `-predictor-default` is 64 bytes, too long for a
    /// DNS label. The service is still routed; tag hosts (and their URLs) are left out instead of
    /// making the whole route table fail.
    func testTagHostsThatWouldOverflowADNSLabelAreLeftOut() throws {
        let name = String(repeating: "a", count: 39)
        let text = RolloutRulesTests.manifest(annotations: [InferenceService.tagRoutingAnnotation: "true"])
            .replacingOccurrences(of: "name: sklearn-iris", with: "name: \(name)")
        let isvc = try XCTUnwrap(ManifestDecoder.decode(text, defaultNamespace: F.namespace).first)
        var state = RolloutState()
        XCTAssertEqual(state.apply(isvc, now: F.t0, resolveEndpoints: F.lookup), .created)
        XCTAssertTrue(state.setReadiness(namespace: F.namespace, name: name, revision: "\(name)-predictor-default-00001",
                                         isReady: true, now: F.t0 + 1))
        let specs = state.serviceSpecs()
        XCTAssertEqual(specs.first?.tagRouting, false)
        XCTAssertNoThrow(try RouteTable(services: specs, rules: HostRules()))
        let traffic = state.resource(namespace: F.namespace, name: name)?["status"]?["components"]?["predictor"]?["traffic"]
        XCTAssertEqual(traffic?.arrayValue?.first?["tag"], .string("latest"))
        XCTAssertNil(traffic?.arrayValue?.first?["url"])
    }
}
