// Tests for the admin API: authentication, Kubernetes-shaped errors, and PUT to one resource's URL refused
// before anything is applied when the body names another resource.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceRouting
import Synchronization
import XCTest

final class AdminAPITests: XCTestCase {
    func testBearerTokenGuardsEverythingButHealth() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let api = AdminAPI(plane: plane, token: "s3cret")
        let list = BlockingRequest(method: "GET", target: AdminAPI.prefix + "/inferenceservices")
        XCTAssertEqual(api.handle(list).status, 401)
        var authorized = list
        authorized.headers = [("Authorization", "Bearer s3cret")]
        let ok = api.handle(authorized)
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(JSONValue.parse(ok.body)?["kind"]?.stringValue, "InferenceServiceList")
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/healthz")).status, 200)
        var wrong = list
        wrong.headers = [("Authorization", "Bearer nope")]
        XCTAssertEqual(api.handle(wrong).status, 401)
    }

    func testMissingServiceIsAKubernetesNotFoundStatus() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let response = AdminAPI(plane: plane, token: nil).handle(
            BlockingRequest(method: "GET", target: AdminAPI.prefix + "/namespaces/default/inferenceservices/nope"))
        XCTAssertEqual(response.status, 404)
        let status = JSONValue.parse(response.body)
        XCTAssertEqual(status?["kind"]?.stringValue, "Status")
        XCTAssertEqual(status?["reason"]?.stringValue, "NotFound")
        XCTAssertEqual(status?["message"]?.stringValue, #"inferenceservices.serving.kserve.io "nope" not found"#)
    }

    /// An InferenceService `sklearn-iris` (namespace from the URL unless `namespace` is given) on pods named in
    /// its annotation, so no `models:` entry is needed.
    static func manifest(name: String = "sklearn-iris", namespace: String? = nil, canary: Int? = nil) -> [UInt8] {
        let ns = namespace.map { ", namespace: \($0)" } ?? ""
        let percent = canary.map { "canaryTrafficPercent: \($0), " } ?? ""
        return Array("""
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata: {name: \(name)\(ns), annotations: {serving.sluice.dev/endpoints: "127.0.0.1:\(canary == nil ? 9001 : 9002)"}}
            spec: {predictor: {\(percent)model: {modelFormat: {name: sklearn}, storageUri: "gs://models/\(canary == nil ? "one" : "two")"}}}
            """.utf8)
    }

    func testAPutWhoseBodyNamesAnotherResourceChangesNothing() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let published = Atomic<Int>(0)
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: StateStore(directory: dir)) { _ in
            published.add(1, ordering: .relaxed)
        }
        defer { plane.stop() }
        let api = AdminAPI(plane: plane, token: nil)
        let url = AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices/"
        // Created by a POST to the collection: a PUT to a missing object is a 404 (custom resources do not create on update).
        XCTAssertEqual(api.handle(BlockingRequest(method: "POST", target: String(url.dropLast()), body: Self.manifest())).status, 201)
        let routes = plane.routes
        let resource = plane.resource(namespace: "kserve-test", name: "sklearn-iris")
        let saved = try Data(contentsOf: URL(fileURLWithPath: dir + "/state.json"))
        let publications = published.load(ordering: .relaxed)

        // A canary for sklearn-iris sent to another resource's URL, then to another namespace's.
        let wrongName = api.handle(BlockingRequest(method: "PUT", target: url + "other", body: Self.manifest(canary: 10)))
        XCTAssertEqual(wrongName.status, 400)
        XCTAssertEqual(JSONValue.parse(wrongName.body)?["reason"]?.stringValue, "BadRequest")
        XCTAssertEqual(JSONValue.parse(wrongName.body)?["message"]?.stringValue,
                       "the name of the object (sklearn-iris) does not match the name on the URL (other)")
        let wrongNamespace = api.handle(BlockingRequest(method: "PUT", target: url + "sklearn-iris",
                                                        body: Self.manifest(namespace: "default", canary: 10)))
        XCTAssertEqual(wrongNamespace.status, 400)
        XCTAssertEqual(JSONValue.parse(wrongNamespace.body)?["message"]?.stringValue,
                       "the namespace of the provided object does not match the namespace sent on the request")

        XCTAssertTrue(plane.routes === routes, "the running routes stay")
        XCTAssertEqual(published.load(ordering: .relaxed), publications, "nothing was handed to the data plane")
        XCTAssertEqual(plane.resource(namespace: "kserve-test", name: "sklearn-iris"), resource)
        XCTAssertNil(plane.resource(namespace: "default", name: "sklearn-iris"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/state.json")), saved, "nothing was persisted")

        // The same canary at its own URL is applied.
        XCTAssertEqual(api.handle(BlockingRequest(method: "PUT", target: url + "sklearn-iris", body: Self.manifest(canary: 10))).status, 200)
        XCTAssertFalse(plane.routes === routes)
    }
}
