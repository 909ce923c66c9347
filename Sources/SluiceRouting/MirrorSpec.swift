// Routing layer: traffic mirroring (shadow) of a service — the share of its default host's requests copied to one
// revision (the latest ready one, for a canary or a dark launch), as configured and as the hot path reads it.

/// A service's mirror as configured: `percent` of the default host's requests (0 < percent ≤ 100, decimals allowed)
/// are also sent to `revisionName`, whose answers are read and discarded.
public struct MirrorSpec: Hashable, Sendable {
    public var revisionName: String
    public var percent: Double

    public init(revisionName: String, percent: Double) {
        self.revisionName = revisionName
        self.percent = percent
    }
}

/// A built mirror: the target revision's index in its service and the share as a threshold on a 64-bit draw, so
/// that the decision per request is one draw and one compare.
public struct MirrorRoute: Sendable {
    public let revisionIndex: Int
    /// A draw below this is mirrored (`UInt64.max` for 100 %).
    let threshold: UInt64
    public let percent: Double

    init(revisionIndex: Int, percent: Double) {
        self.revisionIndex = revisionIndex
        self.percent = percent
        threshold = percent >= 100 ? .max : UInt64(percent / 100 * 0x1p64)
    }

    /// Whether the request with this draw is mirrored. Allocation-free.
    @inline(__always)
    public func mirrors(_ random: UInt64) -> Bool { threshold == .max || random < threshold }

    /// Checks `spec` against its service's revisions (`revisionIndexByName`), for RouteTable.
    static func build(_ spec: MirrorSpec, revisionIndexByName: [String: Int], path: String) throws(RouteTableError) -> MirrorRoute {
        guard let index = revisionIndexByName[spec.revisionName] else {
            throw RouteTableError(path: "\(path).mirror.revision", reason: "unknown revision \(spec.revisionName), not in \(path).revisions")
        }
        guard spec.percent > 0 && spec.percent <= 100 else {
            throw RouteTableError(path: "\(path).mirror.percent", reason: "\(spec.percent) is outside (0, 100]")
        }
        return MirrorRoute(revisionIndex: index, percent: spec.percent)
    }
}
