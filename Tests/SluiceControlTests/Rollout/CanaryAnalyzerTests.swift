// Integration: the canary-analysis runner over a real gateway and control plane — checks from the data plane's own
// per-revision counts, driven by a manual `tick(now:)` — and the admin API's rollout gate (pause, resume, abort).
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import SluiceRouting
import XCTest

final class CanaryAnalyzerTests: XCTestCase {
    typealias Stack = ControlPlaneGatewayTests.Stack
    static let rev1 = "sklearn-iris-predictor-default-00001"
    static let rev2 = "sklearn-iris-predictor-default-00002"
    static let analysis = "{steps: [20, 50], interval: 1s, minRequests: 10, successRate: 90, failureLimit: 1}"

    func put(_ s: Stack, _ text: String) throws -> BlockingResponse {
        try BlockingClient(host: "127.0.0.1", port: s.admin.port).send(
            method: "PUT", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices", body: Array(text.utf8))
    }

    func gate(_ s: Stack, _ action: String, name: String = "sklearn-iris") throws -> BlockingResponse {
        try BlockingClient(host: "127.0.0.1", port: s.admin.port).send(
            method: "POST", path: AdminAPI.prefix + "/namespaces/kserve-test/inferenceservices/\(name)/rollout",
            headers: [("Content-Type", "application/json")], body: Array(#"{"action": "\#(action)"}"#.utf8))
    }

    /// 00001 rolled out and serving, then model-2 applied with the analysis annotation, 00002 ready at 20 %.
    func analysing() throws -> (Stack, CanaryAnalyzer) {
        let s = try Stack()
        XCTAssertEqual(try s.apply("1-create.yaml").status, 201)
        try s.waitFor("00001 ready") { $0["latestReadyRevision"]?.stringValue == Self.rev1 }
        let manifest = RolloutRulesTests.manifest(annotations: [InferenceService.canaryAnalysisAnnotation: Self.analysis])
        XCTAssertEqual(try put(s, manifest).status, 200)
        try s.waitFor("00002 ready at 20 %") { predictor in
            predictor["latestReadyRevision"]?.stringValue == Self.rev2
                && predictor["traffic"]?.arrayValue?.first?["percent"]?.intValue == 20
        }
        let analyzer = CanaryAnalyzer(plane: s.plane, clock: { 0 }) { [gateway = s.gateway!] in
            gateway.revisionStats().map(RevisionCounts.init)
        }
        return (s, analyzer)
    }

    func analysisStatus(_ s: Stack) throws -> JSONValue? { try s.resource()?["status"]?["canaryAnalysis"] }

    func testTheRunnerChecksTheGatewaysCountsStepByStepAndPromotes() throws {
        let (s, analyzer) = try analysing()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        analyzer.tick(now: 1_000)  // the interval starts: base sample
        let first = try s.answers(100)
        let canary = try XCTUnwrap(first["model-2"])
        XCTAssertGreaterThanOrEqual(canary, 10, "about 20 of 100: \(first)")
        analyzer.tick(now: 1_000.5)
        XCTAssertEqual(try analysisStatus(s)?["weight"], .int(20), "not due before the interval is over")
        analyzer.tick(now: 1_001.1)
        XCTAssertEqual(try analysisStatus(s)?["weight"], .int(50))
        XCTAssertEqual(s.plane.telemetry.publications[.analysis], 1, "the step to 50 % is a new route table")
        XCTAssertEqual(try s.resource()?["status"]?["components"]?["predictor"]?["traffic"]?.arrayValue?.map { $0["percent"]?.intValue },
                       [50, 50], "status traffic as if canaryTrafficPercent: 50 had been applied")
        let advanced = try s.lines.waitFor("canary.step_advanced")
        XCTAssertEqual(advanced["canaryRequests"] as? Int, canary, "the canary's own requests, counted by the data plane")
        XCTAssertEqual(advanced["previousRequests"] as? Int, first["model-1"])
        XCTAssertEqual(advanced["successRate"] as? Double, 100)
        XCTAssertEqual(advanced["weight"] as? Int, 50)

        _ = try s.answers(60)
        analyzer.tick(now: 1_002.2)
        try s.lines.waitFor("canary.promoted")
        XCTAssertEqual(try analysisStatus(s)?["phase"], "Promoted")
        XCTAssertEqual(try s.resource()?["status"]?["components"]?["predictor"]?["latestRolledoutRevision"]?.stringValue, Self.rev2)
        XCTAssertEqual(try s.answers(20), ["model-2": 20])
        let events = try XCTUnwrap(JSONValue.parse(try s.get("/namespaces/kserve-test/inferenceservices/sklearn-iris/events").body))
        let reasons = (events["items"]?.arrayValue ?? []).compactMap { $0["reason"]?.stringValue }.filter { $0.hasPrefix("Canary") }
        XCTAssertEqual(reasons, ["CanaryAnalysisStarted", "CanaryStepAdvanced", "CanaryPromoted"])
    }

    func testAnIntervalWithoutCanaryRequestsIsSkipped() throws {
        let (s, analyzer) = try analysing()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        analyzer.tick(now: 1_000)
        analyzer.tick(now: 1_001)  // no request in the interval
        let skipped = try s.lines.waitFor("canary.check_skipped")
        XCTAssertEqual(skipped["canaryRequests"] as? Int, 0)
        XCTAssertEqual(try analysisStatus(s)?["weight"], .int(20))

        XCTAssertEqual(try analysisStatus(s)?["failedChecks"], .int(0), "neither passed nor failed")
        XCTAssertEqual(s.plane.telemetry.publications[.analysis, default: 0], 0,
                       "a check that moved no traffic hands the workers no new route table")
    }

    func testTheAdminAPIGatePausesResumesAndAborts() throws {
        let (s, analyzer) = try analysing()
        defer { s.stop(); s.model1.stop(); s.model2.stop() }
        XCTAssertEqual(try gate(s, "pause").status, 200)
        XCTAssertEqual(try analysisStatus(s)?["phase"], "Paused")
        try s.lines.waitFor("canary.paused")
        analyzer.tick(now: 1_000)
        _ = try s.answers(60)
        analyzer.tick(now: 1_005)
        XCTAssertEqual(try analysisStatus(s)?["weight"], .int(20), "no checks while paused")
        XCTAssertNil(try analysisStatus(s)?["lastCheck"])

        XCTAssertEqual(try gate(s, "resume").status, 200)
        XCTAssertEqual(try analysisStatus(s)?["phase"], "Progressing")
        analyzer.tick(now: 1_006)  // the fresh interval starts here, not at the pause's base
        analyzer.tick(now: 1_006.5)
        XCTAssertNil(try analysisStatus(s)?["lastCheck"], "resumed with a fresh interval")

        XCTAssertEqual(try gate(s, "abort").status, 200)
        XCTAssertEqual(try analysisStatus(s)?["phase"], "RolledBack")
        XCTAssertEqual(try s.answers(20), ["model-1": 20])
        let again = try gate(s, "resume")
        XCTAssertEqual(again.status, 409)
        XCTAssertTrue(String(decoding: again.body, as: UTF8.self).contains("has no running canary analysis"))
        XCTAssertEqual(try gate(s, "pause", name: "nope").status, 404)
        XCTAssertEqual(try gate(s, "stop").status, 400)
    }

    func testEveryEntryOfARevisionIsSummedMirroredOnesToo() {
        func entry(_ revision: String, _ requests: UInt64, _ failed: UInt64, _ buckets: [UInt64]) -> RevisionCounts {
            RevisionCounts(namespace: "ns", service: "svc", revision: revision, requests: requests, failed: failed,
                           bucketBounds: [0.1, 1], cumulativeCounts: buckets)
        }
        let totals = CanaryAnalyzer.summed([entry("r2", 10, 1, [8, 10]), entry("r1", 5, 0, [5, 5]), entry("r2", 4, 2, [1, 3])])
        XCTAssertEqual(totals["ns/svc/r2"]?.requests, 14)
        XCTAssertEqual(totals["ns/svc/r2"]?.failed, 3)
        XCTAssertEqual(totals["ns/svc/r2"]?.cumulativeCounts, [9, 13])
        XCTAssertEqual(totals["ns/svc/r1"]?.requests, 5)
    }
}
