// Control layer: active health checks of every endpoint that has one (manifest revisions always, static services
// when configured), each with its own path, period, timeout and thresholds; only endpoints that pass get traffic, so
// no request lands on a starting or dead pod. The check follows the endpoint's kind: HTTP/1.1 GET for plain and
// https:// (over TLS, verified as the data plane verifies), gRPC health for h2c:// and h2://. It tells which
// endpoints stopped or resumed passing (for their events) and counts checks by result (for /metrics).
import Dispatch
import Foundation
import SluiceIO
import SluiceProxy
import SluiceRouting
import SluiceTLS
import Synchronization

public struct ProbeSettings: Hashable, Sendable {
    /// Path to GET; `{name}` becomes the InferenceService's model name. 200 means ready. gRPC endpoints ignore it:
    /// they get `grpc.health.v1.Health/Check` (or KServe V2 `ModelReady` for that model name).
    public var path = "/v1/models/{name}"
    public var periodMs = 1_000
    public var timeoutMs = 1_000
    /// Consecutive passes before a failing endpoint is ready again, and failures before a ready one is not.
    public var successThreshold = 1
    public var failureThreshold = 3
    public init() {}
}

/// What to check: one endpoint of one service, with the model name the path needs and how to check it. Two
/// services (or revisions) checking the same endpoint the same way share one target.
public struct ProbeTarget: Hashable, Sendable {
    public var endpoint: Endpoint
    public var modelName: String
    public var settings: ProbeSettings
    public init(endpoint: Endpoint, modelName: String, settings: ProbeSettings = ProbeSettings()) {
        self.endpoint = endpoint
        self.modelName = modelName
        self.settings = settings
    }

    /// The path with the model name in it.
    var path: String { settings.path.replacingOccurrences(of: "{name}", with: modelName) }
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

    private struct Targets {
        var targets: Set<ProbeTarget> = []
        var results: [ProbeTarget: EndpointState] = [:]
        /// When each target is checked next (its period after its last check started); a new target is due at once.
        var due: [ProbeTarget: ContinuousClock.Instant] = [:]
    }

    private let state = Mutex(Targets())
    /// How pods on https:// and h2:// endpoints are verified: the data plane's `upstreamTLS`, with the client
    /// contexts made from it (remade when it changes, as each worker does).
    private let tls = Mutex<(settings: UpstreamTLSSettings, http11: TLSClientContext?, h2: TLSClientContext?, error: String?)>((UpstreamTLSSettings(), nil, nil, nil))
    private let onChange: @Sendable ([ProbeTransition]) -> Void
    private let running = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)

    /// `onChange` runs on the prober's thread after a round in which any endpoint changed readiness, with the
    /// endpoints that became unhealthy or healthy again (possibly none: a first verdict is a change, not a transition).
    public init(upstreamTLS: UpstreamTLSSettings = UpstreamTLSSettings(), onChange: @escaping @Sendable ([ProbeTransition]) -> Void) {
        self.onChange = onChange
        tls.withLock { $0.settings = upstreamTLS }
        // OpenSSL writes to a TLS check's socket with write(2) (its close_notify too): a pod that went away must be
        // an EPIPE, not the end of the process, also where no gateway has set this up yet.
        Posix.ignoreSIGPIPE()
    }

    /// The data plane's upstream TLS settings changed (a reload): later checks verify with them.
    public func setUpstreamTLS(_ settings: UpstreamTLSSettings) {
        tls.withLock { tls in
            guard tls.settings != settings else { return }
            tls = (settings, nil, nil, nil)  // made again at the next TLS check
        }
    }

    /// The client context for `offer` (made at first use, from the CA file), the server name, or why there is none.
    private func clientContext(_ offer: TLSClientContext.Offer) -> (TLSClientContext?, String?, String?) {
        tls.withLock { tls in
            if tls.http11 == nil && tls.error == nil {
                do {
                    tls.http11 = try TLSClientContext(caFile: tls.settings.caFile, offer: .http11)
                    tls.h2 = try TLSClientContext(caFile: tls.settings.caFile, offer: .h2)
                } catch {
                    tls.error = "upstreamTLS.caFile: \(error)"
                }
            }
            return (offer == .h2 ? tls.h2 : tls.http11, tls.settings.serverName, tls.error)
        }
    }

    /// Replaces the set of endpoints to probe; results for endpoints that stay are kept.
    public func setTargets(_ targets: Set<ProbeTarget>) {
        state.withLock { s in
            s.targets = targets
            s.results = s.results.filter { targets.contains($0.key) }
            s.due = s.due.filter { targets.contains($0.key) }
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
                probeDue()
                // Sleeps until the next target is due, unless `probeSoon` wakes it (a new revision should not wait).
                let next = state.withLock { s in s.targets.map { s.due[$0] ?? .now }.min() }
                let wait = next.map { ContinuousClock.now.duration(to: $0) } ?? .seconds(1)
                if wait > .zero {
                    let (seconds, attoseconds) = min(wait, .seconds(1)).components
                    _ = wake.wait(timeout: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000) + 1))
                }
            }
        }
    }

    public func stop() {
        running.store(false, ordering: .releasing)
        wake.signal()
    }

    /// Starts the next round now (for the targets that are due: new ones are).
    public func probeSoon() { wake.signal() }

    /// Checks every target now, whether due or not (tests, and a first verdict); reports whether anything flipped.
    @discardableResult
    public func probeOnce() -> Bool {
        probe(Array(state.withLock { $0.targets }))
    }

    /// Checks the targets whose period has run out.
    @discardableResult
    private func probeDue() -> Bool {
        let now = ContinuousClock.now
        let due = state.withLock { s in s.targets.filter { (s.due[$0] ?? now) <= now } }
        guard !due.isEmpty else { return false }
        return probe(Array(due))
    }

    /// One round over `targets`: checks them concurrently, applies their thresholds, and reports whether anything
    /// flipped.
    private func probe(_ targets: [ProbeTarget]) -> Bool {
        let started = ContinuousClock.now
        state.withLock { s in
            for target in targets { s.due[target] = started + .milliseconds(target.settings.periodMs) }
        }
        let outcomes = Mutex<[ProbeTarget: String?]>([:])
        DispatchQueue.concurrentPerform(iterations: targets.count) { i in
            let error = check(targets[i])
            // An ejection by the data plane's outlier detection ends at the first pass (Envoy's
            // successful_active_health_check_uneject_host).
            if error == nil { EndpointHealth.activeCheckPassed(targets[i].endpoint) }
            outcomes.withLock { $0[targets[i]] = error }
        }
        let results = outcomes.withLock { $0 }
        let (changed, transitions) = state.withLock { s -> (Bool, [ProbeTransition]) in
            var changed = false
            var transitions: [ProbeTransition] = []
            for (target, error) in results where s.targets.contains(target) {
                let settings = target.settings
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

    /// nil when the endpoint passed its check, else why not. The kind of check follows the endpoint's protocol.
    private func check(_ target: ProbeTarget) -> String? {
        let endpoint = target.endpoint
        let deadline = ContinuousClock.now + .milliseconds(target.settings.timeoutMs)
        let isHTTP2 = endpoint.isHTTP2
        let what = isHTTP2 ? "gRPC health check" : "GET \(target.path)"
        let isTLS = endpoint.upstreamProtocol == .https || endpoint.upstreamProtocol == .h2
        let (context, serverName, tlsError) = isTLS ? clientContext(endpoint.upstreamProtocol == .h2 ? .h2 : .http11) : (nil, nil, nil)
        if let tlsError { return "\(what): \(tlsError)" }
        let connection: ProbeConnection
        do throws(ProbeFailure) {
            connection = try ProbeConnection(endpoint, clientContext: context, serverName: serverName, deadline: deadline)
        } catch {
            return "\(what): \(error.description)"
        }
        defer { connection.close() }
        return isHTTP2 ? GRPCHealthProbe.check(connection, modelName: target.modelName)
                       : HTTPProbe.check(connection, path: target.path)
    }
}
