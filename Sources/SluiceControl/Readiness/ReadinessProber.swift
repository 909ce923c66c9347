// Control layer: active readiness probes of every revision's endpoints (GET /v1/models/{name} or a V2 health path),
// with success/failure thresholds; only endpoints that pass get traffic, so no request lands on a starting pod. It
// tells which endpoints stopped or resumed passing (for their events) and counts probes by result (for /metrics).
import Dispatch
import Foundation
import SluiceBlockingHTTP
import SluiceRouting
import Synchronization

public struct ProbeSettings: Hashable, Sendable {
    /// Path to GET; `{name}` becomes the InferenceService's model name. 200 means ready.
    public var path = "/v1/models/{name}"
    public var periodMs = 1_000
    public var timeoutMs = 1_000
    /// Consecutive passes before a failing endpoint is ready again, and failures before a ready one is not.
    public var successThreshold = 1
    public var failureThreshold = 3
    public init() {}
}

/// What to probe: one endpoint of one revision, with the model name the path needs.
public struct ProbeTarget: Hashable, Sendable {
    public var endpoint: Endpoint
    public var modelName: String
    public init(endpoint: Endpoint, modelName: String) { self.endpoint = endpoint; self.modelName = modelName }
}

public struct ProbeResult: Sendable, Equatable {
    /// False until the first probe of this endpoint has finished.
    public var isProbed: Bool
    public var isReady: Bool
    /// The last failure, for status conditions ("connect refused", "status 503", "timed out").
    public var lastError: String?
}

/// An endpoint that stopped passing its probe (failures reached the threshold) or passes again after that.
public struct ProbeTransition: Sendable, Equatable {
    public var target: ProbeTarget
    public var isReady: Bool
    /// Why it is not ready (nil for one that is ready again).
    public var error: String?
}

/// Probes run for one target since it became a target, for /metrics.
public struct ProbeCounts: Sendable, Equatable {
    public var target: ProbeTarget
    public var successes: UInt64
    public var failures: UInt64
}

public final class ReadinessProber: Sendable {
    private struct EndpointState {
        var isReady = false
        var passes = 0
        var failures = 0
        var lastError: String? = "not probed yet"
        /// Whether the failure threshold was reached since the last ready verdict (an `endpoint.unhealthy` was told).
        var isReportedUnhealthy = false
        var successesTotal: UInt64 = 0
        var failuresTotal: UInt64 = 0
    }

    public let settings: ProbeSettings
    private let state = Mutex<(targets: Set<ProbeTarget>, results: [ProbeTarget: EndpointState])>((Set(), [:]))
    private let onChange: @Sendable ([ProbeTransition]) -> Void
    private let running = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    /// `onChange` runs on the prober's thread after a round in which any endpoint changed readiness, with the
    /// endpoints that became unhealthy or healthy again (possibly none: a first verdict is a change, not a transition).
    public init(settings: ProbeSettings, onChange: @escaping @Sendable ([ProbeTransition]) -> Void) {
        self.settings = settings
        self.onChange = onChange
    }

    /// Replaces the set of endpoints to probe; results for endpoints that stay are kept.
    public func setTargets(_ targets: Set<ProbeTarget>) {
        state.withLock { s in
            s.targets = targets
            s.results = s.results.filter { targets.contains($0.key) }
        }
    }

    public func result(for target: ProbeTarget) -> ProbeResult {
        state.withLock { s in
            guard let r = s.results[target] else { return ProbeResult(isProbed: false, isReady: false, lastError: nil) }
            return ProbeResult(isProbed: true, isReady: r.isReady, lastError: r.isReady ? nil : r.lastError)
        }
    }

    /// Probe counts of every current target, in no particular order.
    public func counts() -> [ProbeCounts] {
        state.withLock { s in
            s.results.map { ProbeCounts(target: $0.key, successes: $0.value.successesTotal, failures: $0.value.failuresTotal) }
        }
    }

    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Thread.detachNewThread { [self] in
            while running.load(ordering: .acquiring) {
                let started = Date()
                probeOnce()
                let elapsed = Int(Date().timeIntervalSince(started) * 1000)
                // Waits out the period, unless `probeSoon` wakes it (a new revision should not wait a period).
                if settings.periodMs > elapsed { _ = wake.wait(timeout: .now() + .milliseconds(settings.periodMs - elapsed)) }
            }
        }
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        wake.signal()
    }

    /// Starts the next round now.
    public func probeSoon() { wake.signal() }

    /// One round: probes every target concurrently, applies the thresholds, and reports whether anything flipped.
    @discardableResult
    public func probeOnce() -> Bool {
        let targets = Array(state.withLock { $0.targets })
        let outcomes = Mutex<[ProbeTarget: String?]>([:])
        DispatchQueue.concurrentPerform(iterations: targets.count) { i in
            let error = probe(targets[i])
            outcomes.withLock { $0[targets[i]] = error }
        }
        let results = outcomes.withLock { $0 }
        let (changed, transitions) = state.withLock { s -> (Bool, [ProbeTransition]) in
            var changed = false
            var transitions: [ProbeTransition] = []
            for (target, error) in results where s.targets.contains(target) {
                let isFirstResult = s.results[target] == nil
                var r = s.results[target] ?? EndpointState()
                let wasReady = r.isReady
                if let error {
                    r.failures += 1
                    r.failuresTotal += 1
                    r.passes = 0
                    r.lastError = error
                    if r.failures >= settings.failureThreshold { r.isReady = false }
                    // Told once per outage: a starting pod's first failures below the threshold are not news.
                    if r.failures == settings.failureThreshold && !r.isReportedUnhealthy {
                        r.isReportedUnhealthy = true
                        transitions.append(ProbeTransition(target: target, isReady: false, error: error))
                    }
                } else {
                    r.passes += 1
                    r.successesTotal += 1
                    r.failures = 0
                    if r.passes >= settings.successThreshold { r.isReady = true }
                    if r.isReady && r.isReportedUnhealthy {
                        r.isReportedUnhealthy = false
                        transitions.append(ProbeTransition(target: target, isReady: true, error: nil))
                    }
                }
                // Readiness flipped, or something new is known: the first verdict on an endpoint, or a not-ready
                // endpoint reaching the failure threshold (its revision's status then says why).
                if r.isReady != wasReady || isFirstResult || (!r.isReady && r.failures == settings.failureThreshold) { changed = true }
                s.results[target] = r
            }
            return (changed, transitions)
        }
        if changed { onChange(transitions) }
        return changed
    }

    /// nil when the endpoint answered 200, else why not.
    private func probe(_ target: ProbeTarget) -> String? {
        let path = settings.path.replacingOccurrences(of: "{name}", with: target.modelName)
        let client = BlockingClient(host: target.endpoint.host, port: target.endpoint.port, timeoutMilliseconds: settings.timeoutMs)
        do {
            let response = try client.send(method: "GET", path: path)
            return response.status == 200 ? nil : "GET \(path) answered \(response.status)"
        } catch {
            return error.description
        }
    }
}
