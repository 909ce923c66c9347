// Control layer: the canary-analysis runner — off the request path, about once a second it samples the data plane's
// per-revision totals, and for each running analysis whose interval is over hands the plane that interval's figures.
import Foundation
import Synchronization

public final class CanaryAnalyzer: Sendable {
    /// The totals of the canary and the previous revision when the current interval began.
    private struct Base {
        var epoch: Int
        var time: Double
        var canary: RevisionCounts?
        var previous: RevisionCounts?
    }

    private let plane: ControlPlane
    private let read: @Sendable () -> [RevisionCounts]
    private let clock: @Sendable () -> Double
    /// Keyed by `namespace/name/revision`; only the runner's thread (or a test's `tick`) touches it.
    private let bases = Mutex<[String: Base]>([:])
    private let running = Atomic<Bool>(false)

    /// `read` returns the running totals (the gateway's `revisionStats`, one entry or several per revision).
    public init(plane: ControlPlane, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                read: @escaping @Sendable () -> [RevisionCounts]) {
        self.plane = plane
        self.read = read
        self.clock = clock
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Thread.detachNewThread { [self] in
            while running.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: 1)  // the runner's period, not synchronisation
                tick()
            }
        }
    }

    public func stop() { running.store(false, ordering: .releasing) }

    /// One round: starts the interval of each analysis whose canary just became ready (or resumed, or after a
    /// restart: the data plane's counters start again with the process), and checks those whose interval is over.
    public func tick() { tick(now: clock()) }

    public func tick(now: Double) {
        let targets = plane.analysisTargets
        guard !targets.isEmpty else {
            bases.withLock { $0.removeAll() }
            return
        }
        let totals = Self.summed(read())
        var due: [(AnalysisTarget, CanaryCheckFigures)] = []
        bases.withLock { bases in
            let live = Set(targets.map(Self.key))
            bases = bases.filter { live.contains($0.key) }
            for target in targets where target.phase == .progressing && target.isCanaryReady {
                let key = Self.key(target)
                let canary = totals["\(target.namespace)/\(target.name)/\(target.revision)"]
                let previous = totals["\(target.namespace)/\(target.name)/\(target.previousRevision)"]
                guard let base = bases[key], base.epoch == target.epoch else {
                    bases[key] = Base(epoch: target.epoch, time: now, canary: canary, previous: previous)
                    continue
                }
                let seconds = now - base.time
                guard seconds >= target.intervalSeconds else { continue }
                let figures = Self.figures(target, base: base, canary: canary, previous: previous, seconds: seconds)
                bases[key] = Base(epoch: target.epoch, time: now, canary: canary, previous: previous)
                due.append((target, figures))
            }
            // A paused analysis starts a fresh interval when resumed (its epoch moves on); drop its base now.
            for target in targets where target.phase == .paused { bases[Self.key(target)] = nil }
        }
        for (target, figures) in due {
            // A failure to save is the plane's to tell (it records the refusal); the next interval tries again.
            try? plane.recordCanaryCheck(target, figures: figures, now: Date(timeIntervalSince1970: now))
        }
    }

    private static func figures(_ target: AnalysisTarget, base: Base, canary: RevisionCounts?, previous: RevisionCounts?,
                        seconds: Double) -> CanaryCheckFigures {
        let empty = { (revision: String) in
            RevisionCounts(namespace: target.namespace, service: target.name, revision: revision, requests: 0, failed: 0,
                           bucketBounds: [], cumulativeCounts: [])
        }
        let canaryRow = RevisionTopRow.between(base.canary, canary ?? base.canary ?? empty(target.revision), seconds: seconds)
        let previousRow = RevisionTopRow.between(base.previous, previous ?? base.previous ?? empty(target.previousRevision), seconds: seconds)
        return CanaryCheckFigures(canary: canaryRow, previous: previousRow)
    }

    private static func key(_ target: AnalysisTarget) -> String { "\(target.namespace)/\(target.name)/\(target.revision)" }

    /// Every entry of one revision added up: the workers' and, with mirroring, the shadow copies' results (they are
    /// the canary's answers too). Entries with other bucket bounds than the first are counted, not bucketed.
    static func summed(_ counts: [RevisionCounts]) -> [String: RevisionCounts] {
        var totals: [String: RevisionCounts] = [:]
        for entry in counts {
            let key = "\(entry.namespace)/\(entry.service)/\(entry.revision)"
            guard var total = totals[key] else { totals[key] = entry; continue }
            total.requests &+= entry.requests
            total.failed &+= entry.failed
            if total.bucketBounds == entry.bucketBounds {
                for i in total.cumulativeCounts.indices { total.cumulativeCounts[i] &+= entry.cumulativeCounts[i] }
            }
            totals[key] = total
        }
        return totals
    }
}
