// Proxy layer: the routing phase shared by every downstream protocol — host → service → revision → endpoint
// → upstream connection. HTTP/1.1 passes its Host (or absolute-form authority), HTTP/2 its `:authority`.
import SluiceRouting

/// Where a request goes, or why it cannot go anywhere.
enum RouteDecision {
    case routed(pool: ConnectionPool, upstream: UpstreamConnection, revision: Revision, tag: TagRoute?)
    case refused(ErrorResponse)
}

extension Worker {
    /// Routes one request. `tagHeader` is the value of `Knative-Serving-Tag`, when the request carried one.
    func route(host: UnsafeRawBufferPointer, tagHeader: UnsafeRawBufferPointer?) -> RouteDecision {
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
        guard let pool = pickEndpoint(revision) else { return .refused(.noEndpoint) }
        guard let upstream = pool.acquire() else { return .refused(.upstreamConnectFailed) }
        return .routed(pool: pool, upstream: upstream, revision: revision, tag: tag)
    }

    /// Power of two choices on outstanding requests among the revision's endpoints.
    private func pickEndpoint(_ revision: Revision) -> ConnectionPool? {
        let indices = revision.endpointIndices
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
