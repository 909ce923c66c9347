// Tests for the sticky key as the control plane carries it: the `serving.sluice.dev/sticky-key` annotation and a static
// service's `stickyKey:` (validated with the field and reason), and the traffic order sticky hashing relies on — the
// latest (canary) target first — through a whole KServe rollout, checked on the keys themselves.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class StickyCanaryTests: XCTestCase {
    typealias F = RolloutFixtures

    static func annotated(_ yaml: String, _ key: String = "header:x-user-id") -> String {
        yaml.replacingOccurrences(of: "metadata:\n", with: "metadata:\n  annotations:\n    serving.sluice.dev/sticky-key: '\(key)'\n")
    }

    static func canary(_ percent: Int) -> String {
        annotated(F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10", with: "canaryTrafficPercent: \(percent)"))
    }

    private func manifestMessage(_ text: String) -> String? {
        do {
            _ = try ManifestDecoder.decode(text, defaultNamespace: "default")
            return nil
        } catch {
            return error.description
        }
    }

    private func configMessage(_ yaml: String) -> String? {
        do {
            _ = try GatewayConfig.parse(yaml: yaml, file: "config/sluice.yaml")
            return nil
        } catch {
            return error.description
        }
    }

    func testTheAnnotationDecodesAndReachesTheRouteTable() throws {
        let service = try F.decodeOne(Self.annotated(F.create, "cookie:session"))
        XCTAssertEqual(service.stickyKey, .cookie("session"))
        var driver = RolloutDriver()
        _ = try driver.apply(Self.annotated(F.create, "header:X-User-Id"), at: F.t0)
        XCTAssertEqual(driver.state.serviceSpecs().first?.stickyKey, .header("x-user-id"), "before a revision is ready too")
        driver.ready(1, at: F.t0 + 5)
        let table = try RouteTable(services: driver.state.serviceSpecs(), rules: HostRules())
        XCTAssertEqual(table.services.first?.stickyKey, .header("x-user-id"))
        // A route setting: dropping it changes the routes, not the revisions.
        XCTAssertEqual(try driver.apply(F.create, at: F.t0 + 10), .configured)
        XCTAssertEqual(driver.record?.revisions.count, 1)
        XCTAssertNil(driver.state.serviceSpecs().first?.stickyKey)
    }

    func testABadAnnotationIsRefusedWordForWord() {
        XCTAssertEqual(manifestMessage(Self.annotated(F.create, "x-user-id")),
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/sticky-key]: Invalid value: \"x-user-id\": must be header:NAME or cookie:NAME (e.g. 'header:x-user-id', or 'cookie:session')")
        XCTAssertEqual(manifestMessage(Self.annotated(F.create, "cookie:a b")),
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/sticky-key]: Invalid value: \"cookie:a b\": a cookie name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. 'session')")
        XCTAssertEqual(manifestMessage(Self.annotated(F.create, "header:")),
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/sticky-key]: Invalid value: \"header:\": the header name after 'header:' must not be empty")
    }

    static func staticService(_ sticky: String) -> String {
        """
        services:
        - name: sklearn-iris
          namespace: kserve-test
          stickyKey: \(sticky)
          revisions:
            sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
            sklearn-iris-predictor-default-00002: [127.0.0.1:9002]
          traffic:
          - {revisionName: sklearn-iris-predictor-default-00002, percent: 10, latestRevision: true}
          - {revisionName: sklearn-iris-predictor-default-00001, percent: 90}
        """
    }

    func testAStaticServicesStickyKeyIsReadAndABadOneRefusedWithItsPath() throws {
        let config = try GatewayConfig.parse(yaml: Self.staticService("cookie:session"), file: "test.yaml")
        XCTAssertEqual(config.services.first?.stickyKey, .cookie("session"))
        XCTAssertNil(try GatewayConfig.parse(yaml: GatewayConfigTests.minimalService, file: "test.yaml").services.first?.stickyKey)
        XCTAssertEqual(configMessage(Self.staticService("query:user")),
                       "config/sluice.yaml: services[0].stickyKey: \"query:user\": must be header:NAME or cookie:NAME (e.g. 'header:x-user-id', or 'cookie:session')")
        XCTAssertEqual(configMessage(Self.staticService("header:cookie")),
                       "config/sluice.yaml: services[0].stickyKey: \"header:cookie\": the whole Cookie field cannot be the key; name one cookie with cookie:NAME")
        XCTAssertEqual(configMessage(Self.staticService("[header]")),
                       "config/sluice.yaml: services[0].stickyKey: expected a string, got a list")
    }

    /// Each key's revision under the data plane's current table (what the worker computes for `x-user-id: KEY`).
    func revisions(_ driver: RolloutDriver, keys: [String]) throws -> [String] {
        let service = try XCTUnwrap(RouteTable(services: driver.state.serviceSpecs(), rules: HostRules()).services.first)
        let reader = try XCTUnwrap(service.sticky)
        return try keys.map { key in
            var key = key
            let hash = key.withUTF8 { StickyKey.hash(UnsafeRawBufferPointer($0), seed: reader.seed) }
            return service.revisions[try XCTUnwrap(service.pick(hash))].name.suffix(5).description
        }
    }

    func testThroughAWholeRolloutTheCanaryIsFirstAndNoKeyEverFlipsBack() throws {
        let keys = (0..<20_000).map { "user-\($0)" }
        var driver = RolloutDriver()
        _ = try driver.apply(Self.annotated(F.create), at: F.t0)
        driver.ready(1, at: F.t0 + 5)
        XCTAssertEqual(Set(try revisions(driver, keys: keys)), ["00001"])

        _ = try driver.apply(Self.canary(10), at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 15)
        var before = try revisions(driver, keys: keys)
        var time = F.t0 + 20
        for percent in [25, 50] {
            _ = try driver.apply(Self.canary(percent), at: time)
            time += 10
            // The invariant: KServe's latest (canary) target comes first, so it owns the low end of the hash range.
            XCTAssertEqual(driver.routed, ["00002:\(percent)", "00001:\(100 - percent)"])
            XCTAssertEqual(driver.state.serviceSpecs().first?.traffic.first?.latestRevision, true)
            let now = try revisions(driver, keys: keys)
            for (old, new) in zip(before, now) where old != new {
                XCTAssertEqual("\(old)→\(new)", "00001→00002", "at \(percent) %")
            }
            XCTAssertGreaterThan(now.filter { $0 == "00002" }.count, before.filter { $0 == "00002" }.count)
            before = now
        }

        // Promote: every key on 00002.
        _ = try driver.apply(Self.annotated(F.promote), at: time)
        XCTAssertEqual(driver.routed, ["00002:100"])
        XCTAssertEqual(Set(try revisions(driver, keys: keys)), ["00002"])

        // The next canary (a template change: a label) at 10 %: first again; only keys moving to it change.
        let next = Self.canary(10).replacingOccurrences(of: "metadata:\n", with: "metadata:\n  labels:\n    team: iris\n")
        XCTAssertEqual(try driver.apply(next, at: time + 10), .configured)
        driver.ready(3, at: time + 15)
        XCTAssertEqual(driver.routed, ["00003:10", "00002:90"])
        let third = try revisions(driver, keys: keys)
        XCTAssertEqual(Set(third), ["00002", "00003"])
        // Binomial(20 000, 0.1): 2 000 ± 5σ (σ ≈ 42.4).
        XCTAssertLessThan(abs(third.filter { $0 == "00003" }.count - 2_000), 212)
    }
}
