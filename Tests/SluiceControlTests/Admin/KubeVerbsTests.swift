// Tests for the Kubernetes verbs on InferenceServices through the admin API: create/replace/patch/delete answers,
// preconditions, metadata (uid, resourceVersion), the status subresource, dryRun, selectors and paged lists.
import Foundation
@testable import SluiceControl
import SluiceBlockingHTTP
import SluiceRouting
import Synchronization
import XCTest

final class KubeVerbsTests: XCTestCase {
    static let collection = AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices"

    /// A JSON InferenceService as kubectl sends it, on pods named in its annotation (no `models:` entry needed).
    static func object(_ name: String = "sklearn-iris", storageUri: String = "gs://models/one", canary: Int? = nil,
                       labels: [String: String] = [:], resourceVersion: String? = nil) -> [UInt8] {
        var metadata: [String: JSONValue] = ["name": .string(name),
                                             "annotations": .object([InferenceService.endpointsAnnotation: "127.0.0.1:9001"])]
        if !labels.isEmpty { metadata["labels"] = .object(labels.mapValues(JSONValue.string)) }
        if let resourceVersion { metadata["resourceVersion"] = .string(resourceVersion) }
        var predictor: [String: JSONValue] = ["model": .object(["modelFormat": .object(["name": "sklearn"]), "storageUri": .string(storageUri)])]
        if let canary { predictor["canaryTrafficPercent"] = .int(canary) }
        let object: JSONValue = .object(["apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                         "metadata": .object(metadata), "spec": .object(["predictor": .object(predictor)])])
        return Array(object.compactJSONText.utf8)
    }

    /// Route tables handed to the data plane.
    final class Publications: Sendable {
        let count = Atomic<Int>(0)
        var value: Int { count.load(ordering: .relaxed) }
    }

    static func makeAPI(stateDirectory: String? = nil) throws -> (AdminAPI, ControlPlane, Publications) {
        let published = Publications()
        let store = try stateDirectory.map { try StateStore(directory: $0) }
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: store) { _ in published.count.add(1, ordering: .relaxed) }
        return (AdminAPI(plane: plane, token: nil), plane, published)
    }

    static func send(_ api: AdminAPI, _ method: String, _ target: String, _ body: [UInt8] = [], contentType: String = "application/json",
              agent: String = "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") -> (Int, JSONValue?, BlockingResponse) {
        let response = api.handle(BlockingRequest(method: method, target: target, headers: [("Content-Type", contentType), ("User-Agent", agent)], body: body))
        return (response.status, JSONValue.parse(response.collectedBody), response)
    }

    func testCreateAnswers201WithTheObjectAndASecondCreateIsAlreadyExists() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        let (status, object, _) = Self.send(api, "POST", Self.collection, Self.object())
        XCTAssertEqual(status, 201)
        XCTAssertEqual(object?["kind"], "InferenceService", "the object, not a List")
        XCTAssertEqual(object?["metadata"]?["name"], "sklearn-iris")
        XCTAssertEqual(object?["metadata"]?["generation"], .int(1))
        let uid = try XCTUnwrap(object?["metadata"]?["uid"]?.stringValue)
        XCTAssertNotNil(UUID(uuidString: uid), "uid is a UUID: \(uid)")
        XCTAssertNotNil(object?["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) })

        let (again, status409, _) = Self.send(api, "POST", Self.collection, Self.object(canary: 10))
        XCTAssertEqual(again, 409)
        XCTAssertEqual(status409?["reason"], "AlreadyExists")
        XCTAssertEqual(status409?["message"], #"inferenceservices.serving.kserve.io "sklearn-iris" already exists"#)
        XCTAssertEqual(status409?["details"], .object(["name": "sklearn-iris", "group": "serving.kserve.io", "kind": "inferenceservices"]))
        XCTAssertNil(plane.resource(namespace: "kserve-test", name: "sklearn-iris")?["spec"]?["predictor"]?["canaryTrafficPercent"],
                     "the refused create changed nothing")
    }

    func testReplaceChecksTheResourceVersionAndNeverCreates() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        let (missing, notFound, _) = Self.send(api, "PUT", Self.collection + "/sklearn-iris", Self.object())
        XCTAssertEqual(missing, 404)
        XCTAssertEqual(notFound?["reason"], "NotFound")
        XCTAssertNil(plane.resource(namespace: "kserve-test", name: "sklearn-iris"))

        let created = Self.send(api, "POST", Self.collection, Self.object()).1
        let version = try XCTUnwrap(created?["metadata"]?["resourceVersion"]?.stringValue)
        let (ok, replaced, _) = Self.send(api, "PUT", Self.collection + "/sklearn-iris", Self.object(canary: 10, resourceVersion: version))
        XCTAssertEqual(ok, 200)
        XCTAssertEqual(replaced?["spec"]?["predictor"]?["canaryTrafficPercent"], .int(10))
        XCTAssertEqual(replaced?["metadata"]?["uid"], created?["metadata"]?["uid"], "the uid is kept across updates")
        XCTAssertNotEqual(replaced?["metadata"]?["resourceVersion"]?.stringValue, version)

        // The version read before that replace is stale now.
        let (stale, conflict, _) = Self.send(api, "PUT", Self.collection + "/sklearn-iris", Self.object(canary: 50, resourceVersion: version))
        XCTAssertEqual(stale, 409)
        XCTAssertEqual(conflict?["reason"], "Conflict")
        XCTAssertEqual(conflict?["message"], .string("Operation cannot be fulfilled on inferenceservices.serving.kserve.io \"sklearn-iris\": the object has been modified; please apply your changes to the latest version and try again"))
        XCTAssertEqual(plane.resource(namespace: "kserve-test", name: "sklearn-iris")?["spec"]?["predictor"]?["canaryTrafficPercent"], .int(10))
    }

    func testResourceVersionsGrowStoreWideAndARecreatedObjectHasANewUID() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        let first = Self.send(api, "POST", Self.collection, Self.object("one")).1
        let second = Self.send(api, "POST", Self.collection, Self.object("two")).1
        let v1 = try XCTUnwrap(first?["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) })
        let v2 = try XCTUnwrap(second?["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) })
        XCTAssertGreaterThan(v2, v1, "one counter across objects")
        let list = Self.send(api, "GET", Self.collection).1
        let listVersion = try XCTUnwrap(list?["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) })
        XCTAssertGreaterThanOrEqual(listVersion, v2, "a list carries the store's version")
        // A label change is a metadata change: new version, same generation.
        let (patched, labelled, _) = Self.send(api, "PATCH", Self.collection + "/one", Array(#"{"metadata":{"labels":{"team":"a"}}}"#.utf8),
                                          contentType: "application/merge-patch+json")
        XCTAssertEqual(patched, 200)
        XCTAssertGreaterThan(try XCTUnwrap(labelled?["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) }), listVersion)
        XCTAssertEqual(labelled?["metadata"]?["generation"], .int(1))

        let (deleted, status, _) = Self.send(api, "DELETE", Self.collection + "/one")
        XCTAssertEqual(deleted, 200)
        XCTAssertEqual(status?["kind"], "Status")
        XCTAssertEqual(status?["status"], "Success")
        XCTAssertEqual(status?["details"]?["uid"], first?["metadata"]?["uid"])
        XCTAssertEqual(Self.send(api, "GET", Self.collection + "/one").0, 404)
        XCTAssertEqual(Self.send(api, "DELETE", Self.collection + "/one").0, 404)
        let recreated = Self.send(api, "POST", Self.collection, Self.object("one")).1
        XCTAssertNotEqual(recreated?["metadata"]?["uid"], first?["metadata"]?["uid"], "delete and create make a new object")
    }

    func testPatchesMakeRevisionsByKServeRules() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        _ = Self.send(api, "POST", Self.collection, Self.object())
        // A merge patch of the model is a new revision with a 10 % canary.
        let merge = Array(#"{"spec":{"predictor":{"canaryTrafficPercent":10,"model":{"storageUri":"gs://models/two"}}}}"#.utf8)
        let (status, merged, _) = Self.send(api, "PATCH", Self.collection + "/sklearn-iris", merge, contentType: "application/merge-patch+json")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(merged?["spec"]?["predictor"]?["model"]?["modelFormat"]?["name"], "sklearn", "merge keeps what the patch does not name")
        XCTAssertEqual(merged?["metadata"]?["generation"], .int(2))
        XCTAssertEqual(plane.revisionRows(namespace: "kserve-test", name: "sklearn-iris")?.map(\.name),
                       ["sklearn-iris-predictor-default-00001", "sklearn-iris-predictor-default-00002"])
        // A JSON patch of the percent alone moves traffic, no new revision.
        let json = Array(#"[{"op":"test","path":"/spec/predictor/canaryTrafficPercent","value":10},{"op":"replace","path":"/spec/predictor/canaryTrafficPercent","value":50}]"#.utf8)
        let (jsonStatus, jsonPatched, _) = Self.send(api, "PATCH", Self.collection + "/sklearn-iris", json, contentType: "application/json-patch+json")
        XCTAssertEqual(jsonStatus, 200)
        XCTAssertEqual(jsonPatched?["spec"]?["predictor"]?["canaryTrafficPercent"], .int(50))
        XCTAssertEqual(plane.revisionRows(namespace: "kserve-test", name: "sklearn-iris")?.count, 2)
        // A failing test refuses the whole patch with the API server's 422.
        let failing = Array(#"[{"op":"replace","path":"/spec/predictor/canaryTrafficPercent","value":90},{"op":"test","path":"/spec/predictor/canaryTrafficPercent","value":10}]"#.utf8)
        let (refused, invalid, _) = Self.send(api, "PATCH", Self.collection + "/sklearn-iris", failing, contentType: "application/json-patch+json")
        XCTAssertEqual(refused, 422)
        XCTAssertEqual(invalid?["reason"], "Invalid")
        XCTAssertEqual(plane.resource(namespace: "kserve-test", name: "sklearn-iris")?["spec"]?["predictor"]?["canaryTrafficPercent"], .int(50))
        // A patch that breaks the object goes through the same validation as any manifest.
        let breaking = Array(#"{"spec":{"predictor":{"canaryTrafficPercent":150}}}"#.utf8)
        XCTAssertEqual(Self.send(api, "PATCH", Self.collection + "/sklearn-iris", breaking, contentType: "application/merge-patch+json").0, 422)
        // Strategic merge patch is for built-in kinds only.
        let (unsupported, media, _) = Self.send(api, "PATCH", Self.collection + "/sklearn-iris", Array("{}".utf8),
                                           contentType: "application/strategic-merge-patch+json")
        XCTAssertEqual(unsupported, 415)
        XCTAssertEqual(media?["reason"], "UnsupportedMediaType")
        XCTAssertEqual(Self.send(api, "PATCH", Self.collection + "/missing", Array("{}".utf8), contentType: "application/merge-patch+json").0, 404)
        // A merge patch naming a stale resourceVersion conflicts.
        let stale = Array(#"{"metadata":{"resourceVersion":"1"},"spec":{"predictor":{"canaryTrafficPercent":20}}}"#.utf8)
        XCTAssertEqual(Self.send(api, "PATCH", Self.collection + "/sklearn-iris", stale, contentType: "application/merge-patch+json").0, 409)
    }

    func testApplyPatchNeedsAFieldManagerAndCreatesAMissingObject() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        let url = Self.collection + "/sklearn-iris"
        let (refused, invalid, _) = Self.send(api, "PATCH", url, Self.object(), contentType: "application/apply-patch+yaml")
        XCTAssertEqual(refused, 422)
        XCTAssertEqual(invalid?["message"], #"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#)
        let (created, object, _) = Self.send(api, "PATCH", url + "?fieldManager=kubectl&force=false", Self.object(), contentType: "application/apply-patch+yaml")
        XCTAssertEqual(created, 201)
        XCTAssertEqual(object?["kind"], "InferenceService")
        XCTAssertNotNil(plane.resource(namespace: "kserve-test", name: "sklearn-iris"))
    }

    func testDryRunValidatesAndStoresNothing() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (api, plane, published) = try Self.makeAPI(stateDirectory: dir)
        defer { plane.stop() }
        let (status, object, _) = Self.send(api, "POST", Self.collection + "?dryRun=All", Self.object())
        XCTAssertEqual(status, 201)
        XCTAssertEqual(object?["metadata"]?["name"], "sklearn-iris", "the would-be object")
        XCTAssertEqual(Self.send(api, "GET", Self.collection + "/sklearn-iris").0, 404)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/state.json"), "nothing persisted")
        XCTAssertEqual(published.value, 0, "no route change")
        XCTAssertEqual(Self.send(api, "POST", Self.collection + "?dryRun=All", Self.object(canary: 150)).0, 422, "still validated")

        _ = Self.send(api, "POST", Self.collection, Self.object())
        let saved = try Data(contentsOf: URL(fileURLWithPath: dir + "/state.json"))
        let before = plane.resource(namespace: "kserve-test", name: "sklearn-iris")
        let publications = published.value
        let (patched, wouldBe, _) = Self.send(api, "PATCH", Self.collection + "/sklearn-iris?dryRun=All",
                                         Array(#"{"spec":{"predictor":{"canaryTrafficPercent":10,"model":{"storageUri":"gs://models/two"}}}}"#.utf8),
                                         contentType: "application/merge-patch+json")
        XCTAssertEqual(patched, 200)
        XCTAssertEqual(wouldBe?["status"]?["components"]?["predictor"]?["latestCreatedRevision"], "sklearn-iris-predictor-default-00002")
        XCTAssertEqual(Self.send(api, "DELETE", Self.collection + "/sklearn-iris?dryRun=All").0, 200)
        XCTAssertEqual(plane.resource(namespace: "kserve-test", name: "sklearn-iris"), before, "no revision, nothing deleted")
        XCTAssertEqual(plane.revisionRows(namespace: "kserve-test", name: "sklearn-iris")?.count, 1)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/state.json")), saved)
        XCTAssertEqual(published.value, publications)
    }

    func testWriteOptionsAreCheckedAsTheAPIServerChecksThem() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        let (bogus, status, _) = Self.send(api, "POST", Self.collection + "?fieldValidation=Loose", Self.object())
        XCTAssertEqual(bogus, 400)
        XCTAssertEqual(status?["message"], #"fieldValidation: Unsupported value: "Loose": supported values: "Ignore", "Strict", "Warn""#)
        XCTAssertEqual(Self.send(api, "POST", Self.collection + "?dryRun=Some", Self.object()).0, 400)
        XCTAssertEqual(Self.send(api, "PATCH", Self.collection + "/x?force=true", Array("{}".utf8), contentType: "application/merge-patch+json").0, 422,
                       "force is for apply patches only")
        XCTAssertNil(plane.resource(namespace: "kserve-test", name: "sklearn-iris"), "nothing was written")
        XCTAssertEqual(Self.send(api, "POST", Self.collection + "?fieldValidation=Warn&fieldManager=me", Self.object()).0, 201)
    }

    func testStatusSubresourceReadsTheObjectAndRefusesWrites() throws {
        let (api, plane, _) = try Self.makeAPI()
        defer { plane.stop() }
        _ = Self.send(api, "POST", Self.collection, Self.object())
        let (status, object, _) = Self.send(api, "GET", Self.collection + "/sklearn-iris/status")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(object?["metadata"]?["name"], "sklearn-iris")
        XCTAssertNotNil(object?["status"]?["conditions"])
        let (put, refusal, _) = Self.send(api, "PUT", Self.collection + "/sklearn-iris/status", Self.object())
        XCTAssertEqual(put, 405)
        XCTAssertEqual(refusal?["reason"], "MethodNotAllowed")
        XCTAssertEqual(Self.send(api, "PATCH", Self.collection + "/sklearn-iris/status", Array("{}".utf8), contentType: "application/merge-patch+json").0, 405)
    }

    func testListSelectorsAndPages() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var (api, plane, _) = try Self.makeAPI(stateDirectory: dir)
        for (i, team) in ["a", "b", "a", "c", "a"].enumerated() {
            XCTAssertEqual(Self.send(api, "POST", Self.collection, Self.object("m\(i)", labels: ["team": team, "index": String(i)])).0, 201)
        }
        func names(_ query: String) -> [String] {
            (Self.send(api, "GET", Self.collection + query).1?["items"]?.arrayValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }
        }
        XCTAssertEqual(names("?labelSelector=team%3Da"), ["m0", "m2", "m4"])
        XCTAssertEqual(names("?labelSelector=team!%3Da"), ["m1", "m3"])
        XCTAssertEqual(names("?labelSelector=team%20in%20(b,c),index"), ["m1", "m3"])
        XCTAssertEqual(names("?labelSelector=!team"), [])
        XCTAssertEqual(names("?fieldSelector=metadata.name%3Dm3"), ["m3"])
        XCTAssertEqual(names("?fieldSelector=metadata.namespace%3Ddefault"), [])
        XCTAssertEqual(Self.send(api, "GET", Self.collection + "?fieldSelector=spec.x%3Dy").0, 400)
        XCTAssertEqual(Self.send(api, "GET", Self.collection + "?labelSelector=team%20in%20b").0, 400)

        // Pages of two cover the list once, in order, all read at the first page's version even after a change.
        let first = Self.send(api, "GET", Self.collection + "?limit=2").1
        XCTAssertEqual(first?["items"]?.arrayValue?.count, 2)
        XCTAssertEqual(first?["metadata"]?["remainingItemCount"], .int(3))
        var token = try XCTUnwrap(first?["metadata"]?["continue"]?.stringValue)
        _ = Self.send(api, "DELETE", Self.collection + "/m4")
        var seen = (first?["items"]?.arrayValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }
        while true {
            let page = Self.send(api, "GET", Self.collection + "?limit=2&continue=\(token)").1
            XCTAssertEqual(page?["metadata"]?["resourceVersion"], first?["metadata"]?["resourceVersion"])
            seen += (page?["items"]?.arrayValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }
            guard let next = page?["metadata"]?["continue"]?.stringValue else { break }
            token = next
        }
        XCTAssertEqual(seen, ["m0", "m1", "m2", "m3", "m4"], "m4 was there when the list began")
        XCTAssertEqual(Self.send(api, "GET", Self.collection + "?continue=bm90LWEtdG9rZW4").0, 400)

        // After a restart the history is gone: the token is too old, as an etcd compaction makes it.
        plane.stop()
        (api, plane, _) = try Self.makeAPI(stateDirectory: dir)
        defer { plane.stop() }
        let (expired, status, _) = Self.send(api, "GET", Self.collection + "?limit=2&continue=\(try XCTUnwrap(first?["metadata"]?["continue"]?.stringValue))")
        XCTAssertEqual(expired, 410)
        XCTAssertEqual(status?["reason"], "Expired")
    }

    func testAStateFileFromBeforeResourceVersionsLoadsAndGetsThem() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let (api, plane, _) = try Self.makeAPI(stateDirectory: dir)
            _ = Self.send(api, "POST", Self.collection, Self.object())
            plane.stop()
        }
        // Strip what older versions did not write.
        let path = dir + "/state.json"
        var top = try XCTUnwrap(JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))?.objectValue)
        top["resourceVersion"] = nil
        var services = try XCTUnwrap(top["services"]?.objectValue)
        for (key, record) in services {
            guard case .object(var fields) = record else { continue }
            fields["metadata"] = nil
            services[key] = JSONValue.object(fields)
        }
        top["services"] = JSONValue.object(services)
        try Data(JSONValue.object(top).jsonText.utf8).write(to: URL(fileURLWithPath: path))

        let (api, plane, _) = try Self.makeAPI(stateDirectory: dir)
        let object = Self.send(api, "GET", Self.collection + "/sklearn-iris").1
        let uid = try XCTUnwrap(object?["metadata"]?["uid"]?.stringValue)
        XCTAssertEqual(object?["metadata"]?["resourceVersion"], "2", "the store starts from 1; the loaded object gets the next")
        plane.stop()
        let (again, replane, _) = try Self.makeAPI(stateDirectory: dir)
        defer { replane.stop() }
        XCTAssertEqual(Self.send(again, "GET", Self.collection + "/sklearn-iris").1?["metadata"]?["uid"]?.stringValue, uid, "saved at load: the uid stays")
    }
}
