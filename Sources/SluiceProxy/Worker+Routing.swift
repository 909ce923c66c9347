// Proxy layer: the routing phase shared by every downstream protocol — host → service → revision → endpoint
// → upstream connection — and the choice of each retry's endpoint. HTTP/1.1 passes its Host (or absolute-form
// authority), HTTP/2 its `:authority`.
import SluiceHTTP1
import SluiceRouting

/// Where a request goes, or why it cannot go anywhere.
enum RouteDecision {
    case routed(Route, upstream: UpstreamConnection)
    /// A gRPC request: to an h2c endpoint's pool, multiplexed on one of its HTTP/2 connections.
    case routedH2(pool: ConnectionPool, revision: Revision, tag: TagRoute?, service: ServiceRoute)
    /// Not routed; `revision` (and `tag`) when the refusal came after the pick (no ready endpoint, a connect that
    /// failed at once), so that the request is counted and logged under the revision it was meant for.
    case refused(ErrorResponse, revision: Revision? = nil, tag: TagRoute? = nil)
    /// Every endpoint of the revision is at its containerConcurrency: the request waits in the revision's queue.
    case queued(revision: Revision, tag: TagRoute?)
}

/// A routed request's targets: what its Exchange starts with, and what a retry chooses from.
struct Route {
    /// unowned(unsafe): read only while `generation` is the worker's (its route table, which holds the service, is
    /// the one installed), or in the tick it was routed in; a counted reference would cost every request two atomic
    /// operations on a cache line all workers share.
    unowned(unsafe) let service: ServiceRoute
    var revisionIndex: Int
    var revision: Revision
    let tag: TagRoute?
    var pool: ConnectionPool
    /// The endpoints tried so far (connects that failed at once during routing included).
    var tried = TriedEndpoints()
    /// The worker's route generation the indices above belong to.
    let generation: Int
    /// The concurrency slot held at `pool`'s endpoint (revisions with a containerConcurrency only).
    var slot: EndpointHealthSlot?
}

/// The last few endpoints a request tried, so that a retry goes elsewhere; a fixed inline ring, no allocation.
struct TriedEndpoints {
    private var slots: (ObjectIdentifier?, ObjectIdentifier?, ObjectIdentifier?, ObjectIdentifier?) = (nil, nil, nil, nil)
    /// Attempts made (every one, even past the four remembered).
    private(set) var count = 0

    mutating func add(_ pool: ConnectionPool) {
        let id = ObjectIdentifier(pool)
        switch count & 3 {
        case 0: slots.0 = id
        case 1: slots.1 = id
        case 2: slots.2 = id
        default: slots.3 = id
        }
        count += 1
    }

    @inline(__always)
    func contains(_ pool: ConnectionPool) -> Bool {
        guard count > 0 else { return false }
        let id = ObjectIdentifier(pool)
        return slots.0 == id || slots.1 == id || slots.2 == id || slots.3 == id
    }
}

extension Worker {
    /// Routes one request. `tagHeader` is the value of `Knative-Serving-Tag`, when the request carried one;
    /// `fields` (spans into `fieldBytes`) are read only for a service with a sticky key.
    /// gRPC requests (`isGRPC`) go to the revision's h2c endpoints, everything else to its HTTP/1.1 endpoints.
    /// A connect that fails at once is retried here on another endpoint, as the service's retry policy allows.
    func route(host: UnsafeRawBufferPointer, tagHeader: UnsafeRawBufferPointer?, fields: [HeaderField] = [],
               fieldBytes: UnsafeRawPointer? = nil, isGRPC: Bool = false) -> RouteDecision {
        guard let match = routes.match(host: host) else { return .refused(.unknownHost) }
        let service = match.service
        var tag = match.tag
        if tag == nil && routes.rules.tagHeaderRouting, let tagHeader {
            tag = service.tag(named: tagHeader)
        }
        let revisionIndex: Int
        if let tag {
            revisionIndex = tag.revisionIndex
        } else if let picked = service.pick(stickyDraw(service, fields: fields, fieldBytes: fieldBytes) ?? random.next()) {
            revisionIndex = picked
        } else {
            return .refused(.noRevision)
        }
        let revision = service.revisions[revisionIndex]
        if isGRPC {
            guard !revision.grpcEndpointIndices.isEmpty else {
                return .refused(revision.endpointIndices.isEmpty ? .noEndpoint : .noGRPCEndpoint, revision: revision, tag: tag)
            }
            return .routedH2(pool: pickEndpoint(revision.grpcEndpointIndices, tried: TriedEndpoints(), skipEjected: true)
                                 ?? pickEndpoint(revision.grpcEndpointIndices, tried: TriedEndpoints(), skipEjected: false)!,
                             revision: revision, tag: tag, service: service)
        }
        guard !revision.endpointIndices.isEmpty else { return .refused(.noEndpoint, revision: revision, tag: tag) }
        var route = Route(service: service, revisionIndex: revisionIndex, revision: revision, tag: tag,
                          pool: pools[revision.endpointIndices[0]], generation: routeGeneration)
        guard nextTarget(&route) else { return .refused(.noEndpoint, revision: revision, tag: tag) }
        while true {
            if route.revision.containerConcurrency > 0 && route.slot == nil {
                guard claimConcurrencySlot(&route) else { return .queued(revision: route.revision, tag: tag) }
            }
            route.tried.add(route.pool)
            if let upstream = route.pool.acquire() { return .routed(route, upstream: upstream) }
            // Refused at once (loopback, or a local error): never reached the pod.
            if let slot = route.slot { concurrencySlotReleased(slot); route.slot = nil }
            recordGatewayFailure(route.pool, revision: route.revision)
            let retries = service.retries ?? settings.retries  // read on this path only: it is a large value
            guard retries.retryOn.contains(.connectFailure), route.tried.count <= retries.attempts,
                  retryBudgetAllows(revision.metricsID, retries), nextTarget(&route) else {
                return .refused(.upstreamConnectFailed, revision: route.revision, tag: tag)
            }
        }
    }

    /// The hash of the request's sticky key, which `pick` then takes for its draw (the same key, the same revision
    /// while the split holds); nil without a sticky key for the service or a key in the request. Allocation-free.
    @inline(__always)
    private func stickyDraw(_ service: ServiceRoute, fields: [HeaderField], fieldBytes: UnsafeRawPointer?) -> UInt64? {
        guard let sticky = service.sticky, let fieldBytes else { return nil }
        for field in fields {
            switch sticky.read(name: UnsafeRawBufferPointer(start: fieldBytes + field.name.start, count: field.name.count),
                               value: UnsafeRawBufferPointer(start: fieldBytes + field.value.start, count: field.value.count)) {
            case .other: continue
            case .empty: return nil
            case .key(let key): return StickyKey.hash(key, seed: sticky.seed)
            }
        }
        return nil
    }

    /// Moves `route` to the endpoint of its next attempt: one of its revision's not tried yet and not ejected; else,
    /// for a request that no tag pins, one of another revision by the split's shares; else (every endpoint ejected:
    /// Envoy's panic mode) any not tried yet; else, all tried, any of its revision's again (a revision of one pod:
    /// the same pod on a fresh connection). False only for a revision without endpoints.
    func nextTarget(_ route: inout Route) -> Bool {
        // The routes were swapped since: the indices mean other endpoints now. The same endpoint again.
        guard route.generation == routeGeneration else { return true }
        let indices = route.revision.endpointIndices
        if let pool = pickEndpoint(indices, tried: route.tried, skipEjected: true) {
            route.pool = pool
            return true
        }
        if route.tag == nil, route.service.revisions.count > 1,
           let other = route.service.pick(random.next(), excluding: route.revisionIndex) {
            let revision = route.service.revisions[other]
            if let pool = pickEndpoint(revision.endpointIndices, tried: route.tried, skipEjected: true) {
                route.revisionIndex = other
                route.revision = revision
                route.pool = pool
                return true
            }
        }
        guard let pool = pickEndpoint(indices, tried: route.tried, skipEjected: false)
                ?? pickEndpoint(indices, tried: TriedEndpoints(), skipEjected: false) else { return false }
        route.pool = pool
        return true
    }

    /// Power of two choices among the revision's endpoints not tried yet (and, with `skipEjected`, not ejected), on
    /// outstanding requests plus a penalty for recent consecutive failures, so that a pod that fails fast does not
    /// look idle. Nil when no endpoint qualifies.
    func pickEndpoint(_ indices: [Int], tried: TriedEndpoints, skipEjected: Bool) -> ConnectionPool? {
        let now = loop.now
        /// 0: not usable; 1: usable; 2: ejected, and this request is its trial of the second (it wins the draw: its
        /// failure count would otherwise keep it losing every comparison, and it never be tried).
        @inline(__always) func usable(_ pool: ConnectionPool) -> Int {
            guard !tried.contains(pool) else { return 0 }
            guard skipEjected, pool.health.isEjected(nowMs: now) else { return 1 }
            return pool.health.takeTrial(nowMs: now) ? 2 : 0  // retried elsewhere if it fails
        }
        @inline(__always) func load(_ pool: ConnectionPool) -> Int {
            pool.outstanding + 4 * pool.health.recentFailures(nowMs: now)
        }
        switch indices.count {
        case 0:
            return nil
        case 1:
            let pool = pools[indices[0]]
            return usable(pool) > 0 ? pool : nil
        default:
            let r = random.next()
            let a = Int(truncatingIfNeeded: r % UInt64(indices.count))
            var b = Int(truncatingIfNeeded: (r >> 32) % UInt64(indices.count - 1))
            if b >= a { b += 1 }
            let pa = pools[indices[a]], pb = pools[indices[b]]
            switch (usable(pa), usable(pb)) {
            case (2, _): return pa
            case (_, 2): return pb
            case (1, 1): return load(pb) < load(pa) ? pb : pa
            case (1, _): return pa
            case (_, 1): return pb
            default:
                // Both drawn are out: the least loaded of the rest, if any (a trial first).
                var best: ConnectionPool?
                for index in indices where index != indices[a] && index != indices[b] {
                    let pool = pools[index]
                    switch usable(pool) {
                    case 2: return pool
                    case 1: if best.map({ load(pool) < load($0) }) ?? true { best = pool }
                    default: continue
                    }
                }
                return best
            }
        }
    }
}
