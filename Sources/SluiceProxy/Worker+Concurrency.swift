// Proxy layer: Knative's containerConcurrency at the gateway — a slot per concurrent request at each endpoint, shared
// by all workers (EndpointHealthSlot), and a bounded per-revision FIFO of requests waiting for one, served as slots
// free on this worker or, woken, on another.
import SluiceIO
import SluiceRouting
import Synchronization

/// Requests waiting in any revision queue of any worker: a freed slot wakes the other workers only when some wait.
let queuedRequests = Atomic<Int>(0)

/// A request waiting for a concurrency slot: an HTTP/1.1 connection or an HTTP/2 stream, parked before its exchange.
protocol QueuedRequest: AnyObject {
    /// A slot may be free: route the request again (it queues again, at the front, if it loses the slot).
    func resumeRouting()
}

/// One revision's waiting requests on one worker, oldest first.
final class RevisionQueue {
    private var waiting: [QueuedRequest] = []
    private var head = 0
    var count: Int { waiting.count - head }

    func push(_ request: QueuedRequest, front: Bool) {
        if front && head > 0 {
            head -= 1
            waiting[head] = request
        } else if front {
            waiting.insert(request, at: 0)
        } else {
            waiting.append(request)
        }
    }

    func pop() -> QueuedRequest? {
        guard head < waiting.count else { return nil }
        let request = waiting[head]
        head += 1
        if head == waiting.count { waiting.removeAll(keepingCapacity: true); head = 0 }
        return request
    }

    func remove(_ request: QueuedRequest) -> Bool {
        guard let i = waiting[head...].firstIndex(where: { $0 === request }) else { return false }
        waiting.remove(at: i)
        return true
    }
}

/// Runs the queues at the end of the tick in which a slot was freed (not inside the exchange that freed it).
final class QueueKick: DeferredTask {
    unowned(unsafe) let worker: Worker
    var isScheduled = false
    init(worker: Worker) { self.worker = worker }
    func runDeferred() {
        isScheduled = false
        worker.resumeQueued()
    }
}

extension Worker {
    /// Takes a slot for `route` on its endpoint or, when that one is full, on another endpoint of its revision that
    /// is not ejected. False when every endpoint is at the revision's `containerConcurrency`.
    func claimConcurrencySlot(_ route: inout Route) -> Bool {
        let limit = route.revision.containerConcurrency
        if route.pool.health.claimSlot(limit: limit) { route.slot = route.pool.health; return true }
        let now = loop.now
        for index in route.revision.endpointIndices where index < pools.count {
            let pool = pools[index]
            guard pool !== route.pool, !pool.health.isEjected(nowMs: now), pool.health.claimSlot(limit: limit) else { continue }
            route.pool = pool
            route.slot = pool.health
            return true
        }
        return false
    }

    /// Parks `request` in `revision`'s queue; false when the queue is full (its share of `depthPerSlot` ×
    /// containerConcurrency × endpoints on this worker).
    func enqueue(_ request: QueuedRequest, revision: Revision, front: Bool) -> Bool {
        let queue = revisionQueues[revision.metricsID] ?? {
            let queue = RevisionQueue()
            revisionQueues[revision.metricsID] = queue
            return queue
        }()
        let depth = settings.revisionQueue.depthPerSlot * revision.containerConcurrency * max(1, revision.endpointIndices.count)
        let share = max(1, depth / max(1, workerCount))
        guard front || queue.count < share else { return false }
        queue.push(request, front: front)
        queuedRequests.add(1, ordering: .relaxed)
        return true
    }

    /// `request` leaves `revision`'s queue before its turn (timed out, or its client left).
    func dequeue(_ request: QueuedRequest, revision: Revision) {
        if revisionQueues[revision.metricsID]?.remove(request) == true { queuedRequests.subtract(1, ordering: .relaxed) }
    }

    /// An exchange gave its slot back. Requests queued here run at the end of the tick; queued elsewhere, their
    /// workers are woken.
    func concurrencySlotReleased(_ slot: EndpointHealthSlot) {
        slot.releaseSlot()
        guard queuedRequests.load(ordering: .relaxed) > 0 else { return }
        if !queueKick.isScheduled { queueKick.isScheduled = true; loop.runAfterThisBatch(queueKick) }
        for sibling in siblings where sibling !== handle { sibling.waker.withLock { $0?.wake() } }
    }

    /// Gives each queue's oldest requests their turn, as many as find a slot.
    func resumeQueued() {
        for queue in revisionQueues.values {
            var budget = queue.count
            while budget > 0, let request = queue.pop() {
                budget -= 1
                queuedRequests.subtract(1, ordering: .relaxed)
                request.resumeRouting()
                // Lost the slot again: it queued itself at the front; the others wait for the next slot.
                if queue.count >= budget + 1 { break }
            }
        }
    }
}
