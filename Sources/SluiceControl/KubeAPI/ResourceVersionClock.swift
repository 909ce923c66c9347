// Control layer: the store's resource version — one monotonic counter over every object, as the Kubernetes API
// server takes etcd's revision: counted here with the file store, etcd's own revision with the etcd store.

/// The value every change of an object is stamped with. `current` is the store's version (a list's
/// `metadata.resourceVersion`); each changed object gets `next()`, so versions never repeat and always grow.
public struct ResourceVersionClock: Codable, Equatable, Sendable {
    /// A fresh store (or a state file from before resource versions) starts here.
    public static let initial: UInt64 = 1

    public private(set) var current: UInt64

    public init(current: UInt64 = ResourceVersionClock.initial) {
        self.current = current
    }

    /// The next version, now the store's.
    public mutating func next() -> UInt64 {
        current += 1
        return current
    }

    /// With the etcd store: the revision etcd reported (a write's, a watch's), never going back.
    public mutating func advance(to version: UInt64) {
        current = max(current, version)
    }

    public init(from decoder: any Decoder) throws {
        current = try decoder.singleValueContainer().decode(UInt64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(current)
    }
}
