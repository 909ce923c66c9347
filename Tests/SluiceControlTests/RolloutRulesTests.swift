// Tests for the control layer's rollout rules beyond the seed: rollback, consecutive canaries, readiness, tags, deletion.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class RolloutRulesTests: XCTestCase {
    typealias F = RolloutFixtures

    /// The seed's manifest with another storageUri, canary percent and annotations.
    static func manifest(storageUri: String = F.model2, canary: Int? = nil, annotations: [String: String] = [:]) -> String {
        var text = """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata:
              name: sklearn-iris

            """
        if !annotations.isEmpty {
            text += "  annotations:\n"
            for (key, value) in annotations.sorted(by: { $0.key < $1.key }) { text += "    \(key): \"\(value)\"\n" }
        }
        text += "spec:\n  predictor:\n"
        if let canary { text += "    canaryTrafficPercent: \(canary)\n" }
        text += "    model:\n      modelFormat:\n        name: sklearn\n      storageUri: \"\(storageUri)\"\n"
        return text
    }

    /// Created, 00001 ready: 100 % on it.
    func started() throws -> RolloutDriver {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        return driver
    }

    func testRollbackAfterFullRolloutGoesToPreviousRolledoutRevision() throws {
        var driver = try started()
        // Straight to model-2 without a canary: blue-green once 00002 is ready.
        XCTAssertEqual(try driver.apply(Self.manifest(), at: F.t0 + 10), .configured)
        XCTAssertEqual(driver.traffic, ["00001:100"], "00002 not ready: 00001 keeps everything")
        driver.ready(2, at: F.t0 + 20)
        XCTAssertEqual(driver.traffic, ["00002:100"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2))
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
        // Rolling back with 20: prev is the previously rolled-out 00001, not 00002 itself.
        _ = try driver.apply(Self.manifest(canary: 20), at: F.t0 + 30)
        XCTAssertEqual(driver.traffic, ["00002:20", "00001:80:prev"])
        XCTAssertEqual(driver.routed, ["00002:20", "00001:80"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(1))
        XCTAssertEqual(driver.record?.revisions.count, 2)
        // Promote again: 00002 rolled out once more, 00001 previous.
        _ = try driver.apply(Self.manifest(), at: F.t0 + 40)
        XCTAssertEqual(driver.traffic, ["00002:100"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2))
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
    }

    /// kserve#2130: a second canary right after a full rollout. While the new revision starts, "latest"
    /// still resolves to the rolled-out revision, so one revision holds 100 % over two targets; that
    /// must not be taken for a rollback (LRR stays, prev stays on it).
    func testConsecutiveCanariesKeepPrevOnTheRolledOutRevision() throws {
        var driver = try started()
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        _ = try driver.apply(F.promote, at: F.t0 + 30)
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2))
        let model3 = Self.manifest(storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-3", canary: 10,
                                   annotations: [InferenceService.endpointsAnnotation: "127.0.0.1:9003"])
        XCTAssertEqual(try driver.apply(model3, at: F.t0 + 40), .configured)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(3))
        XCTAssertEqual(driver.traffic, ["00002:10", "00002:90:prev"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2), "not a rollback: 00003 is not ready yet")
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
        driver.ready(3, at: F.t0 + 50)
        XCTAssertEqual(driver.traffic, ["00003:10", "00002:90:prev"])
        let lines = driver.table(at: F.t0 + 60)
        XCTAssertEqual(lines[1].split(separator: " ").map(String.init),
                       ["sklearn-iris", "http://sklearn-iris.kserve-test.example.com", "True", "90", "10",
                        F.revision(2), F.revision(3), "60s"])
        // A canary on top of a canary: prev stays on the last fully rolled-out revision.
        let model4 = Self.manifest(storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-4", canary: 30,
                                   annotations: [InferenceService.endpointsAnnotation: "127.0.0.1:9004"])
        _ = try driver.apply(model4, at: F.t0 + 70)
        XCTAssertEqual(driver.traffic, ["00003:30", "00002:70:prev"])
        driver.ready(4, at: F.t0 + 80)
        XCTAssertEqual(driver.traffic, ["00004:30", "00002:70:prev"])
    }

    func testCanaryWhoseEndpointsAreUnknownNeverGetsTraffic() throws {
        var driver = try started()
        let unknown = Self.manifest(storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-9", canary: 10)
        XCTAssertEqual(try driver.apply(unknown, at: F.t0 + 10), .configured)
        let revision = try XCTUnwrap(driver.record?.revision(named: F.revision(2)))
        XCTAssertFalse(revision.isReady)
        XCTAssertEqual(revision.reason, "EndpointsNotFound")
        XCTAssertEqual(revision.endpoints, [])
        XCTAssertEqual(driver.traffic, ["00001:10", "00001:90:prev"])
        XCTAssertEqual(driver.routed, ["00001:10", "00001:90"], "every request still on 00001")
        XCTAssertFalse(driver.ready(2, at: F.t0 + 11), "no endpoints, nothing to probe: cannot be ready")
        XCTAssertEqual(driver.ready, "False")
        let predictorReady = try XCTUnwrap(driver.record?.condition("PredictorReady"))
        XCTAssertEqual(predictorReady.reason, "EndpointsNotFound")
        XCTAssertEqual(predictorReady.message,
                       "Revision \"sklearn-iris-predictor-default-00002\": no endpoints are configured for storageUri \"gs://kfserving-examples/models/sklearn/1.0/model-9\"")
        XCTAssertEqual(driver.record?.condition("LatestDeploymentReady")?.reason, "PredictorConfigurationReady not ready")
        XCTAssertEqual(driver.record?.condition("IngressReady")?.status, .isTrue, "00001 is still served")
        let row = driver.table(at: F.t0 + 20)[1].split(separator: " ").map(String.init)
        XCTAssertEqual(row, ["sklearn-iris", "http://sklearn-iris.kserve-test.example.com", "False", "90", "10",
                             F.revision(1), F.revision(1), "20s"])
    }

    func testProbeFailureMovesTheShareToTheReadyRevision() throws {
        var driver = try started()
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        XCTAssertEqual(driver.routed, ["00002:10", "00001:90"])
        XCTAssertTrue(driver.ready(2, false, at: F.t0 + 30, reason: "ProbeFailed",
                                   message: "GET /v1/models/sklearn-iris on 127.0.0.1:9002: connection refused"))
        // Status keeps KServe's split; the data plane sends nothing to the failing revision.
        XCTAssertEqual(driver.traffic, ["00002:10", "00001:90:prev"])
        XCTAssertEqual(driver.routed, ["00002:0", "00001:100"])
        XCTAssertEqual(driver.state.serviceSpecs().first?.revisions.first, RevisionSpec(name: F.revision(2), endpoints: []))
        XCTAssertEqual(driver.record?.condition("PredictorRouteReady")?.reason, "ProbeFailed")
        XCTAssertEqual(driver.ready, "False")
        XCTAssertEqual(driver.record?.latestReadyRevision, F.revision(2), "history is not rewritten by a probe")
        XCTAssertFalse(driver.ready(2, false, at: F.t0 + 31, reason: "ProbeFailed",
                                    message: "GET /v1/models/sklearn-iris on 127.0.0.1:9002: connection refused"))
        XCTAssertTrue(driver.ready(2, at: F.t0 + 40))
        XCTAssertEqual(driver.routed, ["00002:10", "00001:90"])
        XCTAssertEqual(driver.ready, "True")
        // And the other way round: the rolled-out revision failing sends everything to the canary.
        driver.ready(1, false, at: F.t0 + 50, reason: "ProbeFailed", message: "timeout")
        XCTAssertEqual(driver.routed, ["00002:100", "00001:0"])
        // Nothing ready at all: the service stays, with KServe's split and no endpoints (its hosts answer 503, not 404).
        driver.ready(2, false, at: F.t0 + 60, reason: "ProbeFailed", message: "timeout")
        XCTAssertEqual(driver.state.serviceSpecs().first?.revisions, [RevisionSpec(name: F.revision(2), endpoints: []),
                                                                      RevisionSpec(name: F.revision(1), endpoints: [])])
        XCTAssertEqual(driver.state.serviceSpecs().first?.traffic.map(\.percent), [10, 90])
        XCTAssertEqual(driver.state.routedPercents(namespace: F.namespace, name: F.name), [:], "no revision serves a request")
        XCTAssertEqual(driver.record?.condition("IngressReady")?.status, .isFalse)
    }

    func testTagRoutingToggledOnAndOff() throws {
        var driver = try started()
        XCTAssertEqual(driver.state.serviceSpecs().first?.tagRouting, false)
        let on = Self.manifest(canary: 10, annotations: [InferenceService.tagRoutingAnnotation: "true"])
        _ = try driver.apply(on, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        XCTAssertEqual(driver.traffic, ["00002:10:latest", "00001:90:prev"])
        XCTAssertEqual(driver.state.serviceSpecs().first?.tagRouting, true)
        var table = try RouteTable(services: driver.state.serviceSpecs(), rules: HostRules())
        XCTAssertNotNil(table.match(host: "latest-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertEqual(driver.predictor?["traffic"]?.arrayValue?.first?["url"],
                       .string("http://latest-sklearn-iris-predictor-default.kserve-test.example.com"))

        // Annotation removed: a template change (new revision 00003), the latest tag and tag hosts go.
        XCTAssertEqual(try driver.apply(Self.manifest(canary: 10), at: F.t0 + 30), .configured)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(3))
        driver.ready(3, at: F.t0 + 40)
        XCTAssertEqual(driver.traffic, ["00003:10", "00001:90:prev"])
        XCTAssertEqual(driver.state.serviceSpecs().first?.tagRouting, false)
        table = try RouteTable(services: driver.state.serviceSpecs(), rules: HostRules())
        XCTAssertNil(table.match(host: "latest-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertNil(table.match(host: "prev-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertEqual(driver.predictor?["traffic"]?.arrayValue?.compactMap { $0["url"] }, [])
        // The gateway's default turns tag hosts on for services without the annotation (prev only: KServe's tags).
        XCTAssertEqual(driver.state.serviceSpecs(tagRoutingDefault: true).first?.tagRouting, true)
        XCTAssertEqual(driver.state.serviceSpecs(tagRoutingDefault: true).first?.traffic.compactMap(\.tag), ["prev"])
    }

    func testCanaryPercentOnlyChangeCreatesNoRevision() throws {
        var driver = try started()
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        XCTAssertEqual(driver.record?.generation, 2)
        XCTAssertEqual(try driver.apply(Self.manifest(canary: 30), at: F.t0 + 30), .configured)
        XCTAssertEqual(driver.record?.revisions.map(\.name), [F.revision(1), F.revision(2)])
        XCTAssertEqual(driver.traffic, ["00002:30", "00001:70:prev"])
        XCTAssertEqual(driver.record?.generation, 3, "a spec change bumps metadata.generation")
        XCTAssertEqual(try driver.apply(Self.manifest(canary: 30), at: F.t0 + 40), .unchanged)
        XCTAssertEqual(driver.record?.generation, 3)
    }

    func testLabelOrAnnotationChangeCreatesARevision() throws {
        var driver = try started()
        let labelled = F.create.replacingOccurrences(of: "  name: \"sklearn-iris\"\n",
                                                     with: "  name: \"sklearn-iris\"\n  labels:\n    team: iris\n")
        XCTAssertEqual(try driver.apply(labelled, at: F.t0 + 10), .configured)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(2))
        XCTAssertEqual(driver.record?.generation, 1, "metadata changes do not bump generation")
    }

    func testDeletionForgetsTheServiceAndItsRevisions() throws {
        var driver = try started()
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        XCTAssertTrue(driver.state.delete(namespace: F.namespace, name: F.name))
        XCTAssertNil(driver.resource)
        XCTAssertEqual(driver.state.serviceSpecs(), [])
        XCTAssertEqual(IsvcTable.render(driver.state.resources(namespace: F.namespace), now: F.t0), "")
        XCTAssertFalse(driver.state.delete(namespace: F.namespace, name: F.name))
        XCTAssertEqual(try driver.apply(F.create, at: F.t0 + 20), .created)
        XCTAssertEqual(driver.record?.revisions.map(\.name), [F.revision(1)], "a recreated service starts at 00001")
    }

    func testAnnotatedEndpointsWinOverTheLookup() throws {
        var driver = RolloutDriver()
        let annotated = Self.manifest(storageUri: F.model1,
                                      annotations: [InferenceService.endpointsAnnotation: "127.0.0.1:9101, [::1]:9102"])
        _ = try driver.apply(annotated, at: F.t0)
        let revision = try XCTUnwrap(driver.record?.revisions.first)
        XCTAssertEqual(revision.endpoints, [Endpoint(host: "127.0.0.1", port: 9101), Endpoint(host: "::1", port: 9102)])
        XCTAssertEqual(revision.endpointSource, .annotation)
        XCTAssertEqual(revision.reason, "Deploying")
    }

    func testRefreshEndpointsPicksUpANewModelMapping() throws {
        var driver = try started()
        let model9 = "gs://kfserving-examples/models/sklearn/1.0/model-9"
        _ = try driver.apply(Self.manifest(storageUri: model9, canary: 10), at: F.t0 + 10)
        XCTAssertEqual(driver.record?.revisions.last?.reason, "EndpointsNotFound")
        let changed = driver.state.refreshEndpoints(now: F.t0 + 20) { isvc in
            isvc.predictor.storageUri == model9 ? .success([Endpoint(host: "127.0.0.1", port: 9009)]) : F.lookup(isvc)
        }
        XCTAssertTrue(changed)
        XCTAssertEqual(driver.record?.revisions.last?.reason, "Deploying")
        XCTAssertEqual(driver.record?.revisions.first?.isReady, true, "unchanged endpoints keep their readiness")
        driver.ready(2, at: F.t0 + 30)
        XCTAssertEqual(driver.routed, ["00002:10", "00001:90"])
    }

    func testGetRevisionsRows() throws {
        var driver = try started()
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        let rows = try XCTUnwrap(driver.state.revisionRows(namespace: F.namespace, name: F.name))
        XCTAssertEqual(rows.map(\.percent), [100, 0])
        XCTAssertEqual(RevisionRow.render(rows, now: F.t0 + 70).split(separator: "\n").map(String.init), [
            "NAME                                   ENDPOINTS        READY   REASON      PERCENT   TAGS   AGE",
            "sklearn-iris-predictor-default-00001   127.0.0.1:9001   True                100%      prev   70s",
            "sklearn-iris-predictor-default-00002   127.0.0.1:9002   False   Deploying   0%               60s",
        ])
    }
}
