// Routing layer: a small, seedable random source for weighted picks on the hot path.

/// wyrand (Wang Yi): one add and one 64×64→128 multiply per draw, passes BigCrush, and is
/// seedable so tests can replay a sequence. Not for anything security-related.
public struct FastRandom: Sendable {
    var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0xa076_1d64_78bd_642f
        let product = state.multipliedFullWidth(by: state ^ 0xe703_7ed1_a0b4_28db)
        return product.high ^ product.low
    }

    /// True with probability `rate` (0...1): 53 random bits as a double in [0, 1), below `rate`. A rate of 1 is always
    /// true, 0 never (sampling decisions: traces, access log lines).
    public mutating func chance(_ rate: Double) -> Bool {
        Double(next() >> 11) * 0x1p-53 < rate
    }
}
