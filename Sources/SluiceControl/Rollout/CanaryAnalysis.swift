// Control layer: one revision's automatic canary analysis — its phase, step and failed checks — and the pure
// decisions that move it (a check's verdict, pause, resume, abort, supersede), with no clock and no I/O.
import Foundation

/// What one check measured over its interval: the canary's and the previous revision's requests, success and p99.
public struct CanaryCheckFigures: Codable, Equatable, Sendable {
    public var canaryRequests: UInt64
    /// 0...1; nil without canary requests.
    public var successRate: Double?
    /// Seconds; nil without canary requests.
    public var p99: Double?
    public var previousRequests: UInt64
    public var previousP99: Double?
    public var windowSeconds: Double

    public init(canaryRequests: UInt64, successRate: Double?, p99: Double?, previousRequests: UInt64 = 0,
                previousP99: Double? = nil, windowSeconds: Double) {
        self.canaryRequests = canaryRequests
        self.successRate = successRate
        self.p99 = p99
        self.previousRequests = previousRequests
        self.previousP99 = previousP99
        self.windowSeconds = windowSeconds
    }

    /// From the two revisions' differences between samples (`RevisionTopRow.between`).
    init(canary: RevisionTopRow, previous: RevisionTopRow?) {
        self.init(canaryRequests: canary.requests, successRate: canary.successRate, p99: canary.p99,
                  previousRequests: previous?.requests ?? 0, previousP99: previous?.p99, windowSeconds: canary.windowSeconds)
    }
}

public struct CanaryAnalysis: Codable, Equatable, Sendable {
    public enum Phase: String, Codable, Sendable {
        case progressing = "Progressing"
        case paused = "Paused"
        case promoted = "Promoted"
        case rolledBack = "RolledBack"
        case superseded = "Superseded"

        /// Progressing or Paused: the analysis decides the canary's traffic and may still move.
        public var isRunning: Bool { self == .progressing || self == .paused }
    }

    /// The last decision, told as an event (reason, message, whether it is a Warning).
    public struct Decision: Codable, Equatable, Sendable {
        public var reason: String
        public var message: String
        public var isWarning: Bool
        /// Made by a check (its figures are `lastCheck`), not by a start, a gate or an apply.
        public var isCheck = false
    }

    /// The analysed revision (the canary) and the rolled-out revision it is compared with.
    public let revision: String
    public let previousRevision: String
    public internal(set) var phase: Phase
    /// Index into the settings' steps.
    public internal(set) var stepIndex: Int
    /// The percent the canary has while running (the current step's; kept when steps change under it).
    public internal(set) var weight: Int
    public internal(set) var failedChecks: Int
    /// Bumped when a fresh interval must start (resume): the runner's base sample of an older epoch is dropped.
    public internal(set) var epoch: Int
    public internal(set) var lastCheck: CanaryCheckFigures?
    public internal(set) var lastCheckTime: Date?
    /// One more for every decision, so that a change of state can tell whether there is a new one to record.
    public internal(set) var decisionCount: Int
    public internal(set) var lastDecision: Decision?

    /// A new analysis at the first step. `gate` is the manifest's gate at creation (paused starts paused,
    /// aborted rolls back at once).
    public init(revision: String, previousRevision: String, settings: CanaryAnalysisSettings, gate: RolloutGate = .running) {
        self.revision = revision
        self.previousRevision = previousRevision
        phase = .progressing
        stepIndex = 0
        weight = settings.steps[0]
        failedChecks = 0
        epoch = 0
        decisionCount = 0
        let steps = settings.steps.map { "\($0)%" }.joined(separator: ", ")
        decide("CanaryAnalysisStarted", "analysis of \(revision) started against \(previousRevision): steps \(steps), then 100%; first step \(weight)% once the revision is ready")
        switch gate {
        case .running: break
        case .paused: pause(by: "the rollout-gate annotation")
        case .aborted: abort(by: "the rollout-gate annotation")
        }
    }

    /// The canary's `canaryTrafficPercent` as the analysis sets it: the step while running, 0 once rolled back,
    /// nil once promoted (as if the field were removed); nil for a superseded one too (the manifest rules then).
    public var canaryTrafficPercent: Int? {
        switch phase {
        case .progressing, .paused: weight
        case .rolledBack: 0
        case .promoted, .superseded: nil
        }
    }

    /// Whether the analysis, not the manifest, decides the canary's traffic.
    public var governsTraffic: Bool { phase != .superseded }

    // MARK: Decisions

    /// One check over an interval's figures. Only a Progressing analysis checks.
    public mutating func check(_ figures: CanaryCheckFigures, settings: CanaryAnalysisSettings, now: Date) {
        guard phase == .progressing else { return }
        lastCheck = figures
        lastCheckTime = now
        let measured = Self.describe(figures)
        guard figures.canaryRequests >= UInt64(settings.minRequests) else {
            decideCheck("CanaryCheckSkipped",
                   "check skipped: \(figures.canaryRequests) canary requests in \(Self.seconds(figures.windowSeconds)), fewer than minRequests \(settings.minRequests), so it neither passes nor fails; step \(weight)%, failed checks \(failedChecks)/\(settings.failureLimit)")
            return
        }
        var failures: [String] = []
        let rate = (figures.successRate ?? 1) * 100
        if rate < settings.successRate {
            failures.append("success rate \(Self.percent(rate)) is below \(Self.percent(settings.successRate))")
        }
        if let limit = settings.maxP99Ms, let p99 = figures.p99, p99 * 1000 > Double(limit) {
            failures.append("p99 \(Self.milliseconds(p99)) is above maxP99 \(limit)ms")
        }
        if let ratio = settings.maxP99Ratio, figures.previousRequests > 0, let previous = figures.previousP99, let p99 = figures.p99,
           p99 > ratio * previous {
            failures.append("p99 \(Self.milliseconds(p99)) is above \(ratio)× the previous revision's \(Self.milliseconds(previous))")
        }
        if !failures.isEmpty {
            failedChecks += 1
            let why = failures.joined(separator: "; ")
            if failedChecks >= settings.failureLimit {
                phase = .rolledBack
                decideCheck("CanaryRolledBack",
                       "rolled back: check failed (\(why)); \(measured); failed checks \(failedChecks)/\(settings.failureLimit); \(previousRevision) has 100% again, \(revision) is kept at 0% (its latest tag still reaches it)",
                       warning: true)
            } else {
                decideCheck("CanaryCheckFailed", "check failed at step \(weight)%: \(why); \(measured); failed checks \(failedChecks)/\(settings.failureLimit)",
                       warning: true)
            }
            return
        }
        if let next = settings.steps.firstIndex(where: { $0 > weight }) {
            let from = weight
            stepIndex = next
            weight = settings.steps[next]
            decideCheck("CanaryStepAdvanced", "check passed at step \(from)%: \(measured); step \(weight)% now; failed checks \(failedChecks)/\(settings.failureLimit)")
        } else {
            phase = .promoted
            decideCheck("CanaryPromoted", "promoted: check passed at the last step \(weight)%: \(measured); \(revision) has 100%, failed checks \(failedChecks)/\(settings.failureLimit)")
        }
    }

    /// No checks and no step changes; traffic stays where it is.
    public mutating func pause(by who: String) {
        guard phase == .progressing else { return }
        phase = .paused
        decide("CanaryPaused", "paused by \(who) at step \(weight)%: no checks until resumed")
    }

    /// Continues from the current step with a fresh interval.
    public mutating func resume(by who: String) {
        guard phase == .paused else { return }
        phase = .progressing
        epoch += 1
        decide("CanaryResumed", "resumed by \(who) at step \(weight)% with a fresh interval")
    }

    /// Flagger's manual rollback: the previous revision gets all the traffic now.
    public mutating func abort(by who: String) {
        guard phase.isRunning else { return }
        phase = .rolledBack
        decide("CanaryRolledBack", "rolled back: aborted by \(who) at step \(weight)%; \(previousRevision) has 100% again, \(revision) is kept at 0%",
               warning: true)
    }

    /// A user's apply ends a running analysis: the manifest rules the traffic from then on.
    public mutating func supersede(_ why: String) {
        guard phase.isRunning else { return }
        phase = .superseded
        decide("CanarySuperseded", "analysis ended at step \(weight)%: \(why); the manifest decides the traffic from now on")
    }

    /// The gate as an action: what an apply that changed the gate annotation, or `sluice rollout`, asks.
    public mutating func apply(gate: RolloutGate, by who: String) {
        switch gate {
        case .running: resume(by: who)
        case .paused: pause(by: who)
        case .aborted: abort(by: who)
        }
    }

    private mutating func decide(_ reason: String, _ message: String, warning: Bool = false, isCheck: Bool = false) {
        decisionCount += 1
        lastDecision = Decision(reason: reason, message: message, isWarning: warning, isCheck: isCheck)
    }

    private mutating func decideCheck(_ reason: String, _ message: String, warning: Bool = false) {
        decide(reason, message, warning: warning, isCheck: true)
    }

    // MARK: Wording

    /// `120 canary requests, success rate 99.2%, p99 41.3ms (previous revision: 480 requests, p99 40.1ms)`.
    static func describe(_ figures: CanaryCheckFigures) -> String {
        var text = "\(figures.canaryRequests) canary requests in \(seconds(figures.windowSeconds)), success rate \(figures.successRate.map { percent($0 * 100) } ?? "n/a"), p99 \(figures.p99.map(milliseconds) ?? "n/a")"
        text += " (previous revision: \(figures.previousRequests) requests, p99 \(figures.previousP99.map(milliseconds) ?? "n/a"))"
        return text
    }

    static func percent(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? "\(Int(rounded))%" : "\(rounded)%"
    }

    static func milliseconds(_ seconds: Double) -> String {
        let ms = (seconds * 10_000).rounded() / 10
        return ms == ms.rounded() ? "\(Int(ms))ms" : "\(ms)ms"
    }

    static func seconds(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? "\(Int(rounded))s" : "\(rounded)s"
    }
}
