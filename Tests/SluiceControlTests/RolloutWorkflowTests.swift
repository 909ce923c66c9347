// Tests for the control layer's rollout state: the seed's canary workflow step by step, as `kubectl get isvc` shows it.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

/// The seed's manifests (seed-kserve-canary-rollout.ru.md), unchanged, and a small driver around `RolloutState`.
enum RolloutFixtures {
    static let namespace = "kserve-test"
    static let name = "sklearn-iris"
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    static let model1 = "gs://kfserving-examples/models/sklearn/1.0/model"
    static let model2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
    static func revision(_ number: Int) -> String { "sklearn-iris-predictor-default-0000\(number)" }

    static let create = """
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "sklearn-iris"
        spec:
          predictor:
            model:
              modelFormat:
                name: sklearn
              storageUri: "gs://kfserving-examples/models/sklearn/1.0/model"
        """
    static let canary = """
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "sklearn-iris"
        spec:
          predictor:
            canaryTrafficPercent: 10  # <= NB
            model:
              modelFormat:
                name: sklearn
              storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"
        """
    static let promote = """
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "sklearn-iris"
        spec:
          predictor:
            model:
              modelFormat:
                name: sklearn
              storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"
        """
    static let rollback = """
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "sklearn-iris"
        spec:
          predictor:
            canaryTrafficPercent: 0  # <= NB
            model:
              modelFormat:
                name: sklearn
              storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"
        """
    static let tagged = """
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "sklearn-iris"
          annotations:
            serving.kserve.io/enable-tag-routing: "true"
        spec:
          predictor:
            canaryTrafficPercent: 10
            model:
              modelFormat:
                name: sklearn
              storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"
        """

    /// `.status.components.predictor` of step 5, as kserve-rollout.md prints it.
    static let step5Predictor = """
        { "address": {"url": "http://sklearn-iris-predictor-default.kserve-test.svc.cluster.local"},
          "latestCreatedRevision": "sklearn-iris-predictor-default-00003",
          "latestReadyRevision": "sklearn-iris-predictor-default-00003",
          "latestRolledoutRevision": "sklearn-iris-predictor-default-00001",
          "previousRolledoutRevision": "sklearn-iris-predictor-default-00001",
          "traffic": [
            {"latestRevision": true,  "percent": 10, "revisionName": "sklearn-iris-predictor-default-00003", "tag": "latest",
             "url": "http://latest-sklearn-iris-predictor-default.kserve-test.example.com"},
            {"latestRevision": false, "percent": 90, "revisionName": "sklearn-iris-predictor-default-00001", "tag": "prev",
             "url": "http://prev-sklearn-iris-predictor-default.kserve-test.example.com"} ],
          "url": "http://sklearn-iris-predictor-default.kserve-test.example.com" }
        """

    /// The gateway config's `models:` mapping: each storageUri served by one local predictor.
    static func lookup(_ isvc: InferenceService) -> Result<[Endpoint], EndpointLookupError> {
        switch isvc.predictor.storageUri {
        case model1: return .success([Endpoint(host: "127.0.0.1", port: 9001)])
        case model2: return .success([Endpoint(host: "127.0.0.1", port: 9002)])
        default: return .failure(EndpointLookupError(message: "no endpoints are configured for storageUri \"\(isvc.predictor.storageUri)\""))
        }
    }

    static func decodeOne(_ yaml: String) throws -> InferenceService {
        let services = try ManifestDecoder.decode(yaml, defaultNamespace: namespace)
        XCTAssertEqual(services.count, 1)
        return try XCTUnwrap(services.first)
    }
}

/// A gateway's view of the state: apply text, report probes, read what users read.
struct RolloutDriver {
    var state = RolloutState()

    mutating func apply(_ yaml: String, at now: Date) throws -> ApplyResult {
        state.apply(try RolloutFixtures.decodeOne(yaml), now: now, resolveEndpoints: RolloutFixtures.lookup)
    }

    @discardableResult
    mutating func ready(_ number: Int, _ isReady: Bool = true, at now: Date,
                        reason: String? = nil, message: String? = nil) -> Bool {
        state.setReadiness(namespace: RolloutFixtures.namespace, name: RolloutFixtures.name,
                           revision: RolloutFixtures.revision(number), isReady: isReady,
                           reason: reason, message: message, now: now)
    }

    var record: ServiceRecord? { state.record(namespace: RolloutFixtures.namespace, name: RolloutFixtures.name) }

    var resource: JSONValue? { state.resource(namespace: RolloutFixtures.namespace, name: RolloutFixtures.name) }

    var predictor: JSONValue? { resource?["status"]?["components"]?["predictor"] }

    /// Status traffic as `revision:percent[:tag]` strings, in order.
    var traffic: [String] {
        (record?.traffic ?? []).map { target in
            let base = "\(target.revisionName?.suffix(5) ?? "?"):\(target.percent)"
            return target.tag.map { "\(base):\($0)" } ?? base
        }
    }

    /// What the data plane routes: `revision:percent` per target.
    var routed: [String] {
        guard let spec = state.serviceSpecs().first else { return [] }
        return spec.traffic.map { "\($0.revisionName.suffix(5)):\($0.percent)" }
    }

    func table(at now: Date) -> [String] {
        IsvcTable.render(state.resources(namespace: RolloutFixtures.namespace), now: now)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
    }

    var ready: String? { record?.condition("Ready")?.status.rawValue }
}

final class RolloutWorkflowTests: XCTestCase {
    typealias F = RolloutFixtures

    /// kubectl's tabwriter: every column as wide as its widest cell + 3; these are the seed's steps with
    /// exact spacing, the URL column being 43 + 3 wide,
    /// the empty PREVROLLEDOUTREVISION column of steps 1 and 3 as wide as its header + 3.
    static let header = "NAME           URL                                           READY   PREV   LATEST   PREVROLLEDOUTREVISION                  LATESTREADYREVISION                    AGE"
    static let step1Header = "NAME           URL                                           READY   PREV   LATEST   PREVROLLEDOUTREVISION   LATESTREADYREVISION                    AGE"

    func testSeedWorkflowStepByStep() throws {
        var driver = RolloutDriver()
        // 1. Create: 00001, 100 % once its probe passes.
        XCTAssertEqual(try driver.apply(F.create, at: F.t0), .created)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(1))
        XCTAssertEqual(driver.traffic, [], "nothing is ready yet: no routable traffic")
        XCTAssertEqual(driver.state.serviceSpecs().first?.revisions, [RevisionSpec(name: F.revision(1), endpoints: [])],
                       "no ready revision: kept in the route table without endpoints (503, not 404)")
        XCTAssertEqual(driver.state.serviceSpecs().first?.traffic.map(\.percent), [100])
        XCTAssertEqual(driver.ready, "Unknown")
        XCTAssertTrue(driver.ready(1, at: F.t0 + 5))
        XCTAssertEqual(driver.traffic, ["00001:100"])
        XCTAssertEqual(driver.routed, ["00001:100"])
        XCTAssertEqual(driver.ready, "True")
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(1))
        XCTAssertNil(driver.record?.previousRolledoutRevision)
        XCTAssertEqual(driver.table(at: F.t0 + 46), [
            Self.step1Header,
            "sklearn-iris   http://sklearn-iris.kserve-test.example.com   True           100                              sklearn-iris-predictor-default-00001   46s",
        ])
        XCTAssertEqual(try driver.apply(F.create, at: F.t0 + 50), .unchanged)

        // 2. Canary 10 with model-2: 00002 created; until ready, "latest" still resolves to 00001.
        XCTAssertEqual(try driver.apply(F.canary, at: F.t0 + 60), .configured)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(2))
        XCTAssertEqual(driver.traffic, ["00001:10", "00001:90:prev"])
        XCTAssertEqual(driver.routed, ["00001:10", "00001:90"], "no request reaches 00002 before it is ready")
        XCTAssertEqual(driver.ready, "Unknown", "Knative: latest created revision still deploying")
        driver.ready(2, at: F.t0 + 70)
        XCTAssertEqual(driver.traffic, ["00002:10", "00001:90:prev"])
        XCTAssertEqual(driver.routed, ["00002:10", "00001:90"])
        XCTAssertEqual(driver.state.serviceSpecs().first?.revisions, [
            RevisionSpec(name: F.revision(2), endpoints: [Endpoint(host: "127.0.0.1", port: 9002)]),
            RevisionSpec(name: F.revision(1), endpoints: [Endpoint(host: "127.0.0.1", port: 9001)]),
        ])
        XCTAssertEqual(driver.table(at: F.t0 + 559), [
            Self.header,
            "sklearn-iris   http://sklearn-iris.kserve-test.example.com   True    90     10       sklearn-iris-predictor-default-00001   sklearn-iris-predictor-default-00002   9m19s",
        ])

        // 3. Promote: the field removed, 100 % to 00002; no new revision.
        XCTAssertEqual(try driver.apply(F.promote, at: F.t0 + 1000), .configured)
        XCTAssertEqual(driver.record?.revisions.count, 2)
        XCTAssertEqual(driver.traffic, ["00002:100"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2))
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
        XCTAssertEqual(driver.table(at: F.t0 + 17 * 60), [
            Self.step1Header,
            "sklearn-iris   http://sklearn-iris.kserve-test.example.com   True           100                              sklearn-iris-predictor-default-00002   17m",
        ])

        // 4. Rollback / pin with 0: 100 % back to 00001, 00002 kept at 0 %.
        XCTAssertEqual(try driver.apply(F.rollback, at: F.t0 + 1050), .configured)
        XCTAssertEqual(driver.record?.revisions.count, 2, "only canaryTrafficPercent changed: no revision")
        XCTAssertEqual(driver.traffic, ["00002:0", "00001:100:prev"])
        XCTAssertEqual(driver.routed, ["00002:0", "00001:100"])
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(1))
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
        XCTAssertEqual(driver.table(at: F.t0 + 18 * 60), [
            Self.header,
            "sklearn-iris   http://sklearn-iris.kserve-test.example.com   True    100    0        sklearn-iris-predictor-default-00001   sklearn-iris-predictor-default-00002   18m",
        ])

        // 5. Tag routing: the annotation is a template change → 00003; status as the document's JSON.
        XCTAssertEqual(try driver.apply(F.tagged, at: F.t0 + 1100), .configured)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(3))
        XCTAssertEqual(driver.traffic, ["00002:10:latest", "00001:90:prev"], "00003 not ready: latest is still 00002")
        driver.ready(3, at: F.t0 + 1110)
        let expected = try JSONDecoder().decode(JSONValue.self, from: Data(F.step5Predictor.utf8))
        XCTAssertEqual(driver.predictor, expected)
        let spec = try XCTUnwrap(driver.state.serviceSpecs().first)
        XCTAssertTrue(spec.tagRouting)
        XCTAssertEqual(spec.traffic, [
            TrafficTargetSpec(revisionName: F.revision(3), percent: 10, tag: "latest", latestRevision: true),
            TrafficTargetSpec(revisionName: F.revision(1), percent: 90, tag: "prev", latestRevision: false),
        ])
        // The data plane takes it: tag hosts reach their revisions.
        let table = try RouteTable(services: driver.state.serviceSpecs(), rules: HostRules())
        let latest = try XCTUnwrap(table.match(host: "latest-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertEqual(latest.service.revisions[try XCTUnwrap(latest.tag).revisionIndex].name, F.revision(3))
        let prev = try XCTUnwrap(table.match(host: "prev-sklearn-iris-predictor-default.kserve-test.example.com"))
        XCTAssertEqual(prev.service.revisions[try XCTUnwrap(prev.tag).revisionIndex].name, F.revision(1))
    }

    func testResourceIsTheWholeObjectKubectlShows() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 5)
        let object = try XCTUnwrap(driver.resource)
        XCTAssertEqual(object["apiVersion"], .string("serving.kserve.io/v1beta1"))
        XCTAssertEqual(object["kind"], .string("InferenceService"))
        XCTAssertEqual(object["metadata"]?["namespace"], .string("kserve-test"))
        XCTAssertEqual(object["metadata"]?["generation"], .int(1))
        XCTAssertEqual(object["metadata"]?["creationTimestamp"], .string("2026-09-21T14:13:20Z"))
        XCTAssertEqual(object["spec"]?["predictor"]?["model"]?["storageUri"], .string(F.model1))
        XCTAssertEqual(object["status"]?["url"], .string("http://sklearn-iris.kserve-test.example.com"))
        XCTAssertEqual(object["status"]?["address"]?["url"], .string("http://sklearn-iris.kserve-test.svc.cluster.local"))
        let types = object["status"]?["conditions"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
        XCTAssertEqual(types, ["IngressReady", "LatestDeploymentReady", "PredictorConfigurationReady",
                               "PredictorReady", "PredictorRouteReady", "Ready", "RoutesReady"])
        XCTAssertTrue(object["status"]?["conditions"]?.arrayValue?.allSatisfy { $0["status"] == .string("True") } ?? false)
        // Without tag routing the prev/latest targets carry no URL: no such host is served.
        _ = try driver.apply(F.canary, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 20)
        let traffic = try XCTUnwrap(driver.predictor?["traffic"]?.arrayValue)
        XCTAssertEqual(traffic.map { $0["url"] }, [nil, nil])
        XCTAssertEqual(traffic.map { $0["tag"] }, [nil, .string("prev")])
        XCTAssertEqual(driver.resource?["metadata"]?["generation"], .int(2))
    }

    func testAllNamespacesTableHasNamespaceFirst() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        let other = try XCTUnwrap(ManifestDecoder.decode(F.create, defaultNamespace: "default").first)
        XCTAssertEqual(driver.state.apply(other, now: F.t0, resolveEndpoints: F.lookup), .created)
        let lines = IsvcTable.render(driver.state.resources(), allNamespaces: true, now: F.t0 + 3 * 3600)
            .split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[0].hasPrefix("NAMESPACE     NAME           URL"))
        // Not ready yet: no URL (KServe sets it once the predictor is ready), READY Unknown while deploying.
        XCTAssertEqual(lines[1].split(separator: " ").map(String.init), ["default", "sklearn-iris", "Unknown", "3h"])
        XCTAssertTrue(lines[2].hasPrefix("kserve-test   sklearn-iris   http://sklearn-iris.kserve-test.example.com"))
    }

    func testAgeIsWordedLikeKubectl() {
        let cases: [(TimeInterval, String)] = [(45, "45s"), (119, "119s"), (192, "3m12s"), (600, "10m"), (5 * 3600, "5h"),
                                               (5 * 3600 + 720, "5h12m"), (9 * 3600, "9h"), (2 * 86400, "2d"), (3 * 86400 + 3600, "3d1h")]
        for (seconds, text) in cases {
            XCTAssertEqual(KubectlText.age(from: F.t0, to: F.t0 + seconds), text)
        }
    }
}
