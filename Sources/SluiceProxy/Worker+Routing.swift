// Proxy layer: the routing phase shared by every downstream protocol — host → service → revision → endpoint
// → upstream connection. HTTP/1.1 passes its Host (or absolute-form authority), HTTP/2 its `:authority`.
import SluiceRouting

/// Where a request goes, or why it cannot go anywhere.
enum RouteDecision {
    case routed(pool: ConnectionPool, upstream: UpstreamConnection, revision: Revision, tag: TagRoute?)
    /// A gRPC request: to an h2c endpoint's pool, multiplexed on one of its HTTP/2 connections.
    case routedH2(pool: ConnectionPool, revision: Revision, tag: TagRoute?)
    /// Not routed; `revision` (and `tag`) when the refusal came after the pick (no ready endpoint, a connect that
    /// failed at once), so that the request is counted and logged under the revision it was meant for.
    case refused(ErrorResponse, revision: Revision? = nil, tag: TagRoute? = nil)
}

extension Worker {
    /// Routes one request. `tagHeader` is the value of `Knative-Serving-Tag`, when the request carried one.
    /// gRPC requests (`isGRPC`) go to the revision's h2c endpoints, everything else to its HTTP/1.1 endpoints.
    func route(host: UnsafeRawBufferPointer, tagHeader: UnsafeRawBufferPointer?, isGRPC: Bool = false) -> RouteDecision {
        guard let match = routes.match(host: host) else { return .refused(.unknownHost) }
        let service = match.service
        var tag = match.tag
        if tag == nil && routes.rules.tagHeaderRouting, let tagHeader {
            tag = service.tag(named: tagHeader)
        }
        let revisionIndex: Int
        if let tag {
            revisionIndex = tag.revisionIndex
        } else if let picked = service.pick(random.next()) {
            revisionIndex = picked
        } else {
            return .refused(.noRevision)
        }
        let revision = service.revisions[revisionIndex]
        if isGRPC {
            guard !revision.grpcEndpointIndices.isEmpty else {
                return .refused(revision.endpointIndices.isEmpty ? .noEndpoint : .noGRPCEndpoint, revision: revision, tag: tag)
            }
            return .routedH2(pool: pickEndpoint(revision.grpcEndpointIndices)!, revision: revision, tag: tag)
        }
        guard let pool = pickEndpoint(revision.endpointIndices) else { return .refused(.noEndpoint, revision: revision, tag: tag) }
        guard let upstream = pool.acquire() else { return .refused(.upstreamConnectFailed, revision: revision, tag: tag) }
        return .routed(pool: pool, upstream: upstream, revision: revision, tag: tag)
    }

    /// Power of two choices on outstanding requests among the revision's endpoints.
    private func pickEndpoint(_ indices: [Int]) -> ConnectionPool? {
        switch indices.count {
        case 0:
            return nil
        case 1:
            return pools[indices[0]]
        default:
            let r = random.next()
            let a = Int(truncatingIfNeeded: r % UInt64(indices.count))
            var b = Int(truncatingIfNeeded: (r >> 32) % UInt64(indices.count - 1))
            if b >= a { b += 1 }
            let pa = pools[indices[a]], pb = pools[indices[b]]
            return pb.outstanding < pa.outstanding ? pb : pa
        }
    }
}
