// Tests for the control plane on the etcd store: two planes (two replicas) on one real etcd member (127.0.0.1, ports
// 23100–23101): a write on one is routed by the other, racing writes lose nothing, a stale resourceVersion is a 409,
// an unreachable etcd is a 503 that leaves the routes alone, and exactly one plane leads.
import Foundation
import SluiceControl
import SluiceRouting
import XCTest

final class SharedStateTests: XCTestCase {
    private var cluster: EtcdCluster!
    private var planes: [ControlPlane] = []

    override func setUpWithError() throws {
        cluster = try EtcdCluster(size: 1, basePort: 23100)
    }

    override func tearDown() {
        for plane in planes { plane.stop() }
        planes = []
        cluster?.stopAll()
        cluster = nil
    }

    /// A started plane on the cluster's etcd, named `name`, with a 2 s lease.
    private func plane(_ name: String, prefix: String = "/shared-test/") throws -> ControlPlane {
        var config = GatewayConfig(services: [])
        config.control.stateStore = .etcd(EtcdStoreSettings(client: cluster.settings(prefix: prefix), leaseTTLSeconds: 2, replicaName: name))
        let plane = try ControlPlane(config: config, store: nil) { _ in }
        plane.start()
        planes.append(plane)
        return plane
    }

    private func manifest(_ annotation: String, canary: Int? = nil) -> String {
        let percent = canary.map { "canaryTrafficPercent: \($0), " } ?? ""
        return """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata: {name: sklearn-iris, annotations: {serving.sluice.dev/endpoints: "127.0.0.1:9", example.com/try: "\(annotation)"}}
            spec: {predictor: {\(percent)model: {modelFormat: {name: sklearn}, storageUri: "gs://models/one"}}}
            """
    }

    private func waitUntil(_ what: String, timeout: TimeInterval = 5, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else { return XCTFail("\(what): not true after \(timeout) s") }
            usleep(5_000)
        }
    }

    private func version(_ plane: ControlPlane) -> String? {
        plane.resource(namespace: "kserve-test", name: "sklearn-iris")?["metadata"]?["resourceVersion"]?.stringValue
    }

    func testAWriteOnOneReplicaReachesTheOthersRoutesAtEtcdsRevision() throws {
        let a = try plane("a"), b = try plane("b")
        _ = try a.apply(manifest("one"), defaultNamespace: "kserve-test")
        waitUntil("b routes sklearn-iris") { b.routes.services.contains { $0.name == "sklearn-iris" } }
        // The leader writes the revision's readiness too, so the key moves on: compare once it has settled.
        let client = try EtcdClient(settings: cluster.settings())
        let modRevision = { () -> String? in
            (try? client.range("/shared-test/inferenceservices/kserve-test/sklearn-iris"))?.keyValues.first.map { String($0.modRevision) }
        }
        waitUntil("resourceVersion is etcd's mod revision on both") {
            let revision = modRevision()
            return revision != nil && version(a) == revision && version(b) == revision
        }
        // And a delete on b goes from a's routes.
        XCTAssertTrue(try b.delete(namespace: "kserve-test", name: "sklearn-iris"))
        waitUntil("a no longer routes sklearn-iris") { !a.routes.services.contains { $0.name == "sklearn-iris" } }
    }

    func testRacingAppliesOnTwoReplicasNeitherLoseNorDuplicateARevision() throws {
        let a = try plane("a"), b = try plane("b")
        _ = try a.apply(manifest("start"), defaultNamespace: "kserve-test")
        let rounds = 20
        let failures = LockedList()
        for round in 0..<rounds {
            let group = DispatchGroup()
            for (name, replica) in [("a", a), ("b", b)] {
                let text = manifest("\(name)\(round)")
                DispatchQueue.global().async(group: group) {
                    do { _ = try replica.apply(text, defaultNamespace: "kserve-test") } catch {
                        failures.append("\(name)\(round): \(error)")
                    }
                }
            }
            group.wait()
        }
        XCTAssertEqual(failures.items, [], "every apply is retried on the other's write, none refused")
        // b's last write may still be on its way to a.
        waitUntil("both replicas at one version") { version(a) == version(b) }
        let rows = try XCTUnwrap(a.revisionRows(namespace: "kserve-test", name: "sklearn-iris"))
        XCTAssertEqual(rows.count, 1 + 2 * rounds, "one revision per apply")
        XCTAssertEqual(Set(rows.map(\.name)).count, rows.count, "no revision name twice")
        XCTAssertEqual(b.revisionRows(namespace: "kserve-test", name: "sklearn-iris")?.map(\.name), rows.map(\.name))
    }

    func testAReplaceAtAStaleResourceVersionIsAConflict() throws {
        let a = try plane("a"), b = try plane("b")
        _ = try a.apply(manifest("one"), defaultNamespace: "kserve-test")
        waitUntil("b has it") { version(b) != nil }
        let stale = try XCTUnwrap(version(b))
        _ = try a.apply(manifest("two"), defaultNamespace: "kserve-test")
        var body = try XCTUnwrap(JSONValue.parse(Array(#"{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"sklearn-iris","namespace":"kserve-test","annotations":{"serving.sluice.dev/endpoints":"127.0.0.1:9"}},"spec":{"predictor":{"model":{"modelFormat":{"name":"sklearn"},"storageUri":"gs://models/one"}}}}"#.utf8)))
        body = MergePatchForTests.set(body, resourceVersion: stale)
        let write = ObjectWrite(verb: .replace, namespace: "kserve-test", name: "sklearn-iris", body: body.serialized(pretty: false),
                                manager: "kubectl-replace")
        XCTAssertThrowsError(try b.write(write)) { error in
            XCTAssertEqual((error as? ControlError)?.status, 409)
            XCTAssertEqual((error as? ControlError)?.reason, "Conflict")
        }
    }

    func testAnUnreachableEtcdRefusesWritesWith503AndKeepsTheRoutes() throws {
        let a = try plane("a")
        _ = try a.apply(manifest("one"), defaultNamespace: "kserve-test")
        let routes = a.routes
        cluster.stopAll()
        XCTAssertThrowsError(try a.apply(manifest("two"), defaultNamespace: "kserve-test")) { error in
            XCTAssertEqual((error as? ControlError)?.status, 503)
            XCTAssertEqual((error as? ControlError)?.reason, "ServiceUnavailable")
        }
        XCTAssertTrue(a.routes === routes, "the routes in force stay")
        XCTAssertNotNil(a.storeStaleness, "reads are marked stale")
        XCTAssertNotNil(a.resource(namespace: "kserve-test", name: "sklearn-iris"), "reads answer from the local copy")
        try cluster.start(member: 0)
        waitUntil("writes work again", timeout: 10) { (try? a.apply(manifest("three"), defaultNamespace: "kserve-test")) != nil }
        XCTAssertNil(a.storeStaleness)
    }

    func testOneReplicaLeadsAndAnotherTakesOverWhenItStops() throws {
        let a = try plane("a"), b = try plane("b")
        waitUntil("exactly one leader") { a.isLeader != b.isLeader }
        let (leader, follower) = a.isLeader ? (a, b) : (b, a)
        leader.stop()
        planes.removeAll { $0 === leader }
        // A stop revokes the lease: the follower takes over at its next campaign, not at the lease's end.
        waitUntil("the follower leads", timeout: 3) { follower.isLeader }
        XCTAssertEqual(follower.gateways().items.count, 1, "the stopped replica's membership went with its lease")
    }
}

/// The list of what failed on the apply threads.
private final class LockedList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func append(_ item: String) { lock.lock(); list.append(item); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return list }
}

private enum MergePatchForTests {
    static func set(_ object: JSONValue, resourceVersion: String) -> JSONValue {
        guard case .object(var fields) = object, case .object(var metadata)? = fields["metadata"] else { return object }
        metadata["resourceVersion"] = .string(resourceVersion)
        fields["metadata"] = .object(metadata)
        return .object(fields)
    }
}
