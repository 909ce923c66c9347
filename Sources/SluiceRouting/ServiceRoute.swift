// Routing layer: one service ready for the hot path: its revisions, tags and weighted split.

/// A built service. Immutable, shared by all workers; a config change builds a new one.
public final class ServiceRoute: Sendable {
    public let name: String
    public let namespace: String
    public let revisions: [Revision]
    /// One per tagged traffic target, percent 0 included.
    public let tags: [TagRoute]
    /// The traffic split as configured, for status pages and debugging.
    public let traffic: [TrafficTargetSpec]
    /// Running sums of the percents of targets above 0 %, so a pick is one multiply and a short scan.
    let cumulativePercents: [Int]
    /// `weightedRevisions[i]` is the revision index of the target ending at `cumulativePercents[i]`.
    let weightedRevisions: [Int]
    /// Every host registered for this service, in registration order.
    let hosts: [String]
    /// The service's own retry policy; nil: the gateway's.
    public let retries: RetryPolicy?
    /// The request key whose hash replaces the random draw of `pick`; nil: none.
    public let stickyKey: StickyKey?
    /// `stickyKey` ready for the request path; its bytes are freed with this service.
    public let sticky: StickyKeyReader?
    /// The share of the default host's requests mirrored, and to which revision (MirrorSpec.swift); nil: none.
    public let mirror: MirrorRoute?

    init(name: String, namespace: String, revisions: [Revision], tags: [TagRoute],
         traffic: [TrafficTargetSpec], revisionIndexOfTarget: [Int], hosts: [String], retries: RetryPolicy? = nil,
         stickyKey: StickyKey? = nil, mirror: MirrorRoute? = nil) {
        self.name = name
        self.namespace = namespace
        self.revisions = revisions
        self.tags = tags
        self.traffic = traffic
        self.hosts = hosts
        self.retries = retries
        self.stickyKey = stickyKey
        sticky = stickyKey.map { StickyKeyReader($0, seed: StickyKey.seed(namespace: namespace, name: name)) }
        self.mirror = mirror
        var sums: [Int] = []
        var targets: [Int] = []
        var total = 0
        // 0 % targets are left out of the split entirely (they stay reachable by tag), so a
        // draw can never land on them, not even at a boundary.
        for (target, revisionIndex) in zip(traffic, revisionIndexOfTarget) where target.percent > 0 {
            total += target.percent
            sums.append(total)
            targets.append(revisionIndex)
        }
        cumulativePercents = sums
        weightedRevisions = targets
    }

    deinit {
        sticky?.deallocate()
    }

    /// Picks a revision index for a request on a default host: each target above 0 % gets its
    /// percent's share of `random`'s range, in traffic order. Nil when no target has a share. Allocation-free.
    ///
    /// Sticky keys rely on that order: `random` is then the key's hash (`StickyKey.hash`), and the first target owns the
    /// low end of the range. KServe writes the `latest` (canary) target first (`ServiceRecord.controllerTraffic`), so
    /// as its share grows 10 → 25 %, exactly the keys in [10 %, 25 %) move from the previous revision to the canary
    /// and no key ever moves back; after promotion (100 % latest) every key is on it, and the next canary at 10 %
    /// takes the keys in [0, 10 %) from it. A static service that lists its canary first gets the same.
    public func pick(_ random: UInt64) -> Int? {
        guard let total = cumulativePercents.last else { return nil }
        // Multiply-high maps the 64-bit draw onto 0..<total without the bias of `%` (Lemire).
        let point = Int(truncatingIfNeeded: random.multipliedFullWidth(by: UInt64(total)).high)
        for index in cumulativePercents.indices where point < cumulativePercents[index] {
            return weightedRevisions[index]
        }
        preconditionFailure("point \(point) is below the last running sum \(total) by construction")
    }

    /// Picks among the targets above 0 % other than `excluded` (a revision that cannot serve: every endpoint ejected,
    /// or tried already), by their percents. Nil when no other target has a share.
    public func pick(_ random: UInt64, excluding excluded: Int) -> Int? {
        var total = 0, previous = 0
        for (index, sum) in cumulativePercents.enumerated() {
            if weightedRevisions[index] != excluded { total += sum - previous }
            previous = sum
        }
        guard total > 0 else { return nil }
        var point = Int(truncatingIfNeeded: random.multipliedFullWidth(by: UInt64(total)).high)
        previous = 0
        for (index, sum) in cumulativePercents.enumerated() {
            defer { previous = sum }
            guard weightedRevisions[index] != excluded else { continue }
            if point < sum - previous { return weightedRevisions[index] }
            point -= sum - previous
        }
        preconditionFailure("point below the total of the remaining shares by construction")
    }

    /// The tag named by a `Knative-Serving-Tag` header value, compared case-insensitively.
    /// Linear: services carry two or three tags. Allocation-free.
    public func tag(named bytes: UnsafeRawBufferPointer) -> TagRoute? {
        for route in tags where route.key.count == bytes.count {
            var isEqual = true
            for (offset, byte) in bytes.enumerated() where ASCII.lowercased(byte) != route.key[offset] {
                isEqual = false
                break
            }
            if isEqual { return route }
        }
        return nil
    }

    /// Convenience over `tag(named:)` for config-time callers and tests.
    public func tag(named tag: String) -> TagRoute? {
        var tag = tag
        return tag.withUTF8 { self.tag(named: UnsafeRawBufferPointer($0)) }
    }
}
