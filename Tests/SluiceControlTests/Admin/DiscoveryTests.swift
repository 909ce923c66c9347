// Tests for the admin API's discovery: /version, the plain documents kubectl and client libraries read, and aggregated
// discovery (apidiscovery.k8s.io v2, v2beta1) chosen by the Accept header as kubectl 1.27-1.33 send it.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import XCTest

final class DiscoveryTests: XCTestCase {
    /// kubectl 1.30 and later (v2 first, then v2beta1, then plain JSON).
    static let acceptV2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    /// kubectl 1.27-1.29.
    static let acceptV2Beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"

    var api: AdminAPI!

    override func setUpWithError() throws {
        api = AdminAPI(plane: try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }, token: nil)
    }

    func get(_ path: String, accept: String? = nil) throws -> (BlockingResponse, JSONValue) {
        let request = BlockingRequest(method: "GET", target: path, headers: accept.map { [("Accept", $0)] } ?? [])
        let response = api.handle(request)
        XCTAssertEqual(response.status, 200, path)
        return (response, try XCTUnwrap(JSONValue.parse(response.body), path))
    }

    func contentType(_ response: BlockingResponse) -> String? {
        response.headers.first { $0.0.lowercased() == "content-type" }?.1
    }

    func testVersionNamesTheKubernetesReleaseAndSluice() throws {
        let (_, version) = try get("/version")
        XCTAssertEqual(version["major"], "1")
        XCTAssertEqual(version["minor"], "30")
        XCTAssertEqual(version["gitVersion"]?.stringValue, "v1.30.0-sluice.\(AdminAPI.sluiceVersion)")
        XCTAssertEqual(version["platform"]?.stringValue?.hasPrefix("linux/"), true)
    }

    func testPlainDocumentsListTheCoreResourcesAndTheKServeGroup() throws {
        let (apiResponse, versions) = try get("/api", accept: "application/json")
        XCTAssertEqual(contentType(apiResponse), "application/json")
        XCTAssertEqual(versions["kind"], "APIVersions")
        XCTAssertEqual(versions["versions"], .array(["v1"]))

        let (_, core) = try get("/api/v1")
        XCTAssertEqual(core["kind"], "APIResourceList")
        XCTAssertEqual(core["groupVersion"], "v1")
        let coreResources = core["resources"]?.arrayValue ?? []
        XCTAssertEqual(coreResources.compactMap { $0["name"]?.stringValue }, ["events", "namespaces", "pods"])
        for resource in coreResources {
            XCTAssertEqual(resource["verbs"], .array(["get", "list"]), "read-only, and no watch is served")
        }
        let pods = try XCTUnwrap(coreResources.first { $0["name"] == "pods" })
        XCTAssertEqual(pods["kind"], "Pod")
        XCTAssertEqual(pods["namespaced"], .bool(true))
        XCTAssertEqual(pods["shortNames"], .array(["po"]))
        XCTAssertEqual(coreResources.first { $0["name"] == "namespaces" }?["namespaced"], .bool(false))

        for path in ["/apis", "/apis/"] {
            let (_, groups) = try get(path)
            XCTAssertEqual(groups["kind"], "APIGroupList")
            let group = try XCTUnwrap(groups["groups"]?.arrayValue?.first)
            XCTAssertEqual(groups["groups"]?.arrayValue?.count, 1)
            XCTAssertEqual(group["name"], "serving.kserve.io")
            XCTAssertEqual(group["preferredVersion"]?["groupVersion"], "serving.kserve.io/v1beta1")
            XCTAssertEqual(group["versions"]?.arrayValue?.compactMap { $0["version"]?.stringValue }, ["v1beta1"])
        }
        let (_, group) = try get("/apis/serving.kserve.io")
        XCTAssertEqual(group["kind"], "APIGroup")
        XCTAssertEqual(group["name"], "serving.kserve.io")
        XCTAssertEqual(group["preferredVersion"]?["version"], "v1beta1")

        let (_, list) = try get("/apis/serving.kserve.io/v1beta1")
        XCTAssertEqual(list["kind"], "APIResourceList")
        XCTAssertEqual(list["groupVersion"], "serving.kserve.io/v1beta1")
        let resources = list["resources"]?.arrayValue ?? []
        XCTAssertEqual(resources.compactMap { $0["name"]?.stringValue }, ["inferenceservices", "inferenceservices/status"])
        let isvc = resources[0]
        XCTAssertEqual(isvc["kind"], "InferenceService")
        XCTAssertEqual(isvc["singularName"], "inferenceservice")
        XCTAssertEqual(isvc["shortNames"], .array(["isvc"]))
        XCTAssertEqual(isvc["namespaced"], .bool(true))
        XCTAssertEqual(isvc["verbs"], .array(["create", "delete", "get", "list", "patch", "update", "watch"]))
        XCTAssertNil(isvc["categories"], "KServe's CRD declares none")
    }

    func testAggregatedDiscoveryFollowsTheAcceptHeader() throws {
        for (accept, version) in [(Self.acceptV2, "v2"), (Self.acceptV2Beta1, "v2beta1")] {
            let (apisResponse, apis) = try get("/apis", accept: accept)
            XCTAssertEqual(contentType(apisResponse), "application/json;g=apidiscovery.k8s.io;v=\(version);as=APIGroupDiscoveryList",
                           "client-go reads the body as aggregated only when the Content-Type says so")
            XCTAssertEqual(apis["kind"], "APIGroupDiscoveryList")
            XCTAssertEqual(apis["apiVersion"]?.stringValue, "apidiscovery.k8s.io/\(version)")
            let group = try XCTUnwrap(apis["items"]?.arrayValue?.first)
            XCTAssertEqual(group["metadata"]?["name"], "serving.kserve.io")
            let groupVersion = try XCTUnwrap(group["versions"]?.arrayValue?.first)
            XCTAssertEqual(groupVersion["version"], "v1beta1")
            XCTAssertEqual(groupVersion["freshness"], "Current")
            let isvc = try XCTUnwrap(groupVersion["resources"]?.arrayValue?.first)
            XCTAssertEqual(isvc["resource"], "inferenceservices")
            XCTAssertEqual(isvc["singularResource"], "inferenceservice")
            XCTAssertEqual(isvc["scope"], "Namespaced")
            XCTAssertEqual(isvc["shortNames"], .array(["isvc"]))
            XCTAssertEqual(isvc["responseKind"], .object(["group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"]))
            XCTAssertEqual(isvc["subresources"]?.arrayValue?.compactMap { $0["subresource"]?.stringValue }, ["status"])

            let (apiResponse, core) = try get("/api", accept: accept)
            XCTAssertEqual(contentType(apiResponse), "application/json;g=apidiscovery.k8s.io;v=\(version);as=APIGroupDiscoveryList")
            let legacy = try XCTUnwrap(core["items"]?.arrayValue?.first)
            XCTAssertNil(legacy["metadata"]?["name"], "the legacy group has the empty name")
            let v1 = try XCTUnwrap(legacy["versions"]?.arrayValue?.first)
            XCTAssertEqual(v1["version"], "v1")
            let resources = v1["resources"]?.arrayValue ?? []
            XCTAssertEqual(resources.compactMap { $0["resource"]?.stringValue }, ["events", "namespaces", "pods"])
            XCTAssertEqual(resources.first { $0["resource"] == "namespaces" }?["scope"], "Cluster")
            XCTAssertEqual(resources.first { $0["resource"] == "pods" }?["responseKind"]?["group"], "")
        }
        // Plain JSON preferred (or alone): the APIGroupList, as for a client that knows no aggregation.
        for accept in ["application/json", "application/json," + Self.acceptV2, "*/*"] {
            let (response, apis) = try get("/apis", accept: accept)
            XCTAssertEqual(apis["kind"], "APIGroupList", accept)
            XCTAssertEqual(contentType(response), "application/json")
        }
    }

    func testDiscoveryIsReadOnlyAndLeavesOtherPathsToTheirResources() throws {
        XCTAssertEqual(api.handle(BlockingRequest(method: "POST", target: "/apis")).status, 405)
        XCTAssertNil(api.discovery(BlockingRequest(method: "GET", target: AdminAPI.prefix + "/inferenceservices")))
        XCTAssertNil(api.discovery(BlockingRequest(method: "GET", target: "/api/v1/pods")))
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/apis/other.group")).status, 404)
    }
}
