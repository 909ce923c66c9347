// Tests for server-side apply and managedFields: ownership, pruning, sharing, conflicts and their Status, force,
// the Update entries of other writes, and the fieldsV1 a real API server writes for the same InferenceService.
import Foundation
@testable import SluiceControl
import XCTest

final class ServerSideApplyTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    let t1 = Date(timeIntervalSince1970: 1_790_000_060)
    let version = "serving.kserve.io/v1beta1"

    func json(_ text: String) -> JSONValue {
        guard let value = GoJSON.decode(text) else { preconditionFailure("bad JSON in a test: \(text)") }
        return value
    }

    /// The seed's InferenceService (KServe's canary example), `canary` the predictor's canaryTrafficPercent or nil.
    func isvc(canary: Int?, label: Bool = false, annotations: [String: String] = [:]) -> JSONValue {
        var predictor: [String: JSONValue] = [
            "model": json(#"{"modelFormat":{"name":"sklearn"},"storageUri":"gs://kfserving-examples/models/sklearn/1.0/model-2"}"#),
        ]
        if let canary { predictor["canaryTrafficPercent"] = .int(canary) }
        var metadata: [String: JSONValue] = ["name": "sklearn-iris", "namespace": "kserve-test"]
        if label { metadata["labels"] = json(#"{"team":"ml"}"#) }
        if !annotations.isEmpty { metadata["annotations"] = .object(annotations.mapValues { .string($0) }) }
        return .object(["apiVersion": .string(version), "kind": "InferenceService", "metadata": .object(metadata),
                        "spec": .object(["predictor": .object(predictor)])])
    }

    func entry(_ entries: [JSONValue], _ manager: String) -> JSONValue? {
        entries.first { $0["manager"]?.stringValue == manager }
    }

    func fields(_ entries: [JSONValue], _ manager: String) -> JSONValue? { entry(entries, manager)?["fieldsV1"] }

    func owns(_ entries: [JSONValue], _ manager: String, _ path: [String]) -> Bool {
        var node = fields(entries, manager)
        for element in path { node = node?[element] }
        return node != nil
    }

    let canaryPath = ["f:spec", "f:predictor", "f:canaryTrafficPercent"]

    func testFirstApplyCreatesTheObjectAndOwnsWhatItSet() throws {
        let (object, entries) = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10, label: true),
                                                          manager: "kubectl", force: false, now: t0)
        XCTAssertEqual(object, isvc(canary: 10, label: true))
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0], json("""
            {"manager":"kubectl","operation":"Apply","apiVersion":"serving.kserve.io/v1beta1","time":"2026-09-21T14:13:20Z",
             "fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:team":{}}},
             "f:spec":{"f:predictor":{"f:canaryTrafficPercent":{},
                                      "f:model":{"f:modelFormat":{"f:name":{}},"f:storageUri":{}}}}}}
            """), "name and namespace are nobody's; a struct on the way is not owned itself (no \".\")")
    }

    func testReapplyWithoutAFieldRemovesIt() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10, label: true),
                                              manager: "kubectl", force: false, now: t0)
        let second = try ServerSideApply.apply(live: first.object, managedFields: first.managedFields,
                                               applied: isvc(canary: nil), manager: "kubectl", force: false, now: t1)
        XCTAssertNil(second.object["spec"]?["predictor"]?["canaryTrafficPercent"], "the promote step: canary gone")
        XCTAssertNil(second.object["metadata"]?["labels"], "the label it stopped applying, and the emptied map")
        XCTAssertEqual(second.object["spec"]?["predictor"]?["model"], isvc(canary: nil)["spec"]?["predictor"]?["model"])
        XCTAssertEqual(second.object["metadata"]?["name"], "sklearn-iris")
        XCTAssertFalse(owns(second.managedFields, "kubectl", canaryPath))
        XCTAssertEqual(entry(second.managedFields, "kubectl")?["time"], .string(RolloutState.timestamp(t1)))
    }

    func testApplyLeavesFieldsItNeverAppliedAlone() throws {
        var live = isvc(canary: nil)
        guard case .object(var root) = live, case .object(var spec)? = root["spec"], case .object(var predictor)? = spec["predictor"] else {
            return XCTFail("fixture")
        }
        predictor["minReplicas"] = .int(2)
        spec["predictor"] = .object(predictor)
        root["spec"] = .object(spec)
        live = .object(root)
        let updated = ServerSideApply.recordUpdate(old: nil, new: live, managedFields: [], manager: "kubectl-create", now: t0)
        let result = try ServerSideApply.apply(live: live, managedFields: updated, applied: isvc(canary: 10),
                                               manager: "kubectl", force: false, now: t1)
        XCTAssertEqual(result.object["spec"]?["predictor"]?["minReplicas"], .int(2), "another manager's field stays")
        XCTAssertEqual(result.object["spec"]?["predictor"]?["canaryTrafficPercent"], .int(10))
    }

    func testTwoManagersApplyingTheSameValueShareTheField() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10),
                                              manager: "kubectl", force: false, now: t0)
        let shared = try ServerSideApply.apply(live: first.object, managedFields: first.managedFields,
                                               applied: isvc(canary: 10), manager: "rollout-bot", force: false, now: t1)
        XCTAssertTrue(owns(shared.managedFields, "kubectl", canaryPath))
        XCTAssertTrue(owns(shared.managedFields, "rollout-bot", canaryPath))
        XCTAssertNil(entry(shared.managedFields, "rollout-bot")?["time"], "a no-op apply changes no time (none yet)")

        // kubectl stops applying the field: it stays, rollout-bot still owns it.
        let dropped = try ServerSideApply.apply(live: shared.object, managedFields: shared.managedFields,
                                                applied: isvc(canary: nil), manager: "kubectl", force: false, now: t1)
        XCTAssertEqual(dropped.object["spec"]?["predictor"]?["canaryTrafficPercent"], .int(10))
        XCTAssertFalse(owns(dropped.managedFields, "kubectl", canaryPath))
        XCTAssertTrue(owns(dropped.managedFields, "rollout-bot", canaryPath))
    }

    func testADifferentValueConflictsWithItsOwner() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10),
                                              manager: "kubectl", force: false, now: t0)
        do {
            _ = try ServerSideApply.apply(live: first.object, managedFields: first.managedFields, applied: isvc(canary: 50),
                                          manager: "rollout-bot", force: false, now: t1)
            XCTFail("no conflict")
        } catch {
            XCTAssertEqual(error.fields.map(\.path), [".spec.predictor.canaryTrafficPercent"])
            XCTAssertEqual(error.fields.map(\.manager), ["kubectl"])
            XCTAssertEqual(error.message, #"Apply failed with 1 conflict: conflict with "kubectl": .spec.predictor.canaryTrafficPercent"#)
            XCTAssertEqual(error.status, json("""
                {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                 "message":"Apply failed with 1 conflict: conflict with \\"kubectl\\": .spec.predictor.canaryTrafficPercent",
                 "reason":"Conflict","details":{"causes":[{"reason":"FieldManagerConflict",
                 "message":"conflict with \\"kubectl\\"","field":".spec.predictor.canaryTrafficPercent"}]},"code":409}
                """))
        }
    }

    func testSeveralConflictsAreListedByOwner() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10, label: true),
                                              manager: "kubectl", force: false, now: t0)
        var changed = isvc(canary: 20)
        guard case .object(var root) = changed, case .object(var metadata)? = root["metadata"] else { return XCTFail("fixture") }
        metadata["labels"] = json(#"{"team":"infra"}"#)
        root["metadata"] = .object(metadata)
        changed = .object(root)
        XCTAssertThrowsError(try ServerSideApply.apply(live: first.object, managedFields: first.managedFields, applied: changed,
                                                       manager: "other", force: false, now: t1)) { error in
            XCTAssertEqual((error as? ServerSideApplyConflict)?.message, """
                Apply failed with 2 conflicts: conflicts with "kubectl":
                - .metadata.labels.team
                - .spec.predictor.canaryTrafficPercent
                """)
        }
    }

    func testForceMovesOwnershipToTheApplier() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10),
                                              manager: "kubectl", force: false, now: t0)
        let forced = try ServerSideApply.apply(live: first.object, managedFields: first.managedFields, applied: isvc(canary: 50),
                                               manager: "rollout-bot", force: true, now: t1)
        XCTAssertEqual(forced.object["spec"]?["predictor"]?["canaryTrafficPercent"], .int(50))
        XCTAssertTrue(owns(forced.managedFields, "rollout-bot", canaryPath))
        XCTAssertFalse(owns(forced.managedFields, "kubectl", canaryPath))
        XCTAssertTrue(owns(forced.managedFields, "kubectl", ["f:spec", "f:predictor", "f:model", "f:storageUri"]),
                      "kubectl keeps what was not taken")
    }

    func testAClientSideApplyThenAServerSideApplyOfAnotherValueConflictsWithTheUpdater() throws {
        let created = isvc(canary: 10)
        let entries = ServerSideApply.recordUpdate(old: nil, new: created, managedFields: [],
                                                   manager: "kubectl-client-side-apply", now: t0)
        XCTAssertEqual(entry(entries, "kubectl-client-side-apply")?["operation"], "Update")
        XCTAssertThrowsError(try ServerSideApply.apply(live: created, managedFields: entries, applied: isvc(canary: 20),
                                                       manager: "kubectl", force: false, now: t1)) { error in
            let conflict = error as? ServerSideApplyConflict
            XCTAssertEqual(conflict?.message, "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using serving.kserve.io/v1beta1: .spec.predictor.canaryTrafficPercent")
            XCTAssertEqual(conflict?.status["details"]?["causes"], json("""
                [{"reason":"FieldManagerConflict","message":"conflict with \\"kubectl-client-side-apply\\" using serving.kserve.io/v1beta1",
                  "field":".spec.predictor.canaryTrafficPercent"}]
                """))
        }
    }

    func testKubectlUpgradingFromClientSideApplyDoesNotConflictWhereTheLastAppliedConfigurationStillHolds() throws {
        // kubectl apply (client-side) wrote the annotation with the same canary value the object has: the API
        // server lets `kubectl` take those fields over (lastappliedmanager.go) and rewrites the annotation.
        let lastApplied = GoJSON.encode(isvc(canary: 10)) + "\n"
        let created = isvc(canary: 10, annotations: [ServerSideApply.lastAppliedAnnotation: lastApplied])
        let entries = ServerSideApply.recordUpdate(old: nil, new: created, managedFields: [],
                                                   manager: "kubectl-client-side-apply", now: t0)
        let applied = isvc(canary: 20, annotations: [ServerSideApply.lastAppliedAnnotation: lastApplied])
        let result = try ServerSideApply.apply(live: created, managedFields: entries, applied: applied,
                                               manager: "kubectl", force: false, now: t1)
        XCTAssertEqual(result.object["spec"]?["predictor"]?["canaryTrafficPercent"], .int(20))
        XCTAssertTrue(owns(result.managedFields, "kubectl", canaryPath))
        XCTAssertFalse(owns(result.managedFields, "kubectl-client-side-apply", canaryPath))
        let annotation = result.object["metadata"]?["annotations"]?[ServerSideApply.lastAppliedAnnotation]?.stringValue
        XCTAssertEqual(annotation.flatMap(GoJSON.decode)?["spec"]?["predictor"]?["canaryTrafficPercent"], .int(20),
                       "the annotation follows the server-side apply")
        // Another manager gets no such allowance.
        XCTAssertThrowsError(try ServerSideApply.apply(live: created, managedFields: entries, applied: applied,
                                                       manager: "rollout-bot", force: false, now: t1))
    }

    func testAnUpdateTakesTheFieldsItChangedAndMergesIntoOneEntry() throws {
        let applied = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10),
                                                manager: "kubectl", force: false, now: t0)
        let edited = isvc(canary: 30)
        let first = ServerSideApply.recordUpdate(old: applied.object, new: edited, managedFields: applied.managedFields,
                                                 manager: "kubectl-edit", now: t1)
        XCTAssertEqual(first.map { $0["manager"] }, ["kubectl", "kubectl-edit"], "Apply entries first")
        XCTAssertEqual(fields(first, "kubectl-edit"), json(#"{"f:spec":{"f:predictor":{"f:canaryTrafficPercent":{}}}}"#))
        XCTAssertFalse(owns(first, "kubectl", canaryPath), "ownership moved")

        guard case .object(var root) = edited, case .object(var spec)? = root["spec"], case .object(var predictor)? = spec["predictor"],
              case .object(var model)? = predictor["model"] else { return XCTFail("fixture") }
        model["storageUri"] = "gs://kfserving-examples/models/sklearn/1.0/model-3"
        predictor["model"] = .object(model)
        spec["predictor"] = .object(predictor)
        root["spec"] = .object(spec)
        let second = ServerSideApply.recordUpdate(old: edited, new: .object(root), managedFields: first,
                                                  manager: "kubectl-edit", now: t1)
        XCTAssertEqual(second.filter { $0["manager"] == "kubectl-edit" }.count, 1)
        XCTAssertTrue(owns(second, "kubectl-edit", canaryPath))
        XCTAssertTrue(owns(second, "kubectl-edit", ["f:spec", "f:predictor", "f:model", "f:storageUri"]))
        // kubectl owned model.modelFormat.name still; only storageUri moved.
        XCTAssertEqual(fields(second, "kubectl"), json(#"{"f:spec":{"f:predictor":{"f:model":{"f:modelFormat":{"f:name":{}}}}}}"#))

        // An update that changes nothing adds no entry and no time.
        let noop = ServerSideApply.recordUpdate(old: .object(root), new: .object(root), managedFields: second,
                                                manager: "kubectl-replace", now: t1)
        XCTAssertEqual(noop, second)
    }

    func testAnUpdateThatEmptiesAnEntryRemovesIt() throws {
        let applied = try ServerSideApply.apply(live: nil, managedFields: [], applied: isvc(canary: 10),
                                                manager: "rollout-bot", force: false, now: t0)
        // rollout-bot owns canary and the model; a replace changing all of them leaves it nothing.
        guard case .object(var root) = isvc(canary: 20), case .object(var spec)? = root["spec"] else { return XCTFail("fixture") }
        spec["predictor"] = json(#"{"canaryTrafficPercent":20,"model":{"modelFormat":{"name":"xgboost"},"storageUri":"gs://x"}}"#)
        root["spec"] = .object(spec)
        let entries = ServerSideApply.recordUpdate(old: applied.object, new: .object(root), managedFields: applied.managedFields,
                                                   manager: "kubectl-replace", now: t1)
        XCTAssertEqual(entries.map { $0["manager"] }, ["kubectl-replace"])
    }

    func testStatusIsNeverOwnedThroughTheMainResource() throws {
        guard case .object(var root) = isvc(canary: 10) else { return XCTFail("fixture") }
        root["status"] = json(#"{"url":"http://example"}"#)
        let live: JSONValue = .object(root.merging(["status": json(#"{"url":"http://sklearn-iris.kserve-test"}"#)]) { $1 })
        let result = try ServerSideApply.apply(live: live, managedFields: [], applied: .object(root),
                                               manager: "kubectl", force: false, now: t0)
        XCTAssertEqual(result.object["status"]?["url"], "http://sklearn-iris.kserve-test", "the applied status is ignored")
        XCTAssertNil(fields(result.managedFields, "kubectl")?["f:status"])
        let updated = ServerSideApply.recordUpdate(old: nil, new: .object(root), managedFields: [], manager: "kubectl-create", now: t0)
        XCTAssertNil(fields(updated, "kubectl-create")?["f:status"])
    }

    /// A realistic InferenceService: labels, annotations, a keyed list (`env`, `x-kubernetes-list-map-keys: [name]`
    /// in KServe's CRD), an atomic list (`args`) and resource maps.
    let realistic = """
        {"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService",
         "metadata":{"name":"sklearn-iris","namespace":"kserve-test","labels":{"team":"ml"},
                     "annotations":{"serving.kserve.io/enable-tag-routing":"true"}},
         "spec":{"predictor":{"canaryTrafficPercent":10,"minReplicas":1,
                 "model":{"modelFormat":{"name":"sklearn"},"storageUri":"gs://kfserving-examples/models/sklearn/1.0/model-2",
                          "env":[{"name":"LOG_LEVEL","value":"debug"}],"args":["--workers","2"],
                          "resources":{"limits":{"cpu":"1"},"requests":{"cpu":"100m"}}}}}}
        """

    func testApplyFieldsV1MatchWhatTheAPIServerWrites() throws {
        // Written by hand from structured-merge-diff's typed/tofieldset.go (what an apply owns: leaves, atomic lists,
        // keyed items with "." as they are owned themselves, map keys; no struct on the way) and the apiserver's
        // stripmeta.go (name, namespace never owned); the shape of the Kubernetes "Server-Side Apply" docs' example
        // (`f:metadata: f:labels: f:test-label: {}` for an Apply entry) and of a Deployment's `k:{"name":"nginx"}`.
        let result = try ServerSideApply.apply(live: nil, managedFields: [], applied: json(realistic),
                                               manager: "kubectl", force: false, now: t0)
        XCTAssertEqual(fields(result.managedFields, "kubectl"), json("""
            {"f:metadata":{"f:annotations":{"f:serving.kserve.io/enable-tag-routing":{}},"f:labels":{"f:team":{}}},
             "f:spec":{"f:predictor":{"f:canaryTrafficPercent":{},"f:minReplicas":{},
               "f:model":{"f:args":{},"f:env":{"k:{\\"name\\":\\"LOG_LEVEL\\"}":{".":{},"f:name":{},"f:value":{}}},
                          "f:modelFormat":{"f:name":{}},"f:resources":{"f:limits":{"f:cpu":{}},"f:requests":{"f:cpu":{}}},
                          "f:storageUri":{}}}}}
            """))
    }

    func testCreateFieldsV1MatchWhatTheAPIServerWrites() throws {
        // What `kubectl create` / client-side `kubectl apply` of a CRD object records (operation Update): the API
        // server compares an empty object with the new one (typed/compare.go), so every object it added is owned
        // itself too (".": {}), except `metadata`, stripped with name and namespace (stripmeta.go). Real objects
        // show this shape: `f:spec: {.: {}, …}` and `f:labels: {.: {}, f:app: {}}`, `f:env: {.: {}, k:{…}: {.: {}, …}}`.
        let entries = ServerSideApply.recordUpdate(old: nil, new: json(realistic), managedFields: [],
                                                   manager: "kubectl-create", now: t0)
        XCTAssertEqual(entries, [json("""
            {"manager":"kubectl-create","operation":"Update","apiVersion":"serving.kserve.io/v1beta1",
             "time":"2026-09-21T14:13:20Z","fieldsType":"FieldsV1","fieldsV1":
            {"f:metadata":{"f:annotations":{".":{},"f:serving.kserve.io/enable-tag-routing":{}},"f:labels":{".":{},"f:team":{}}},
             "f:spec":{".":{},"f:predictor":{".":{},"f:canaryTrafficPercent":{},"f:minReplicas":{},
               "f:model":{".":{},"f:args":{},"f:env":{".":{},"k:{\\"name\\":\\"LOG_LEVEL\\"}":{".":{},"f:name":{},"f:value":{}}},
                          "f:modelFormat":{".":{},"f:name":{}},
                          "f:resources":{".":{},"f:limits":{".":{},"f:cpu":{}},"f:requests":{".":{},"f:cpu":{}}},
                          "f:storageUri":{}}}}}}
            """)])
    }

    func testKeyedListItemsMergeByKey() throws {
        let first = try ServerSideApply.apply(live: nil, managedFields: [], applied: json(realistic),
                                              manager: "kubectl", force: false, now: t0)
        // Another manager adds one env item: the list keeps kubectl's item, both own their own.
        let other = json("""
            {"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"sklearn-iris"},
             "spec":{"predictor":{"model":{"env":[{"name":"TRACE","value":"1"}]}}}}
            """)
        let merged = try ServerSideApply.apply(live: first.object, managedFields: first.managedFields, applied: other,
                                               manager: "tracer", force: false, now: t1)
        XCTAssertEqual(merged.object["spec"]?["predictor"]?["model"]?["env"],
                       json(#"[{"name":"LOG_LEVEL","value":"debug"},{"name":"TRACE","value":"1"}]"#))
        XCTAssertTrue(owns(merged.managedFields, "tracer", ["f:spec", "f:predictor", "f:model", "f:env", #"k:{"name":"TRACE"}"#]))
        // A different value in kubectl's item conflicts, the item named by its key as Kubernetes prints it.
        let retune = json("""
            {"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"sklearn-iris"},
             "spec":{"predictor":{"model":{"env":[{"name":"LOG_LEVEL","value":"info"}]}}}}
            """)
        XCTAssertThrowsError(try ServerSideApply.apply(live: merged.object, managedFields: merged.managedFields, applied: retune,
                                                       manager: "tracer", force: false, now: t1)) { error in
            XCTAssertEqual((error as? ServerSideApplyConflict)?.fields.map(\.path), [#".spec.predictor.model.env[name="LOG_LEVEL"].value"#])
        }
        // kubectl drops its item: only tracer's stays.
        var withoutEnv = json(realistic)
        guard case .object(var root) = withoutEnv, case .object(var spec)? = root["spec"], case .object(var predictor)? = spec["predictor"],
              case .object(var model)? = predictor["model"] else { return XCTFail("fixture") }
        model["env"] = nil
        predictor["model"] = .object(model)
        spec["predictor"] = .object(predictor)
        root["spec"] = .object(spec)
        withoutEnv = .object(root)
        let pruned = try ServerSideApply.apply(live: merged.object, managedFields: merged.managedFields, applied: withoutEnv,
                                               manager: "kubectl", force: false, now: t1)
        XCTAssertEqual(pruned.object["spec"]?["predictor"]?["model"]?["env"], json(#"[{"name":"TRACE","value":"1"}]"#))
    }

    func testFieldsV1ReadsBackWhatItWrites() throws {
        let set = ManagedFieldsSchema.fieldSet(of: json(realistic))
        XCTAssertEqual(FieldSet(fieldsV1: set.fieldsV1), set)
        XCTAssertNil(FieldSet(fieldsV1: json(#"{"x:bad":{}}"#)), "an unknown path element kind")
    }

    func testTheDefaultManagerIsTheUserAgentsProgram() {
        XCTAssertEqual(ServerSideApply.manager(fieldManager: nil, userAgent: "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"), "kubectl")
        XCTAssertEqual(ServerSideApply.manager(fieldManager: "kubectl-client-side-apply", userAgent: "kubectl/v1.32.0"),
                       "kubectl-client-side-apply")
        XCTAssertEqual(ServerSideApply.manager(fieldManager: nil, userAgent: "OpenAPI-Generator/31.0.0/python"), "OpenAPI-Generator")
        XCTAssertEqual(ServerSideApply.manager(fieldManager: nil, userAgent: nil), "")
        XCTAssertEqual(ServerSideApply.manager(fieldManager: nil, userAgent: String(repeating: "a", count: 200)).count, 128)
    }

    func testMoreThanTenUpdatersMergeTheOldestIntoAncientChanges() {
        // Eleven updaters each add a label of their own: eleven Update entries, one over the API server's cap.
        var object = isvc(canary: 0)
        var labels: [String: JSONValue] = [:]
        var entries: [JSONValue] = []
        for index in 1...11 {
            labels["l\(index)"] = "x"
            guard case .object(var root) = object, case .object(var metadata)? = root["metadata"] else { return XCTFail("fixture") }
            metadata["labels"] = .object(labels)
            root["metadata"] = .object(metadata)
            entries = ServerSideApply.recordUpdate(old: object, new: .object(root), managedFields: entries, manager: "bot-\(index)",
                                                   now: t0.addingTimeInterval(Double(index)))
            object = .object(root)
        }
        XCTAssertEqual(entries.count, 10)
        XCTAssertEqual(entries.first?["manager"], "ancient-changes")
        XCTAssertEqual(fields(entries, "ancient-changes")?["f:metadata"]?["f:labels"]?.objectValue?.keys.sorted(),
                       [".", "f:l1", "f:l2"], "the two oldest, merged")
    }
}
