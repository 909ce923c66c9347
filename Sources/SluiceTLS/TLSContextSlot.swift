// Protocol layer: where a reload publishes a new TLSContext for every worker to pick up at its next accept.
import Synchronization

/// Holds the current TLS generation. `publish` is atomic: once it returns, every new handshake on every
/// worker uses the new context; established connections keep theirs (an SSL holds a reference on its SSL_CTX,
/// and a TLSSession on its TLSContext).
public final class TLSContextSlot: Sendable {
    private let current: Mutex<TLSContext>
    /// Bumped after each publish, so that workers read the lock only when something changed.
    private let generation = Atomic<Int>(0)

    public init(_ context: TLSContext) { current = Mutex(context) }

    public func publish(_ context: TLSContext) {
        current.withLock { slot in
            slot = context
            generation.wrappingAdd(1, ordering: .releasing)
        }
    }

    public var context: TLSContext { current.withLock { $0 } }

    /// A worker's view: one atomic load per accepted connection, the lock only after a publish.
    public struct Reader {
        private let slot: TLSContextSlot
        private var seen: Int
        private var cached: TLSContext

        public init(_ slot: TLSContextSlot) {
            self.slot = slot
            seen = slot.generation.load(ordering: .acquiring)
            cached = slot.context
        }

        public mutating func context() -> TLSContext {
            let now = slot.generation.load(ordering: .acquiring)
            if now != seen {
                cached = slot.context
                seen = now
            }
            return cached
        }
    }
}
