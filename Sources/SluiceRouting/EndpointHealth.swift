// Routing layer: what every worker and the control plane know about each endpoint's recent health — consecutive
// failures seen by any worker, and a passive outlier ejection — shared across workers and route-table generations,
// keyed by the endpoint itself. The decisions (when to eject, the events) are the proxy's: Worker+Outliers.swift.
import Synchronization

/// One endpoint's shared health. Healthy traffic reads it with relaxed loads only (a success writes only when a
/// failure count is not 0 already), so the cache line stays shared and no request pays a read-modify-write.
public final class EndpointHealthSlot: Sendable {
    public let endpoint: Endpoint
    private let consecutiveGatewayFailures = Atomic<Int>(0)
    private let consecutiveErrors = Atomic<Int>(0)
    /// Monotonic ms until which the endpoint is ejected; 0 once an active check lifted it; in the past after expiry.
    private let ejectedUntilMs = Atomic<Int64>(0)
    /// The ejection in force was for 5xx answers (an active check does not lift those: the pod answers, its
    /// readiness path just does not tell the truth about it).
    private let ejectedFor5xx = Atomic<Bool>(false)
    /// Ejections so far, the multiplier of the next ejection's time.
    private let ejectionCount = Atomic<Int>(0)
    /// While ejected, the next time one request may go to the endpoint as a trial (a half-open circuit): a success
    /// ends the ejection, so a restarted pod is back within a second even without active health checks.
    private let nextTrialMs = Atomic<Int64>(0)
    /// The failure run had a timeout (a connect, response or per-try timeout): such an ejection gets no trial
    /// requests, since a trial to a pod that hangs costs its client the timeout. A pod that fails fast (refused
    /// connects, resets: killed, crash-looping) gets them; a trial then fails in microseconds and is retried.
    private let runHadTimeout = Atomic<Bool>(false)
    private let trialsAllowed = Atomic<Bool>(false)
    /// An ejection was announced and its end not yet (Worker+Outliers' sweep announces returns).
    private let announcedEjected = Atomic<Bool>(false)
    /// Requests at this endpoint now, from every worker; kept only for revisions with a `containerConcurrency`.
    private let inFlight = Atomic<Int>(0)
    public let ejectionsForGatewayFailures = Atomic<UInt64>(0)
    public let ejectionsFor5xx = Atomic<UInt64>(0)

    init(endpoint: Endpoint) { self.endpoint = endpoint }

    @inline(__always)
    public func isEjected(nowMs: Int64) -> Bool { ejectedUntilMs.load(ordering: .relaxed) > nowMs }

    /// When the last failure was seen (monotonic ms).
    private let lastFailureMs = Atomic<Int64>(0)

    /// Consecutive failures (gateway failures and 5xx) seen by all workers in the last second: the endpoint choice's
    /// penalty. It fades a second after the last failure, so that an endpoint it steered traffic away from before
    /// ejection was reached is tried again (and recovers, or fails on to its ejection) instead of being avoided for
    /// good.
    @inline(__always)
    public func recentFailures(nowMs: Int64) -> Int {
        let count = consecutiveErrors.load(ordering: .relaxed)
        guard count != 0 else { return 0 }
        return nowMs - lastFailureMs.load(ordering: .relaxed) < 1_000 ? count : 0
    }

    /// The pod answered below 500: the failure runs end, and an ejection too (the trial request succeeded). Writes
    /// only when there was a run or an ejection.
    @inline(__always)
    public func recordSuccess() {
        if ejectedUntilMs.load(ordering: .relaxed) != 0 { ejectedUntilMs.store(0, ordering: .relaxed) }
        if consecutiveErrors.load(ordering: .relaxed) != 0 { consecutiveErrors.store(0, ordering: .relaxed) }
        if consecutiveGatewayFailures.load(ordering: .relaxed) != 0 { consecutiveGatewayFailures.store(0, ordering: .relaxed) }
        if runHadTimeout.load(ordering: .relaxed) { runHadTimeout.store(false, ordering: .relaxed) }
    }

    /// Takes one of the endpoint's `limit` concurrency slots, if one is free.
    public func claimSlot(limit: Int) -> Bool {
        var current = inFlight.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = inFlight.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    public func releaseSlot() {
        inFlight.subtract(1, ordering: .acquiringAndReleasing)
    }

    public var slotsInUse: Int { inFlight.load(ordering: .relaxed) }

    /// One request a second may try an endpoint ejected for fast failures: true for the caller that takes this
    /// second's trial.
    public func takeTrial(nowMs: Int64) -> Bool {
        guard trialsAllowed.load(ordering: .relaxed) else { return false }
        let next = nextTrialMs.load(ordering: .relaxed)
        guard nowMs >= next else { return false }
        return nextTrialMs.compareExchange(expected: next, desired: nowMs + 1_000, ordering: .relaxed).exchanged
    }

    /// A connect failure, a reset or close before the answer, a timeout. True when a threshold is reached.
    public func recordGatewayFailure(_ settings: OutlierDetection, timedOut: Bool, nowMs: Int64) -> Bool {
        lastFailureMs.store(nowMs, ordering: .relaxed)
        if timedOut && !runHadTimeout.load(ordering: .relaxed) { runHadTimeout.store(true, ordering: .relaxed) }
        let gateway = consecutiveGatewayFailures.add(1, ordering: .relaxed).newValue
        let errors = consecutiveErrors.add(1, ordering: .relaxed).newValue
        return (settings.consecutiveGatewayFailures > 0 && gateway >= settings.consecutiveGatewayFailures)
            || (settings.consecutive5xx > 0 && errors >= settings.consecutive5xx)
    }

    /// The pod answered 5xx. True when the threshold is reached.
    public func recordServerError(_ settings: OutlierDetection, nowMs: Int64) -> Bool {
        lastFailureMs.store(nowMs, ordering: .relaxed)
        if consecutiveGatewayFailures.load(ordering: .relaxed) != 0 { consecutiveGatewayFailures.store(0, ordering: .relaxed) }
        let errors = consecutiveErrors.add(1, ordering: .relaxed).newValue
        return settings.consecutive5xx > 0 && errors >= settings.consecutive5xx
    }

    /// Ejects the endpoint unless it is ejected already (another worker won): the ejection's length in ms, or nil.
    /// The failure runs start again from 0.
    public func eject(nowMs: Int64, for5xx: Bool, _ settings: OutlierDetection) -> Int64? {
        let until = ejectedUntilMs.load(ordering: .relaxed)
        if until > nowMs { return nil }
        // Not ejected for a whole maximum ejection time: the multiplier starts again (Envoy lowers it while healthy).
        let base = Int64(max(1, settings.baseEjectionMs)), cap = Int64(max(settings.baseEjectionMs, settings.maxEjectionMs))
        var count = ejectionCount.load(ordering: .relaxed)
        if until != 0 && nowMs - until > cap { count = 0 }
        count += 1
        let length = min(base * Int64(count), cap)
        guard ejectedUntilMs.compareExchange(expected: until, desired: nowMs + length, ordering: .relaxed).exchanged else { return nil }
        ejectionCount.store(count, ordering: .relaxed)
        nextTrialMs.store(nowMs + 1_000, ordering: .relaxed)
        trialsAllowed.store(!for5xx && !runHadTimeout.load(ordering: .relaxed), ordering: .relaxed)
        runHadTimeout.store(false, ordering: .relaxed)
        ejectedFor5xx.store(for5xx, ordering: .relaxed)
        consecutiveErrors.store(0, ordering: .relaxed)
        consecutiveGatewayFailures.store(0, ordering: .relaxed)
        if for5xx { ejectionsFor5xx.add(1, ordering: .relaxed) } else { ejectionsForGatewayFailures.add(1, ordering: .relaxed) }
        announcedEjected.store(true, ordering: .relaxed)
        return length
    }

    /// An active check passed: an ejection for gateway failures ends now. Cheap when not ejected.
    public func lift() {
        let until = ejectedUntilMs.load(ordering: .relaxed)
        guard until != 0, !ejectedFor5xx.load(ordering: .relaxed) else { return }
        _ = ejectedUntilMs.compareExchange(expected: until, desired: 0, ordering: .relaxed)
    }

    /// Once per ejection, after it ended: whether a success ended it — an active check, or a trial request — (true)
    /// or its time ran out (false).
    public func takeReturn(nowMs: Int64) -> Bool? {
        guard announcedEjected.load(ordering: .relaxed) else { return nil }
        let until = ejectedUntilMs.load(ordering: .relaxed)
        guard until <= nowMs, announcedEjected.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged else { return nil }
        return until == 0
    }
}

/// The process-wide registry of endpoint health slots: one per endpoint ever configured (a few hundred bytes each),
/// looked up when a worker makes a pool and by the control plane's checks, never by a request.
public enum EndpointHealth {
    private static let slots = Mutex<[Endpoint: EndpointHealthSlot]>([:])

    public static func slot(for endpoint: Endpoint) -> EndpointHealthSlot {
        slots.withLock { slots in
            if let slot = slots[endpoint] { return slot }
            let slot = EndpointHealthSlot(endpoint: endpoint)
            slots[endpoint] = slot
            return slot
        }
    }

    /// Forgets `endpoint`'s failures and ejections (it left the configuration). A pool still holding the old slot
    /// keeps it until the pool goes: only its draining requests see it.
    public static func forget(_ endpoint: Endpoint) {
        _ = slots.withLock { $0.removeValue(forKey: endpoint) }
    }

    /// Every slot, for the metrics scrape and the return sweep.
    public static var all: [EndpointHealthSlot] { slots.withLock { Array($0.values) } }

    /// An active health check of `endpoint` passed: an ejection for gateway failures ends now (Envoy's
    /// `successful_active_health_check_uneject_host`), so a restarted pod is back at once. Call it after every pass.
    public static func activeCheckPassed(_ endpoint: Endpoint) {
        let slot = slots.withLock { $0[endpoint] }
        slot?.lift()
    }
}
