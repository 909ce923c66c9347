// Tests for the admin API's read-only core/v1: each revision's endpoints as Pods labelled as KServe labels them, their
// READY from the prober's results and Terminating after a promote (over real demo predictors), label and field
// selectors, namespaces in use, and events selected as `kubectl describe` selects them.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import XCTest

final class CoreV1Tests: XCTestCase {
    typealias Stack = ControlPlaneGatewayTests.Stack
    static let rev1 = "sklearn-iris-predictor-default-00001"
    static let rev2 = "sklearn-iris-predictor-default-00002"
    static let tableAccept = TableTests.kubectlAccept

    func get(_ s: Stack, _ path: String, accept: String? = nil) throws -> BlockingResponse {
        try BlockingClient(host: "127.0.0.1", port: s.admin.port).send(method: "GET", path: path, headers: accept.map { [("Accept", $0)] } ?? [])
    }

    func pods(_ s: Stack, _ query: String = "") throws -> [JSONValue] {
        let response = try get(s, "/api/v1/namespaces/kserve-test/pods" + query)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        let list = try XCTUnwrap(JSONValue.parse(response.body))
        XCTAssertEqual(list["kind"], "PodList")
        return list["items"]?.arrayValue ?? []
    }

    /// `kubectl get pods`' NAME READY STATUS RESTARTS AGE cells, by revision.
    func podRows(_ s: Stack) throws -> [String: [JSONValue]] {
        let response = try get(s, "/api/v1/namespaces/kserve-test/pods?labelSelector=serving.kserve.io%2Finferenceservice%3Dsklearn-iris",
                               accept: Self.tableAccept)
        XCTAssertEqual(response.status, 200)
        let table = try XCTUnwrap(JSONValue.parse(response.body))
        XCTAssertEqual(table["columnDefinitions"]?.arrayValue?.compactMap { $0["name"]?.stringValue },
                       ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"])
        var rows: [String: [JSONValue]] = [:]
        for row in table["rows"]?.arrayValue ?? [] {
            let cells = row["cells"]?.arrayValue ?? []
            let revision = row["object"]?["metadata"]?["name"]?.stringValue.map { String($0.prefix(Self.rev1.count)) } ?? "?"
            rows[revision] = Array(cells.prefix(4)) + [cells.count > 5 ? cells[5] : .null]
        }
        return rows
    }

    func waitForPods(_ s: Stack, _ what: String, timeout: TimeInterval = 10, _ condition: ([String: [JSONValue]]) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(try podRows(s)) { return }
            usleep(20_000)  // polling the observable pods, bounded by the deadline
        }
        XCTFail("timed out waiting for \(what): \(try podRows(s))")
    }

    func testPodsFollowTheRevisionsEndpointsAndTheirProbes() throws {
        let s = try Stack()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try waitForPods(s, "00001 ready") { $0[Self.rev1]?[1] == "2/2" }

        let pod = try XCTUnwrap(try pods(s).first)
        let name = try XCTUnwrap(pod["metadata"]?["name"]?.stringValue)
        XCTAssertTrue(name.hasPrefix(Self.rev1 + "-deployment-"), name)
        let suffix = name.dropFirst((Self.rev1 + "-deployment-").count).split(separator: "-")
        XCTAssertEqual(suffix.map(\.count), [10, 5], "Knative's <revision>-deployment-<template hash>-<pod hash>")
        XCTAssertEqual(pod["metadata"]?["labels"], .object([
            "app": .string(Self.rev1), "component": "predictor", "pod-template-hash": .string(String(suffix[0])),
            "serving.kserve.io/inferenceservice": "sklearn-iris",
            "serving.knative.dev/configuration": "sklearn-iris-predictor-default",
            "serving.knative.dev/configurationGeneration": "1",
            "serving.knative.dev/revision": .string(Self.rev1),
            "serving.knative.dev/service": "sklearn-iris-predictor-default",
        ]))
        XCTAssertEqual(pod["status"]?["phase"], "Running")
        XCTAssertEqual(pod["status"]?["podIP"], "127.0.0.1")
        XCTAssertEqual(pod["spec"]?["containers"]?.arrayValue?.first?["ports"]?.arrayValue?.first?["containerPort"]?.intValue, Int(s.model1.port))
        let byName = try get(s, "/api/v1/namespaces/kserve-test/pods/" + name)
        XCTAssertEqual(byName.status, 200)
        XCTAssertEqual(JSONValue.parse(byName.body)?["metadata"]?["name"]?.stringValue, name, "the same name on every read")
        let missing = try get(s, "/api/v1/namespaces/kserve-test/pods/nope")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(JSONValue.parse(missing.body)?["message"], #"pods "nope" not found"#)

        // The canary's pod fails its readiness probe: listed, Running, 1/2 (queue-proxy is the gateway, up), the probe's error in its Ready condition.
        s.readiness.isReady.store(false, ordering: .relaxed)
        XCTAssertEqual(try s.apply("2-canary.yaml").status, 200)
        try waitForPods(s, "00002 probed and failing") { rows in
            rows[Self.rev2].map { Array($0.prefix(4)) } == [.string(rows[Self.rev2]?[0].stringValue ?? ""), "1/2", "Running", "0"]
        }
        let canary = try XCTUnwrap(try pods(s, "?labelSelector=serving.knative.dev%2Frevision%3D\(Self.rev2)").first)
        let readyCondition = canary["status"]?["conditions"]?.arrayValue?.first { $0["type"] == "Ready" }
        XCTAssertEqual(readyCondition?["status"], "False")
        XCTAssertEqual(readyCondition?["message"]?.stringValue?.hasPrefix("readiness probe failed: "), true)
        XCTAssertEqual(canary["status"]?["containerStatuses"]?.arrayValue?.first?["ready"], .bool(false))
        XCTAssertEqual(try podRows(s)[Self.rev1]?[1], "2/2")

        // It passes: 2/2. Promote: 00001 gets no traffic any more and is Terminating, with a deletionTimestamp.
        s.readiness.isReady.store(true, ordering: .relaxed)
        try waitForPods(s, "00002 ready") { $0[Self.rev2]?[1] == "2/2" }
        XCTAssertEqual(try s.apply("3-promote.yaml").status, 200)
        try waitForPods(s, "00001 terminating") { $0[Self.rev1]?[2] == "Terminating" }
        XCTAssertEqual(try podRows(s)[Self.rev2]?[2], "Running")
        let old = try XCTUnwrap(try pods(s, "?labelSelector=serving.knative.dev%2Frevision%3D\(Self.rev1)").first)
        XCTAssertNotNil(old["metadata"]?["deletionTimestamp"]?.stringValue)
        XCTAssertEqual(try podRows(s)[Self.rev1]?[4], "127.0.0.1", "wide IP: the endpoint's address")

        // Rollback pins 00001 again and keeps 00002 reachable by its tag: both Running.
        XCTAssertEqual(try s.apply("4-rollback.yaml").status, 200)
        try waitForPods(s, "both running") { $0[Self.rev1]?[2] == "Running" && $0[Self.rev2]?[2] == "Running" }
    }

    /// A plane with InferenceServices `a` in kserve-test and `b` in other, on annotated endpoints (no probing).
    func twoServices() throws -> (AdminAPI, ControlPlane) {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let api = AdminAPI(plane: plane, token: nil)
        XCTAssertEqual(api.handle(BlockingRequest(method: "PUT", target: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices",
                                                  body: AdminAPITests.manifest(name: "a"))).status, 201)
        XCTAssertEqual(api.handle(BlockingRequest(method: "PUT", target: AdminAPI.prefix + "/namespaces/other/inferenceservices",
                                                  body: AdminAPITests.manifest(name: "b", canary: 10))).status, 201)
        return (api, plane)
    }

    func items(_ api: AdminAPI, _ path: String, status: Int = 200) -> [JSONValue] {
        let response = api.handle(BlockingRequest(method: "GET", target: path))
        XCTAssertEqual(response.status, status, String(decoding: response.body, as: UTF8.self))
        return JSONValue.parse(response.body)?["items"]?.arrayValue ?? []
    }

    func names(_ api: AdminAPI, _ path: String) -> [String] {
        items(api, path).compactMap { $0["metadata"]?["name"]?.stringValue }
    }

    func testLabelAndFieldSelectorsChoosePods() throws {
        let (api, _) = try twoServices()
        let all = items(api, "/api/v1/pods")
        XCTAssertEqual(all.compactMap { $0["metadata"]?["labels"]?["serving.kserve.io/inferenceservice"]?.stringValue }, ["a", "b"])
        XCTAssertEqual(all.map { $0["status"]?["containerStatuses"]?.arrayValue?.first?["ready"] }, [.bool(false), .bool(false)],
                       "not probed yet: not ready")
        let a = try XCTUnwrap(all[0]["metadata"]?["name"]?.stringValue)
        let b = try XCTUnwrap(all[1]["metadata"]?["name"]?.stringValue)
        func select(_ query: String) -> [String] { names(api, "/api/v1/pods?" + query) }
        XCTAssertEqual(select("labelSelector=serving.kserve.io/inferenceservice%3Da"), [a])
        XCTAssertEqual(select("labelSelector=serving.kserve.io/inferenceservice%3D%3Db"), [b])
        XCTAssertEqual(select("labelSelector=serving.kserve.io/inferenceservice!%3Da"), [b])
        XCTAssertEqual(select("labelSelector=serving.kserve.io/inferenceservice%20in%20(a,%20c)"), [a])
        XCTAssertEqual(select("labelSelector=serving.kserve.io/inferenceservice%20notin%20(a,c)"), [b])
        XCTAssertEqual(select("labelSelector=component%3Dpredictor,serving.kserve.io/inferenceservice"), [a, b])
        XCTAssertEqual(select("labelSelector=!component"), [])
        XCTAssertEqual(select("fieldSelector=metadata.name%3D\(b)"), [b])
        XCTAssertEqual(select("fieldSelector=metadata.namespace!%3Dother"), [a])
        XCTAssertEqual(names(api, "/api/v1/namespaces/other/pods"), [b])
        XCTAssertEqual(names(api, "/api/v1/namespaces/nowhere/pods"), [])

        let badField = api.handle(BlockingRequest(method: "GET", target: "/api/v1/pods?fieldSelector=spec.foo%3Dx"))
        XCTAssertEqual(badField.status, 400)
        XCTAssertEqual(JSONValue.parse(badField.body)?["message"], "field label not supported: spec.foo")
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/api/v1/pods?labelSelector=a%20in%20b")).status, 400)
        XCTAssertEqual(api.handle(BlockingRequest(method: "DELETE", target: "/api/v1/namespaces/other/pods/" + b)).status, 405)
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/api/v1/pods?watch=true")).status, 405, "no watch is offered")
    }

    func testNamespacesInUseAndDefault() throws {
        let (api, _) = try twoServices()
        XCTAssertEqual(names(api, "/api/v1/namespaces"), ["default", "kserve-test", "other"])
        let response = api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/kserve-test", headers: [("Accept", Self.tableAccept)]))
        XCTAssertEqual(response.status, 200)
        let table = try XCTUnwrap(JSONValue.parse(response.body))
        XCTAssertEqual(table["columnDefinitions"]?.arrayValue?.compactMap { $0["name"]?.stringValue }, ["Name", "Status", "Age"])
        XCTAssertEqual(table["rows"]?.arrayValue?.first?["cells"]?.arrayValue?.prefix(2), ["kserve-test", "Active"])
        // Namespaces are implicit: an empty one exists (an apply there needs nothing created), so that kubectl, which
        // asks for the namespace after a NotFound, reports the InferenceService missing rather than the namespace.
        let empty = api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/empty"))
        XCTAssertEqual(empty.status, 200)
        XCTAssertEqual(JSONValue.parse(empty.body)?["status"]?["phase"], "Active")
        XCTAssertEqual(names(api, "/api/v1/namespaces"), ["default", "kserve-test", "other"], "listed only once in use")
        let invalid = api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/Not_A_Label"))
        XCTAssertEqual(invalid.status, 404)
        XCTAssertEqual(JSONValue.parse(invalid.body)?["message"], #"namespaces "Not_A_Label" not found"#)
    }

    func testEventsAreSelectedAsKubectlDescribeSelectsThem() throws {
        let (api, plane) = try twoServices()
        // kubectl describe isvc a -n kserve-test (1.27 to 1.33): namespaced events by involvedObject, limit 500.
        let describe = "/api/v1/namespaces/kserve-test/events?fieldSelector=involvedObject.name%3Da%2CinvolvedObject.namespace%3Dkserve-test%2CinvolvedObject.kind%3DInferenceService&limit=500"
        let events = items(api, describe)
        XCTAssertEqual(events.compactMap { $0["reason"]?.stringValue }, ["Created"])
        XCTAssertEqual(events.first?["involvedObject"]?["name"], "a")
        XCTAssertEqual(events.first?["involvedObject"]?["apiVersion"], "serving.kserve.io/v1beta1")
        let uid = try XCTUnwrap(plane.resource(namespace: "kserve-test", name: "a")?["metadata"]?["uid"]?.stringValue)
        XCTAssertEqual(events.first?["involvedObject"]?["uid"]?.stringValue, uid, "describe's uid selector finds them")
        XCTAssertEqual(events.count, plane.events(namespace: "kserve-test", name: "a")?.count, "the plane's kept events, all of them")
        XCTAssertEqual(items(api, "/api/v1/namespaces/kserve-test/events?fieldSelector=involvedObject.uid%3D" + uid).count, 1)
        XCTAssertEqual(items(api, "/api/v1/events?fieldSelector=involvedObject.name%3Db").compactMap { $0["involvedObject"]?["namespace"]?.stringValue }, ["other"])
        XCTAssertEqual(items(api, "/api/v1/events").count, 2)
        XCTAssertEqual(items(api, "/api/v1/namespaces/kserve-test/events?fieldSelector=involvedObject.kind%3DPod"), [])
        XCTAssertEqual(items(api, "/api/v1/namespaces/kserve-test/events?fieldSelector=involvedObject.uid%3Dsomeone-else"), [])

        let name = try XCTUnwrap(events.first?["metadata"]?["name"]?.stringValue)
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/kserve-test/events/" + name)).status, 200)
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/other/events/" + name)).status, 404)

        // kubectl get events -n other: LAST SEEN TYPE REASON OBJECT MESSAGE (and the wide ones).
        let response = api.handle(BlockingRequest(method: "GET", target: "/api/v1/namespaces/other/events", headers: [("Accept", Self.tableAccept)]))
        let table = try XCTUnwrap(JSONValue.parse(response.body))
        let columns = table["columnDefinitions"]?.arrayValue ?? []
        XCTAssertEqual(columns.filter { $0["priority"] == .int(0) }.compactMap { $0["name"]?.stringValue },
                       ["Last Seen", "Type", "Reason", "Object", "Message"])
        let cells = table["rows"]?.arrayValue?.first?["cells"]?.arrayValue ?? []
        XCTAssertEqual(cells.count, columns.count)
        XCTAssertEqual(cells.dropFirst().prefix(3), ["Normal", "Created", "inferenceservice/b"])
        XCTAssertEqual(cells[5], "sluice", "SOURCE")
    }
}
