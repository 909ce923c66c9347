// Tests for traffic mirroring as users write it: the `serving.sluice.dev/mirror-percent` annotation (validated in
// kubectl's words, a route setting that never makes a revision), the mirror it routes — to the latest ready
// revision, at a 0 % dark launch and a 10 % canary, none while that revision has all the traffic — and the config
// file's gateway-wide `mirror:` bounds and a static service's `mirror:`.
import Foundation
@testable import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

final class MirrorAnnotationTests: XCTestCase {
    typealias F = RolloutFixtures

    private func withMirror(_ manifest: String, _ value: String) -> String {
        manifest.replacingOccurrences(of: "metadata:\n", with: "metadata:\n  annotations:\n    serving.sluice.dev/mirror-percent: \"\(value)\"\n")
    }

    private func manifestMessage(_ text: String) -> String? {
        do { _ = try ManifestDecoder.decode(text, defaultNamespace: "default"); return nil } catch { return error.description }
    }

    func testTheAnnotationIsAPercentAboveZeroAndAtMostAHundred() throws {
        XCTAssertEqual(try F.decodeOne(withMirror(F.create, "2.5")).mirrorPercent, 2.5)
        XCTAssertEqual(try F.decodeOne(withMirror(F.create, "100")).mirrorPercent, 100)
        for bad in ["0", "100.1", "-5", "ten", "5%", "1e2", ""] {
            XCTAssertEqual(manifestMessage(withMirror(F.create, bad)),
                           "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/mirror-percent]: Invalid value: \"\(bad)\": must be a percent greater than 0 and at most 100, decimals allowed (e.g. 100, 25 or 2.5)",
                           bad)
        }
    }

    func testADarkLaunchAndACanaryMirrorToTheLatestReadyRevisionAndAPromotedOneToNone() throws {
        var d = RolloutDriver()
        XCTAssertEqual(try d.apply(withMirror(F.create, "25"), at: F.t0), .created)
        d.ready(1, at: F.t0 + 1)
        XCTAssertNil(d.state.serviceSpecs().first?.mirror, "one revision with all the traffic: nothing to mirror to")

        // A dark launch: the new revision gets no client traffic, a quarter of the requests as mirrors.
        _ = try d.apply(withMirror(F.rollback, "25"), at: F.t0 + 10)
        XCTAssertNil(d.state.serviceSpecs().first?.mirror, "not ready yet: no mirror")
        d.ready(2, at: F.t0 + 11)
        var spec = try XCTUnwrap(d.state.serviceSpecs().first)
        XCTAssertEqual(spec.mirror, MirrorSpec(revisionName: F.revision(2), percent: 25))
        XCTAssertEqual(d.routed, ["00002:0", "00001:100"], "the client split is the user's, untouched")
        XCTAssertTrue(spec.revisions.contains { $0.name == F.revision(2) && $0.endpoints == [Endpoint(host: "127.0.0.1", port: 9002)] })
        XCTAssertNoThrow(try RouteTable(services: [spec], rules: HostRules()))

        // A canary at 10 %: the others' requests are mirrored to it too.
        _ = try d.apply(withMirror(F.canary, "25"), at: F.t0 + 20)
        spec = try XCTUnwrap(d.state.serviceSpecs().first)
        XCTAssertEqual(spec.mirror?.revisionName, F.revision(2))

        // Changing the share is a route change, not a new revision.
        let revisions = d.record?.revisions.count
        _ = try d.apply(withMirror(F.canary, "50"), at: F.t0 + 30)
        XCTAssertEqual(d.record?.revisions.count, revisions)
        XCTAssertEqual(d.state.serviceSpecs().first?.mirror?.percent, 50)

        // Promoted: the latest ready revision has everything, it is mirrored to no one.
        _ = try d.apply(withMirror(F.promote, "50"), at: F.t0 + 40)
        XCTAssertNil(d.state.serviceSpecs().first?.mirror)
    }

    func testTheConfigFilesBoundsAndAStaticServicesMirror() throws {
        let config = try GatewayConfig.parse(yaml: """
            mirror: {maxInFlight: 8, timeout: 3s, maxRequestBytes: 16KiB}
            services:
            - name: sklearn-iris
              namespace: kserve-test
              mirror: {percent: 2.5, revision: sklearn-iris-predictor-default-00002}
              revisions:
                sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
                sklearn-iris-predictor-default-00002: [127.0.0.1:9002]
              traffic:
              - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
            """, file: "test.yaml")
        XCTAssertEqual(config.proxy.mirror.maxInFlight, 8)
        XCTAssertEqual(config.proxy.mirror.timeoutMs, 3_000)
        XCTAssertEqual(config.proxy.mirror.maxRequestBytes, 16 * 1024)
        XCTAssertEqual(config.services.first?.mirror, MirrorSpec(revisionName: "sklearn-iris-predictor-default-00002", percent: 2.5))

        func message(_ yaml: String) -> String? {
            do { _ = try GatewayConfig.parse(yaml: yaml + "\n" + GatewayConfigTests.minimalService, file: "config/sluice.yaml"); return nil } catch { return error.description }
        }
        XCTAssertEqual(message("mirror: {maxInFlight: 0}"), "config/sluice.yaml: mirror.maxInFlight: 0 is outside 1...100000")
        XCTAssertEqual(message("mirror: {inFlight: 2}"), "config/sluice.yaml: mirror.inFlight: unknown key, expected one of maxInFlight, timeout, maxRequestBytes")
    }
}
