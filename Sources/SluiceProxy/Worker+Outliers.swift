// Proxy layer: passive outlier ejection (what a worker does with an attempt's result: count it on the endpoint's
// shared health, eject within the revision's limit, announce ejections and returns) and the retry budget (how many
// of a revision's active requests on this worker may be retries).
import SluiceIO
import SluiceRouting

/// A revision's active requests and active retries on one worker, indexed by `Revision.metricsID`.
struct RetryLoad {
    var active: Int32 = 0
    var retrying: Int32 = 0
}

extension Worker {
    // MARK: Outlier ejection

    /// A connect failure, a reset or close before any answer, a timeout.
    /// `timedOut`: a connect, response or per-try timeout (an ejection after one gets no trial requests).
    func recordGatewayFailure(_ pool: ConnectionPool, revision: Revision, timedOut: Bool = false) {
        let settings = self.settings.outlierDetection
        if pool.health.recordGatewayFailure(settings, timedOut: timedOut, nowMs: loop.now) { considerEjecting(pool, revision: revision, for5xx: false) }
    }

    /// The pod's final response head: 5xx counts toward ejection, anything else ends the failure run.
    @inline(__always)
    func recordAnswer(_ pool: ConnectionPool, status: Int, revision: Revision) {
        if status >= 500 {
            if pool.health.recordServerError(settings.outlierDetection, nowMs: loop.now) { considerEjecting(pool, revision: revision, for5xx: true) }
        } else {
            pool.health.recordSuccess()
        }
    }

    /// Ejects `pool`'s endpoint unless the revision has as many ejected as it may (`maxEjectionPercent`, always at
    /// least one), or another worker ejected it first.
    private func considerEjecting(_ pool: ConnectionPool, revision: Revision, for5xx: Bool) {
        let settings = self.settings.outlierDetection
        let now = Posix.nowMilliseconds()
        let indices = pool.endpoint.isHTTP2 ? revision.grpcEndpointIndices : revision.endpointIndices
        var ejected = 0
        for index in indices where index < pools.count && pools[index].health.isEjected(nowMs: now) { ejected += 1 }
        let allowed = max(1, indices.count * settings.maxEjectionPercent / 100)
        guard ejected < allowed, let length = pool.health.eject(nowMs: now, for5xx: for5xx, settings) else { return }
        let reason = for5xx ? "\(settings.consecutive5xx) consecutive 5xx answers" : "\(settings.consecutiveGatewayFailures) consecutive gateway failures"
        logLine("endpoint \(pool.endpoint) of revision \(revision.name) ejected for \(length / 1000) s: \(reason)",
                event: "endpoint.ejected", level: .warning,
                fields: ["endpoint": "\(pool.endpoint)", "namespace": revision.namespace, "inferenceservice": revision.serviceName,
                         "revision": revision.name, "reason": for5xx ? "consecutive_5xx" : "consecutive_gateway_failures",
                         "ejectionMs": "\(length)"])
    }

    /// Once a second, from worker 0's sweep: announces the endpoints whose ejection ended.
    func announceReturns(now: Int64) {
        guard now >= nextReturnSweepMs else { return }
        nextReturnSweepMs = now + 1_000
        for slot in EndpointHealth.all {
            guard let byCheck = slot.takeReturn(nowMs: now) else { continue }
            let why = byCheck ? "it answered again (an active health check or a trial request passed)" : "its ejection time is over"
            logLine("endpoint \(slot.endpoint) back in rotation: \(why)", event: "endpoint.returned", level: .info,
                    fields: ["endpoint": "\(slot.endpoint)", "reason": byCheck ? "answered" : "ejection_expired"])
        }
    }

    // MARK: Retry budget

    /// A request starts counting among its revision's active requests (by `Revision.metricsID`).
    @inline(__always)
    func retryLoadBegin(_ id: Int) {
        retryLoads[id].active += 1
    }

    @inline(__always)
    func retryLoadEnd(_ id: Int, wasRetrying: Bool) {
        retryLoads[id].active -= 1
        if wasRetrying { retryLoads[id].retrying -= 1 }
    }

    /// Whether one more of `revision`'s requests may become a retry: active retries stay under `budgetPercent` of
    /// its active requests, or `budgetMinConcurrency`, whichever is more (Envoy's retry budget).
    func retryBudgetAllows(_ id: Int, _ policy: RetryPolicy) -> Bool {
        let load = retryLoads[id]
        let allowed = max(policy.budgetMinConcurrency, Int(load.active) * policy.budgetPercent / 100)
        return Int(load.retrying) < allowed
    }

    /// An active request becomes a retry (counted until it ends).
    func retryLoadStartRetrying(_ id: Int) {
        retryLoads[id].retrying += 1
    }

    /// Makes room in `retryLoads` for every revision of the routes (at install, never per request).
    func growRetryLoads() {
        var highest = -1
        for service in routes.services { for revision in service.revisions { highest = max(highest, revision.metricsID) } }
        if retryLoads.count <= highest { retryLoads.append(contentsOf: repeatElement(RetryLoad(), count: highest + 1 - retryLoads.count)) }
    }
}
