// Tests for the automatic canary analysis: the pure decisions (steps, promotion, failed checks, rollback, skipped
// checks, p99 bound and ratio, pause/resume/abort), how applies start, steer and end it, that the traffic and the
// `get isvc` table at each step are those of a person applying canaryTrafficPercent, the state file, and the events.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class CanaryAnalysisTests: XCTestCase {
    typealias F = RolloutFixtures
    static let settings = CanaryAnalysisSettings(steps: [10, 25, 50], intervalMs: 1_000, minRequests: 50, successRate: 99,
                                                 maxP99Ms: 500, maxP99Ratio: 1.5, failureLimit: 2)
    static let analysisText = "{steps: [10, 25, 50], interval: 1s, minRequests: 50, successRate: 99, maxP99: 500ms, maxP99Ratio: 1.5, failureLimit: 2}"

    /// A check's figures: 100 canary requests at `success`, p99 `p99` s; the previous revision's p99 `previous`.
    static func figures(requests: UInt64 = 100, success: Double = 1, p99: Double = 0.05, previous: Double? = 0.05,
                        previousRequests: UInt64 = 400) -> CanaryCheckFigures {
        CanaryCheckFigures(canaryRequests: requests, successRate: success, p99: p99, previousRequests: previousRequests,
                           previousP99: previous, windowSeconds: 1)
    }

    static func fresh(_ settings: CanaryAnalysisSettings = settings) -> CanaryAnalysis {
        CanaryAnalysis(revision: F.revision(2), previousRevision: F.revision(1), settings: settings)
    }

    // MARK: The pure decisions

    func testPassingChecksAdvanceEveryStepThenPromote() {
        var analysis = Self.fresh()
        XCTAssertEqual(analysis.phase, .progressing)
        XCTAssertEqual(analysis.canaryTrafficPercent, 10, "the first step from creation on, never 100 %")
        var percents: [Int?] = []
        var reasons: [String] = []
        for _ in 0..<3 {
            analysis.check(Self.figures(), settings: Self.settings, now: F.t0)
            percents.append(analysis.canaryTrafficPercent)
            reasons.append(analysis.lastDecision?.reason ?? "")
        }
        XCTAssertEqual(percents, [25, 50, nil], "promoted after the last step's check: as if the field were removed")
        XCTAssertEqual(reasons, ["CanaryStepAdvanced", "CanaryStepAdvanced", "CanaryPromoted"])
        XCTAssertEqual(analysis.phase, .promoted)
        XCTAssertEqual(analysis.failedChecks, 0)
        analysis.check(Self.figures(success: 0), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.phase, .promoted, "a finished analysis checks nothing more")
    }

    func testFailedChecksAreCumulativeAndRollBackAtTheLimit() throws {
        var analysis = Self.fresh()
        analysis.check(Self.figures(success: 0.7), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.phase, .progressing)
        XCTAssertEqual(analysis.failedChecks, 1)
        XCTAssertEqual(analysis.canaryTrafficPercent, 10, "a failed check does not advance")
        XCTAssertEqual(analysis.lastDecision?.reason, "CanaryCheckFailed")
        XCTAssertEqual(analysis.lastDecision?.isWarning, true)
        XCTAssertTrue(try XCTUnwrap(analysis.lastDecision?.message).contains("success rate 70% is below 99%"), analysis.lastDecision!.message)
        XCTAssertTrue(analysis.lastDecision!.message.contains("failed checks 1/2"))

        analysis.check(Self.figures(), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 25)
        XCTAssertEqual(analysis.failedChecks, 1, "not reset by a passing check (Flagger's threshold)")

        analysis.check(Self.figures(success: 0.9), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.phase, .rolledBack)
        XCTAssertEqual(analysis.canaryTrafficPercent, 0, "rolled back: as canaryTrafficPercent: 0")
        XCTAssertEqual(analysis.lastDecision?.reason, "CanaryRolledBack")
        XCTAssertTrue(analysis.lastDecision!.message.contains("success rate 90% is below 99%"))
        XCTAssertTrue(analysis.lastDecision!.message.contains("failed checks 2/2"))
    }

    func testTooFewRequestsNeitherPassNorFail() {
        var analysis = Self.fresh()
        analysis.check(Self.figures(requests: 49, success: 0), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.phase, .progressing)
        XCTAssertEqual(analysis.failedChecks, 0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 10)
        XCTAssertEqual(analysis.lastDecision?.reason, "CanaryCheckSkipped")
        XCTAssertTrue(analysis.lastDecision!.message.contains("49 canary requests"))
        XCTAssertTrue(analysis.lastDecision!.message.contains("fewer than minRequests 50"))
        analysis.check(Self.figures(requests: 50), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 25, "exactly minRequests counts")
    }

    func testP99BoundFailsACheck() {
        var analysis = Self.fresh()
        analysis.check(Self.figures(p99: 0.8, previous: 0.7), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.failedChecks, 1)
        XCTAssertTrue(analysis.lastDecision!.message.contains("p99 800ms is above maxP99 500ms"), analysis.lastDecision!.message)
        XCTAssertFalse(analysis.lastDecision!.message.contains("previous revision's"), "0.8 ≤ 1.5 × 0.7: the ratio holds")
        analysis.check(Self.figures(p99: 0.5, previous: 0.4), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 25, "p99 equal to maxP99 passes")
    }

    func testP99RatioAgainstThePreviousRevision() {
        var analysis = Self.fresh()
        analysis.check(Self.figures(p99: 0.3, previous: 0.1), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.failedChecks, 1)
        XCTAssertTrue(analysis.lastDecision!.message.contains("p99 300ms is above 1.5× the previous revision's 100ms"), analysis.lastDecision!.message)
        analysis.check(Self.figures(p99: 0.3, previous: 0.1, previousRequests: 0), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 25, "the ratio is skipped when the previous revision had no requests")
        var noRatio = Self.settings
        noRatio.maxP99Ratio = nil
        analysis.check(Self.figures(p99: 0.3, previous: 0.1), settings: noRatio, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 50, "without maxP99Ratio only maxP99 bounds the p99")
    }

    func testPauseResumeAbort() {
        var analysis = Self.fresh()
        analysis.pause(by: "sluice rollout")
        XCTAssertEqual(analysis.phase, .paused)
        XCTAssertEqual(analysis.canaryTrafficPercent, 10, "paused: traffic stays")
        XCTAssertEqual(analysis.lastDecision?.reason, "CanaryPaused")
        analysis.check(Self.figures(), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 10, "no checks while paused")
        let epoch = analysis.epoch
        analysis.resume(by: "sluice rollout")
        XCTAssertEqual(analysis.phase, .progressing)
        XCTAssertEqual(analysis.epoch, epoch + 1, "a fresh interval: the runner drops its base sample")
        XCTAssertEqual(analysis.lastDecision?.reason, "CanaryResumed")
        analysis.check(Self.figures(), settings: Self.settings, now: F.t0)
        XCTAssertEqual(analysis.canaryTrafficPercent, 25, "continues from the current step")
        analysis.abort(by: "sluice rollout")
        XCTAssertEqual(analysis.phase, .rolledBack)
        XCTAssertEqual(analysis.canaryTrafficPercent, 0)
        XCTAssertTrue(analysis.lastDecision!.message.contains("aborted by sluice rollout"))
        analysis.resume(by: "sluice rollout")
        XCTAssertEqual(analysis.phase, .rolledBack, "a finished analysis cannot be resumed")
    }

    // MARK: Through the rollout state

    static func analysed(canary: Int? = nil, storageUri: String = F.model2, analysis: String? = analysisText,
                         gate: String? = nil, extra: [String: String] = [:]) -> String {
        var annotations = extra
        if let analysis { annotations[InferenceService.canaryAnalysisAnnotation] = analysis }
        if let gate { annotations[InferenceService.rolloutGateAnnotation] = gate }
        return RolloutRulesTests.manifest(storageUri: storageUri, canary: canary, annotations: annotations)
    }

    /// 00001 rolled out, then model-2 applied with the analysis annotation and 00002 ready.
    func analysing(gate: String? = nil) throws -> RolloutDriver {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        XCTAssertEqual(try driver.apply(Self.analysed(gate: gate), at: F.t0 + 10), .configured)
        driver.ready(2, at: F.t0 + 12)
        return driver
    }

    /// The same history applied by hand: model-2 with `canaryTrafficPercent: percent` (nil: the field removed).
    func manual(_ percents: [Int?]) throws -> RolloutDriver {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        for (i, percent) in percents.enumerated() {
            _ = try driver.apply(RolloutRulesTests.manifest(canary: percent), at: F.t0 + 10 + Double(i))
            if i == 0 { driver.ready(2, at: F.t0 + 12) }
        }
        return driver
    }

    func check(_ driver: inout RolloutDriver, _ figures: CanaryCheckFigures = figures(), at now: Date) throws {
        let target = try XCTUnwrap(driver.state.analysisTargets().first)
        XCTAssertTrue(driver.state.recordCheck(target, figures: figures, now: now))
    }

    /// What users see of the traffic: status traffic, what the data plane routes, `get isvc` and the revision rows.
    func assertSameTraffic(_ analysed: RolloutDriver, _ manual: RolloutDriver, _ what: String, line: UInt = #line) {
        XCTAssertEqual(analysed.traffic, manual.traffic, what, line: line)
        XCTAssertEqual(analysed.routed, manual.routed, what, line: line)
        XCTAssertEqual(analysed.table(at: F.t0 + 100), manual.table(at: F.t0 + 100), what, line: line)
        XCTAssertEqual(analysed.predictor?["traffic"], manual.predictor?["traffic"], what, line: line)
        XCTAssertEqual(analysed.record?.latestRolledoutRevision, manual.record?.latestRolledoutRevision, what, line: line)
        XCTAssertEqual(analysed.record?.previousRolledoutRevision, manual.record?.previousRolledoutRevision, what, line: line)
    }

    func testEveryStepLooksLikeAPersonApplyingCanaryTrafficPercent() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        _ = try driver.apply(Self.analysed(), at: F.t0 + 10)
        XCTAssertEqual(driver.traffic, ["00001:10", "00001:90:prev"], "the first step from creation on, before 00002 is ready")
        XCTAssertNil(driver.resource?["spec"]?["predictor"]?["canaryTrafficPercent"], "the manifest is not rewritten")
        driver.ready(2, at: F.t0 + 12)
        assertSameTraffic(driver, try manual([10]), "step 10")
        XCTAssertEqual(driver.table(at: F.t0 + 100).last?.contains("   90     10   "), true, driver.table(at: F.t0 + 100).joined(separator: "\n"))
        try check(&driver, at: F.t0 + 14)
        assertSameTraffic(driver, try manual([10, 25]), "step 25")
        try check(&driver, at: F.t0 + 15)
        assertSameTraffic(driver, try manual([10, 25, 50]), "step 50")
        try check(&driver, at: F.t0 + 16)
        XCTAssertEqual(driver.record?.analysis?.phase, .promoted)
        assertSameTraffic(driver, try manual([10, 25, 50, nil]), "promoted: the field removed")
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(2))
        XCTAssertEqual(driver.record?.previousRolledoutRevision, F.revision(1))
        XCTAssertEqual(driver.ready, "True")
    }

    /// `steps: [0, 50]` with mirroring: the canary serves nobody at the first step (traffic as `canaryTrafficPercent: 0`)
    /// while every mirrored request goes to it, so its first check runs on mirrored requests alone.
    func testADarkLaunchStepServesNobodyAndMirrorsToTheCanary() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        let dark = Self.analysed(analysis: "{steps: [0, 50], interval: 1s, minRequests: 10}",
                                 extra: [InferenceService.mirrorAnnotation: "100"])
        _ = try driver.apply(dark, at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 12)
        XCTAssertEqual(driver.record?.analysis?.phase, .progressing)
        assertSameTraffic(driver, try manual([0]), "step 0: as canaryTrafficPercent: 0")
        XCTAssertEqual(driver.state.serviceSpecs().first?.mirror, MirrorSpec(revisionName: F.revision(2), percent: 100),
                       "the canary receives the mirrored requests")
        try check(&driver, at: F.t0 + 14)
        XCTAssertEqual(driver.record?.analysis?.canaryTrafficPercent, 50)
        assertSameTraffic(driver, try manual([0, 50]), "step 50")
        try check(&driver, Self.figures(success: 0.5), at: F.t0 + 15)
        try check(&driver, Self.figures(success: 0.5), at: F.t0 + 16)
        XCTAssertEqual(driver.record?.analysis?.phase, .rolledBack)
        assertSameTraffic(driver, try manual([0, 50, 0]), "rolled back")
    }

    func testRollbackLooksLikeCanaryTrafficPercentZero() throws {
        var driver = try analysing()
        try check(&driver, Self.figures(success: 0.5), at: F.t0 + 14)
        try check(&driver, Self.figures(success: 0.5), at: F.t0 + 15)
        XCTAssertEqual(driver.record?.analysis?.phase, .rolledBack)
        assertSameTraffic(driver, try manual([10, 0]), "rolled back")
        XCTAssertEqual(driver.traffic, ["00002:0", "00001:100:prev"], "the canary is kept at 0 %")
        XCTAssertEqual(driver.record?.latestRolledoutRevision, F.revision(1))
        XCTAssertTrue(driver.state.analysisTargets().isEmpty, "nothing more to check")
        // An annotation-only apply after the rollback keeps it rolled back.
        _ = try driver.apply(Self.analysed(extra: [InferenceService.stickyKeyAnnotation: "header:x-user"]), at: F.t0 + 20)
        XCTAssertEqual(driver.record?.revisions.count, 2)
        XCTAssertEqual(driver.traffic, ["00002:0", "00001:100:prev"])
    }

    func testStatusObjectAndConditionCarryTheLastCheck() throws {
        var driver = try analysing()
        let waiting = try XCTUnwrap(driver.record?.condition("CanaryAnalysis"))
        XCTAssertEqual(waiting.status, .isTrue)
        XCTAssertEqual(waiting.reason, "Progressing")
        try check(&driver, Self.figures(requests: 120, success: 0.95, p99: 0.0412, previous: 0.0401, previousRequests: 480), at: F.t0 + 14)
        let condition = try XCTUnwrap(driver.record?.condition("CanaryAnalysis"))
        XCTAssertEqual(condition.status, .isTrue)
        XCTAssertEqual(condition.reason, "Progressing")
        let message = try XCTUnwrap(condition.message)
        for figure in ["step 10%", "failed checks 1/2", "120 canary requests", "success rate 95%", "p99 41.2ms",
                       "480 requests, p99 40.1ms"] {
            XCTAssertTrue(message.contains(figure), "\(figure) in \(message)")
        }
        XCTAssertEqual(driver.record?.conditions.map(\.type).first, "CanaryAnalysis", "sorted first, as Knative sorts types")
        XCTAssertEqual(driver.ready, "True", "the analysis does not count towards Ready")
        let status = try XCTUnwrap(driver.resource?["status"]?["canaryAnalysis"])
        XCTAssertEqual(status["phase"], "Progressing")
        XCTAssertEqual(status["weight"], .int(10))
        XCTAssertEqual(status["step"], .int(1))
        XCTAssertEqual(status["failedChecks"], .int(1))
        XCTAssertEqual(status["failureLimit"], .int(2))
        XCTAssertEqual(status["lastCheck"]?["canaryRequests"], .int(120))
        XCTAssertEqual(status["lastCheck"]?["successRate"], .double(95))
        XCTAssertEqual(status["lastCheck"]?["p99Ms"], .double(41.2))
        XCTAssertEqual(status["lastCheck"]?["previousP99Ms"], .double(40.1))
        XCTAssertEqual(status["reason"], "CanaryCheckFailed")

        try check(&driver, Self.figures(requests: 3), at: F.t0 + 15)
        XCTAssertTrue(try XCTUnwrap(driver.record?.condition("CanaryAnalysis")?.message).contains("fewer than minRequests 50, so it neither passes nor fails"))
        try check(&driver, Self.figures(success: 0), at: F.t0 + 16)
        let ended = try XCTUnwrap(driver.record?.condition("CanaryAnalysis"))
        XCTAssertEqual(ended.status, .isFalse)
        XCTAssertEqual(ended.reason, "RolledBack")
        XCTAssertEqual(ended.lastTransitionTime, F.t0 + 16)
        let description = IsvcDescription.render(try XCTUnwrap(driver.resource), revisions: [], events: [], now: F.t0 + 20)
        XCTAssertTrue(description.contains("Canary Analysis:\n"), description)
        XCTAssertTrue(description.range(of: #"\n    Phase: +RolledBack\n"#, options: .regularExpression) != nil, description)
    }

    func testNoAnalysisOnFirstDeployNorWithCanaryTrafficPercent() throws {
        var driver = RolloutDriver()
        _ = try driver.apply(Self.analysed(storageUri: F.model1), at: F.t0)
        driver.ready(1, at: F.t0 + 1)
        XCTAssertNil(driver.record?.analysis, "first deploy: nothing to compare with")
        XCTAssertNil(driver.record?.condition("CanaryAnalysis"))
        XCTAssertEqual(driver.traffic, ["00001:100"])

        _ = try driver.apply(Self.analysed(canary: 30), at: F.t0 + 10)
        driver.ready(2, at: F.t0 + 12)
        XCTAssertNil(driver.record?.analysis, "the user chose the traffic")
        XCTAssertEqual(driver.traffic, ["00002:30", "00001:70:prev"])
        let condition = try XCTUnwrap(driver.record?.condition("CanaryAnalysis"), "never silently ignored")
        XCTAssertEqual(condition.status, .isFalse)
        XCTAssertEqual(condition.reason, "CanaryTrafficPercentSet")
        XCTAssertTrue(condition.message!.contains("canaryTrafficPercent is 30"))
    }

    func testAUserApplyChangingTheSpecSupersedesTheAnalysis() throws {
        var driver = try analysing()
        try check(&driver, at: F.t0 + 14)
        XCTAssertEqual(driver.traffic, ["00002:25", "00001:75:prev"])
        _ = try driver.apply(Self.analysed(canary: 60), at: F.t0 + 20)
        XCTAssertEqual(driver.record?.analysis?.phase, .superseded)
        XCTAssertEqual(driver.record?.analysis?.lastDecision?.reason, "CanarySuperseded")
        XCTAssertTrue(driver.record!.analysis!.lastDecision!.message.contains("canaryTrafficPercent: 60"))
        XCTAssertEqual(driver.traffic, ["00002:60", "00001:40:prev"], "the manifest rules from then on")
        XCTAssertTrue(driver.state.analysisTargets().isEmpty)
        XCTAssertEqual(driver.record?.condition("CanaryAnalysis")?.reason, "Superseded")

        var removed = try analysing()
        _ = try removed.apply(Self.analysed(analysis: nil), at: F.t0 + 20)
        XCTAssertEqual(removed.record?.analysis?.phase, .superseded, "removing the annotation ends it")
        XCTAssertTrue(removed.record!.analysis!.lastDecision!.message.contains("removed the serving.sluice.dev/canary-analysis annotation"))
        XCTAssertEqual(removed.traffic, ["00002:100"])
        XCTAssertEqual(removed.record?.latestRolledoutRevision, F.revision(2), "no canaryTrafficPercent in the manifest: blue-green")
    }

    func testAnnotationOnlyAppliesKeepItRunningAndSteerTheGate() throws {
        var driver = try analysing()
        // New thresholds: apply from the next check, the analysis goes on.
        let stricter = Self.analysisText.replacingOccurrences(of: "minRequests: 50", with: "minRequests: 500")
        XCTAssertEqual(try driver.apply(Self.analysed(analysis: stricter), at: F.t0 + 13), .configured)
        XCTAssertEqual(driver.record?.revisions.count, 2, "no new revision")
        XCTAssertEqual(driver.record?.analysis?.phase, .progressing)
        try check(&driver, Self.figures(requests: 100), at: F.t0 + 14)
        XCTAssertEqual(driver.record?.analysis?.lastDecision?.reason, "CanaryCheckSkipped", "100 < the new minRequests 500")

        // The gate annotation pauses (traffic stays) and resumes.
        _ = try driver.apply(Self.analysed(analysis: stricter, gate: "paused"), at: F.t0 + 15)
        XCTAssertEqual(driver.record?.analysis?.phase, .paused)
        XCTAssertEqual(driver.traffic, ["00002:10", "00001:90:prev"])
        let target = try XCTUnwrap(driver.state.analysisTargets().first)
        XCTAssertEqual(target.phase, .paused)
        XCTAssertFalse(driver.state.recordCheck(target, figures: Self.figures(requests: 1000), now: F.t0 + 16), "no checks while paused")
        // The CLI resumes; re-applying the same (paused) annotation does not pause again: the most recent action wins.
        XCTAssertEqual(driver.state.rolloutAction(namespace: F.namespace, name: F.name, gate: .running, now: F.t0 + 17), .success(true))
        _ = try driver.apply(Self.analysed(analysis: stricter, gate: "paused", extra: ["serving.sluice.dev/mirror-percent": "5"]), at: F.t0 + 18)
        XCTAssertEqual(driver.record?.analysis?.phase, .progressing)
        // The annotation aborts: rolled back now.
        _ = try driver.apply(Self.analysed(analysis: stricter, gate: "aborted"), at: F.t0 + 19)
        XCTAssertEqual(driver.record?.analysis?.phase, .rolledBack)
        XCTAssertEqual(driver.traffic, ["00002:0", "00001:100:prev"])
        XCTAssertEqual(driver.state.rolloutAction(namespace: F.namespace, name: F.name, gate: .running, now: F.t0 + 20),
                       .failure(.notRunning("InferenceService \"sklearn-iris\" has no running canary analysis: its analysis of sklearn-iris-predictor-default-00002 is RolledBack")))
    }

    func testANewRevisionDuringAnAnalysisStartsAnotherAgainstTheRolledOutOne() throws {
        var driver = try analysing()
        _ = try driver.apply(Self.analysed(storageUri: F.model1, extra: ["example.com/build": "3"]), at: F.t0 + 20)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(3))
        XCTAssertEqual(driver.record?.analysis?.revision, F.revision(3))
        XCTAssertEqual(driver.record?.analysis?.previousRevision, F.revision(1), "00002 was never rolled out")
        XCTAssertEqual(driver.record?.analysis?.phase, .progressing)
    }

    func testTheGateAtANewRevision() throws {
        let paused = try analysing(gate: "paused")
        XCTAssertEqual(paused.record?.analysis?.phase, .paused, "a paused gate holds a new analysis at its first step")
        XCTAssertEqual(paused.traffic, ["00002:10", "00001:90:prev"])

        // Aborted by the annotation, then a fixed model applied with the gate left as it was: analysed, not killed.
        var driver = try analysing()
        _ = try driver.apply(Self.analysed(gate: "aborted"), at: F.t0 + 13)
        XCTAssertEqual(driver.record?.analysis?.phase, .rolledBack)
        _ = try driver.apply(Self.analysed(storageUri: F.model1, gate: "aborted", extra: ["example.com/build": "3"]), at: F.t0 + 20)
        XCTAssertEqual(driver.record?.analysis?.revision, F.revision(3))
        XCTAssertEqual(driver.record?.analysis?.phase, .progressing, "a left-over aborted gate does not act again")
        XCTAssertEqual(driver.record?.analysis?.previousRevision, F.revision(1))
    }

    func testTheStateFileKeepsTheAnalysisAndOlderFilesStillLoad() throws {
        var driver = try analysing()
        try check(&driver, Self.figures(success: 0.5), at: F.t0 + 14)
        try check(&driver, at: F.t0 + 15)
        let data = try JSONEncoder().encode(driver.state)
        let decoded = try JSONDecoder().decode(RolloutState.self, from: data)
        XCTAssertEqual(decoded, driver.state)
        XCTAssertEqual(decoded.record(namespace: F.namespace, name: F.name)?.analysis?.canaryTrafficPercent, 25)
        XCTAssertEqual(decoded.record(namespace: F.namespace, name: F.name)?.analysis?.failedChecks, 1)

        // A file written before the analysis existed has no `analysis` key.
        let plain = try JSONEncoder().encode(try manual([10]).state)
        XCTAssertFalse(String(decoding: plain, as: UTF8.self).contains("\"analysis\""))
        XCTAssertNil(try JSONDecoder().decode(RolloutState.self, from: plain).record(namespace: F.namespace, name: F.name)?.analysis)
    }

    func testEventsCarryTheFigures() throws {
        var driver = try analysing()
        let before = driver.state
        try check(&driver, Self.figures(requests: 120, success: 0.95, p99: 0.04, previous: 0.03), at: F.t0 + 14)
        let events = ControlPlane.analysisEvents(old: before, new: driver.state)
        XCTAssertEqual(events.map(\.reason), ["CanaryCheckFailed"])
        let event = try XCTUnwrap(events.first)
        XCTAssertEqual(event.name, "canary.check_failed")
        XCTAssertEqual(event.kubernetesType, "Warning")
        XCTAssertEqual(event.involved, Event.Involved(namespace: F.namespace, name: F.name))
        let fields = Dictionary(event.fields, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(fields["canaryRequests"], .int(120))
        XCTAssertEqual(fields["successRate"], .double(95), "percent, as in the annotation and the status")
        XCTAssertEqual(fields["p99Ms"], .double(40))
        XCTAssertEqual(fields["previousP99Ms"], .double(30))
        XCTAssertEqual(fields["failedChecks"], .int(1))
        XCTAssertEqual(fields["weight"], .int(10))
        XCTAssertTrue(event.message.contains("120 canary requests"), event.message)
        XCTAssertTrue(event.message.contains("traffic: sklearn-iris-predictor-default-00002 10%, sklearn-iris-predictor-default-00001 90% (prev)"), event.message)

        // An apply that creates a revision over a running analysis tells both: the old one's end, the new one's start.
        let running = driver.state
        _ = try driver.apply(Self.analysed(storageUri: F.model1, extra: ["example.com/build": "3"]), at: F.t0 + 20)
        XCTAssertEqual(ControlPlane.analysisEvents(old: running, new: driver.state).map(\.reason), ["CanarySuperseded", "CanaryAnalysisStarted"])
    }

    // MARK: The annotation

    func refusal(_ annotations: [String: String]) -> String? {
        do {
            _ = try ManifestDecoder.decode(RolloutRulesTests.manifest(annotations: annotations), defaultNamespace: F.namespace)
            return nil
        } catch {
            return error.description
        }
    }

    func testTheAnnotationDecodesWithDefaults() throws {
        XCTAssertEqual(try InferenceService.decodeCanaryAnalysis(Self.analysisText).get(), Self.settings)
        XCTAssertEqual(try InferenceService.decodeCanaryAnalysis(#"{"steps": [20, 60]}"#).get(),
                       CanaryAnalysisSettings(steps: [20, 60], intervalMs: 30_000, minRequests: 50, successRate: 99, failureLimit: 2))
        let isvc = try F.decodeOne(Self.analysed(gate: "paused"))
        XCTAssertEqual(isvc.canaryAnalysisSettings, Self.settings)
        XCTAssertEqual(isvc.rolloutGate, .paused)
        XCTAssertEqual(try F.decodeOne(Self.analysed()).rolloutGate, .running, "absent is running")
    }

    func testEveryBadValueIsRefusedWithItsPath() {
        let field = "metadata.annotations[serving.sluice.dev/canary-analysis]"
        let cases: [(String, String)] = [
            ("{interval: 1s}", "steps: required"),
            ("{steps: []}", "steps: must list at least one canary percent, e.g. [10, 50]"),
            ("{steps: [10, 10]}", "steps[1]: steps must be strictly increasing: 10 follows 10"),
            ("{steps: [0, 10]}", "steps[0]: a 0% step (a dark launch) needs the serving.sluice.dev/mirror-percent annotation: without mirrored requests the canary would never be checked"),
            ("{steps: [10, 0]}", "steps[1]: steps must be strictly increasing: 0 follows 10"),
            ("{steps: [10, 100]}", "steps[1]: 100 is outside 0...99"),
            ("{steps: [10], interval: 500ms}", "interval: must be at least 1s"),
            ("{steps: [10], interval: 30}", "interval: expected a duration like 250ms, 10s or 5m, got \"30\""),
            ("{steps: [10], minRequests: 0}", "minRequests: 0 is outside 1...1000000000"),
            ("{steps: [10], successRate: 101}", "successRate: 101 is outside 0.0...100.0"),
            ("{steps: [10], maxP99: 0}", "maxP99: must be greater than 0"),
            ("{steps: [10], maxP99Ratio: 1}", "maxP99Ratio: must be greater than 1.0 (the canary's p99 may be this many times the previous revision's)"),
            ("{steps: [10], failureLimit: 0}", "failureLimit: 0 is outside 1...1000000"),
            ("{steps: [10], threshold: 2}", "threshold: unknown key, expected one of steps, interval, minRequests, successRate, maxP99, maxP99Ratio, failureLimit"),
        ]
        for (value, reason) in cases {
            XCTAssertEqual(refusal([InferenceService.canaryAnalysisAnnotation: value]),
                           "The InferenceService \"sklearn-iris\" is invalid: \(field): Invalid value: \"\(value)\": \(reason)", value)
        }
        XCTAssertEqual(refusal([InferenceService.rolloutGateAnnotation: "stopped"]),
                       #"The InferenceService "sklearn-iris" is invalid: metadata.annotations[serving.sluice.dev/rollout-gate]: Invalid value: "stopped": supported values: "running", "paused", "aborted""#)
        XCTAssertNil(refusal([InferenceService.rolloutGateAnnotation: "aborted", InferenceService.canaryAnalysisAnnotation: Self.analysisText]))
        XCTAssertNil(refusal([InferenceService.canaryAnalysisAnnotation: "{steps: [0, 50]}", InferenceService.mirrorAnnotation: "100"]),
                     "a dark launch: checked on mirrored requests first")
    }
}
