// Tests for meta.k8s.io Tables: the Accept header that asks for one, KServe's printer columns, and each seed step's
// cells as the API server sends them (integers, null for an empty cell), the same values `sluice get isvc` prints.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import XCTest

final class TableTests: XCTestCase {
    typealias F = RolloutFixtures
    /// What `kubectl get` sends.
    static let kubectlAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

    static func request(accept: String? = kubectlAccept, query: String = "") -> BlockingRequest {
        BlockingRequest(method: "GET", target: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices" + query,
                        headers: accept.map { [("Accept", $0)] } ?? [])
    }

    func testTheAcceptHeaderAsksForATable() {
        XCTAssertTrue(AdminAPI.wantsTable(Self.request()))
        XCTAssertTrue(AdminAPI.wantsTable(Self.request(accept: "application/json;as=Table;v=v1beta1;g=meta.k8s.io")))
        XCTAssertTrue(AdminAPI.wantsTable(Self.request(accept: "application/json; as=Table; g=meta.k8s.io; v=v1")))
        XCTAssertFalse(AdminAPI.wantsTable(Self.request(accept: nil)))
        XCTAssertFalse(AdminAPI.wantsTable(Self.request(accept: "application/json")))
        XCTAssertFalse(AdminAPI.wantsTable(Self.request(accept: "application/json;as=Table;v=v1;g=other.group")))
        XCTAssertFalse(AdminAPI.wantsTable(Self.request(accept: "application/json;as=Table;v=v2;g=meta.k8s.io")))
        XCTAssertFalse(AdminAPI.wantsTable(Self.request(accept: "application/json,application/json;as=Table;v=v1;g=meta.k8s.io")),
                       "plain JSON preferred")
    }

    /// The Table's cells for the one service at `now`.
    func cells(_ driver: RolloutDriver, at now: Date) throws -> [JSONValue] {
        let table = AdminAPI.isvcTable([try XCTUnwrap(driver.resource)], resourceVersion: "7", request: Self.request(), now: now)
        XCTAssertEqual(table["kind"], "Table")
        XCTAssertEqual(table["apiVersion"], "meta.k8s.io/v1")
        XCTAssertEqual(table["metadata"]?["resourceVersion"], "7")
        let rows = table["rows"]?.arrayValue ?? []
        XCTAssertEqual(rows.count, 1)
        return rows.first?["cells"]?.arrayValue ?? []
    }

    func testColumnsAreKServesPrinterColumns() throws {
        let table = AdminAPI.isvcTable([], resourceVersion: nil, request: Self.request())
        let columns = table["columnDefinitions"]?.arrayValue ?? []
        XCTAssertEqual(columns.compactMap { $0["name"]?.stringValue },
                       ["Name", "URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"])
        XCTAssertEqual(columns.compactMap { $0["type"]?.stringValue },
                       ["string", "string", "string", "integer", "integer", "string", "string", "date"])
        XCTAssertEqual(columns.first?["format"], "name")
        XCTAssertEqual(columns.compactMap { $0["priority"]?.intValue }, Array(repeating: 0, count: 8), "-o wide shows the same columns")
        XCTAssertEqual(table["rows"], .array([]))
    }

    func testCellsAtEachSeedStep() throws {
        var driver = RolloutDriver()
        let url: JSONValue = "http://sklearn-iris.kserve-test.example.com"
        let (rev1, rev2, rev3) = (JSONValue.string(F.revision(1)), JSONValue.string(F.revision(2)), JSONValue.string(F.revision(3)))
        let null = JSONValue.null

        // 1. Created, not ready yet: no URL, READY Unknown, no traffic in the status; then ready with 100 %.
        _ = try driver.apply(F.create, at: F.t0)
        XCTAssertEqual(try cells(driver, at: F.t0 + 2), ["sklearn-iris", null, "Unknown", null, null, null, null, "2s"])
        driver.ready(1, at: F.t0 + 5)
        XCTAssertEqual(try cells(driver, at: F.t0 + 46), ["sklearn-iris", url, "True", null, .int(100), null, rev1, "46s"])

        // 2. Canary 10: until 00002 is ready the latest share resolves to 00001; then 90 / 10.
        _ = try driver.apply(F.canary, at: F.t0 + 60)
        XCTAssertEqual(try cells(driver, at: F.t0 + 61), ["sklearn-iris", url, "Unknown", .int(90), .int(10), rev1, rev1, "61s"])
        driver.ready(2, at: F.t0 + 70)
        XCTAssertEqual(try cells(driver, at: F.t0 + 559), ["sklearn-iris", url, "True", .int(90), .int(10), rev1, rev2, "9m19s"])

        // 3. Promote: 100 % to 00002, PREV empty.
        _ = try driver.apply(F.promote, at: F.t0 + 600)
        XCTAssertEqual(try cells(driver, at: F.t0 + 17 * 60), ["sklearn-iris", url, "True", null, .int(100), null, rev2, "17m"])

        // 4. Rollback and pin: 100 to 00001, 0 to 00002.
        _ = try driver.apply(F.rollback, at: F.t0 + 1000)
        XCTAssertEqual(try cells(driver, at: F.t0 + 18 * 60), ["sklearn-iris", url, "True", .int(100), .int(0), rev1, rev2, "18m"])

        // 5. Tag routing: the annotation makes 00003, canary 10 once ready.
        _ = try driver.apply(F.tagged, at: F.t0 + 1100)
        driver.ready(3, at: F.t0 + 1110)
        XCTAssertEqual(try cells(driver, at: F.t0 + 20 * 60), ["sklearn-iris", url, "True", .int(90), .int(10), rev1, rev3, "20m"])

        // The CLI's text is the same row: each null an empty cell.
        let row = IsvcTable.Row(try XCTUnwrap(driver.resource))
        XCTAssertEqual(row.texts(now: F.t0 + 20 * 60), ["http://sklearn-iris.kserve-test.example.com", "True", "90", "10",
                                                          F.revision(1), F.revision(3), "20m"])
    }

    func testEachRowCarriesTheObjectIncludeObjectAsks() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        let resource = try XCTUnwrap(driver.resource)

        func object(_ query: String) -> JSONValue? {
            AdminAPI.isvcTable([resource], resourceVersion: nil, request: Self.request(query: query))["rows"]?.arrayValue?.first?["object"]
        }
        let partial = try XCTUnwrap(object(""), "Metadata is the default")
        XCTAssertEqual(partial["kind"], "PartialObjectMetadata")
        XCTAssertEqual(partial["apiVersion"], "meta.k8s.io/v1")
        XCTAssertEqual(partial["metadata"], resource["metadata"], "kubectl -A reads NAMESPACE from here")
        XCTAssertNil(partial["spec"])
        XCTAssertEqual(object("?includeObject=Object"), resource)
        XCTAssertNil(object("?includeObject=None"))
    }
}
