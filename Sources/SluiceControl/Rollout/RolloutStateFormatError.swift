// Control layer: a state file written by a newer Sluice than this one.

/// Thrown while decoding `RolloutState` when `formatVersion` is newer than this build reads.
public struct RolloutStateFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public var found: Int
    public var supported: Int

    public var description: String {
        "the rollout state has formatVersion \(found) but this sluice reads up to \(supported): it was written by a newer sluice; refusing to start so it is not overwritten (upgrade sluice or restore a backup)"
    }
}
