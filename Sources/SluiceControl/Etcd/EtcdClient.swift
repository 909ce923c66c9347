// Control layer: etcd's v3 API (KV, transactions, leases, watches) through etcd's HTTP/JSON gateway.
// INTERFACE STUB — the etcd-client helper replaces every body; the signatures are the contract the state store uses.
import Foundation

/// Where etcd is and how to authenticate to it (`stateStore:` in the gateway configuration).
public struct EtcdSettings: Sendable, Equatable {
    /// `http://host:port` or `https://host:port`, tried in order; the next one on a connection failure.
    public var endpoints: [String]
    /// Every key Sluice writes starts with this.
    public var prefix: String = "/sluice/"
    public var username: String? = nil
    public var password: String? = nil
    /// PEM CA bundle to verify an https endpoint with (nil: the system's trust store).
    public var caFile: String? = nil
    /// Client certificate and key for etcd's `--client-cert-auth`.
    public var certFile: String? = nil
    public var keyFile: String? = nil
    /// Connecting and each unary request.
    public var requestTimeoutMilliseconds: Int = 5_000

    public init(endpoints: [String], prefix: String = "/sluice/") {
        self.endpoints = endpoints
        self.prefix = prefix
    }
}

public struct EtcdError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No endpoint answered (connection refused, timed out, no leader): the caller may retry later.
        case unavailable
        /// The revision asked for was compacted away; `compactRevision` is the oldest one still kept.
        case compacted(compactRevision: Int64)
        /// A lease that expired or was revoked.
        case leaseNotFound
        /// etcd answered with an error (authentication, bad request, …).
        case failed(status: Int)
    }
    public var kind: Kind
    public var description: String
    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// One key-value as etcd returns it (keys and values are bytes; the gateway carries them base64).
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var lease: Int64
    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// A transaction's condition on one key.
public enum EtcdCompare: Sendable, Equatable {
    /// The key's mod revision is `revision` (0: the key does not exist).
    case modRevision(key: String, equals: Int64)
    /// The key's create revision is `revision` (0: the key does not exist).
    case createRevision(key: String, equals: Int64)
    /// The key's value is exactly `value`.
    case value(key: String, equals: [UInt8])
}

public enum EtcdOperation: Sendable, Equatable {
    case put(key: String, value: [UInt8], lease: Int64 = 0)
    /// `prefix`: every key starting with `key`.
    case delete(key: String, prefix: Bool = false)
    case range(key: String, prefix: Bool = false)
}

public struct EtcdTransactionResult: Sendable {
    public var succeeded: Bool
    /// The store's revision after the transaction (the header's revision): every key it put has this mod revision.
    public var revision: Int64
    /// For each `.range` operation of the branch that ran, in order, the key-values it read.
    public var ranges: [[EtcdKeyValue]]
}

public struct EtcdWatchEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case put, delete }
    public var kind: Kind
    /// After the event; for a delete, the key with `modRevision` the deleting revision and an empty value.
    public var keyValue: EtcdKeyValue
}

/// One message on a watch stream: events (possibly none, for a progress notification) and the header's revision.
public struct EtcdWatchResponse: Sendable {
    public var events: [EtcdWatchEvent]
    public var revision: Int64
}

/// A running watch; `next()` blocks until the next response. `cancel()` (from any thread) makes a blocked `next()`
/// throw and closes the stream.
public final class EtcdWatch: @unchecked Sendable {
    /// The next response; throws `.compacted` when the start revision was compacted, `.unavailable` when the stream
    /// broke (the caller lists again or watches again from the last revision it saw + 1).
    public func next() throws(EtcdError) -> EtcdWatchResponse { throw EtcdError(.unavailable, "not implemented") }
    public func cancel() {}
}

public final class EtcdClient: Sendable {
    public let settings: EtcdSettings

    /// Checks the settings (files readable, endpoints well formed) without connecting.
    public init(settings: EtcdSettings) throws(EtcdError) {
        self.settings = settings
    }

    /// The keys from `key` (exactly, or every key with that prefix), at `revision` (nil: the latest); also the
    /// store's revision the read was made at.
    public func range(_ key: String, prefix: Bool = false, revision: Int64? = nil) throws(EtcdError) -> (keyValues: [EtcdKeyValue], revision: Int64) {
        throw EtcdError(.unavailable, "not implemented")
    }

    public func transaction(compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) throws(EtcdError) -> EtcdTransactionResult {
        throw EtcdError(.unavailable, "not implemented")
    }

    /// Returns the revision of the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Int64 {
        throw EtcdError(.unavailable, "not implemented")
    }

    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) throws(EtcdError) -> Int64 {
        throw EtcdError(.unavailable, "not implemented")
    }

    /// A lease of `ttlSeconds`; returns its id and the TTL etcd granted.
    public func grantLease(ttlSeconds: Int64) throws(EtcdError) -> (id: Int64, ttl: Int64) {
        throw EtcdError(.unavailable, "not implemented")
    }

    /// Renews the lease once; returns the remaining TTL. Throws `.leaseNotFound` when it expired.
    @discardableResult
    public func keepAlive(lease: Int64) throws(EtcdError) -> Int64 {
        throw EtcdError(.unavailable, "not implemented")
    }

    public func revokeLease(_ lease: Int64) throws(EtcdError) {
        throw EtcdError(.unavailable, "not implemented")
    }

    /// Compacts the history up to `revision` (tests, and an operator's maintenance).
    public func compact(revision: Int64) throws(EtcdError) {
        throw EtcdError(.unavailable, "not implemented")
    }

    /// Watches `key` (or the prefix) from `startRevision` (inclusive); `progressNotify` asks etcd for empty
    /// responses carrying the revision while nothing changes.
    public func watch(_ key: String, prefix: Bool = false, startRevision: Int64, progressNotify: Bool = true) throws(EtcdError) -> EtcdWatch {
        throw EtcdError(.unavailable, "not implemented")
    }
}
