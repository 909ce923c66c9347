// Control layer: etcd's v3 API (KV, transactions, leases, watches) through etcd's HTTP/JSON gateway.
// Blocking calls, one HTTP/1.1 connection each (EtcdTransport); the wire encoding is EtcdJSON's.
import Foundation
import Synchronization
import SluiceTLS

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
public final class EtcdWatch: @unchecked Sendable {  // next() from one thread at a time; cancel() touches only `canceled` and the connection's shutdown
    private let connection: EtcdConnection
    private let endpoint: EtcdEndpoint
    /// Decoded body bytes not yet split into messages: the gateway ends each JSON message with a newline, and a
    /// chunk boundary need not fall on one.
    private var pending: [UInt8] = []
    private let canceled = Mutex(false)
    /// Set once the stream failed or ended: every later `next()` throws the same way.
    private var finished: EtcdError?

    /// True once `cancel()` was called: a `.unavailable` from `next()` is then the cancel, not a broken stream.
    public var isCanceled: Bool { canceled.withLock { $0 } }

    init(connection: EtcdConnection, endpoint: EtcdEndpoint, pending: [UInt8]) {
        self.connection = connection
        self.endpoint = endpoint
        self.pending = pending
    }

    deinit { connection.close() }

    /// The next response; throws `.compacted` when the start revision was compacted, `.unavailable` when the stream
    /// broke (the caller lists again or watches again from the last revision it saw + 1).
    public func next() throws(EtcdError) -> EtcdWatchResponse {
        while true {
            if let finished { throw finished }
            if isCanceled { return try finish(EtcdError(.unavailable, "watch canceled")) }
            let message: EtcdJSONObject
            do {
                message = try nextMessage()
            } catch {
                if isCanceled { return try finish(EtcdError(.unavailable, "watch canceled")) }
                return try finish(EtcdError(.unavailable, "watch stream from \(endpoint) broke: \(error.description)"))
            }
            if let failure = message["error"] {
                let object = failure as? EtcdJSONObject ?? [:]
                let text = object["message"] as? String ?? "\(failure)"
                return try finish(EtcdError(.unavailable, "watch stream from \(endpoint): \(text)"))
            }
            guard let result = message["result"] as? EtcdJSONObject else { continue }
            if result["canceled"] as? Bool == true {
                let compactRevision = EtcdJSON.int64(result["compact_revision"])
                if compactRevision != 0 {
                    return try finish(EtcdError(.compacted(compactRevision: compactRevision), "watch start revision compacted; oldest kept: \(compactRevision)"))
                }
                let reason = result["cancel_reason"] as? String ?? "no reason given"
                return try finish(EtcdError(.unavailable, "etcd canceled the watch: \(reason)"))
            }
            // The creation confirmation carries no events and is not a progress notification.
            if result["created"] as? Bool == true { continue }
            let events = (result["events"] as? [Any] ?? []).map(EtcdJSON.watchEvent)
            return EtcdWatchResponse(events: events, revision: EtcdJSON.revision(result))
        }
    }

    public func cancel() {
        canceled.withLock { $0 = true }
        connection.shutdown()
    }

    private func finish(_ error: EtcdError) throws(EtcdError) -> EtcdWatchResponse {
        finished = error
        connection.close()
        throw error
    }

    /// The next newline-terminated JSON object of the chunked body.
    private func nextMessage() throws(EtcdTransportError) -> EtcdJSONObject {
        while true {
            if let newline = pending.firstIndex(of: 10) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.allSatisfy({ $0 == 32 || $0 == 13 }) { continue }
                guard let object = EtcdJSON.decode(line) else {
                    throw EtcdTransportError(description: "not a JSON message: \(String(decoding: line.prefix(80), as: UTF8.self))")
                }
                return object
            }
            guard let chunk = try connection.readChunk() else {
                throw EtcdTransportError(description: "the stream ended")
            }
            pending += chunk
            guard pending.count <= 64 << 20 else { throw EtcdTransportError(description: "watch message over 64 MiB") }
        }
    }
}

public final class EtcdClient: Sendable {
    public let settings: EtcdSettings
    let endpoints: [EtcdEndpoint]
    let tlsContext: TLSClientContext?
    /// The endpoint that answered last (tried first next time) and the authentication token, if any.
    private let state = Mutex<(preferred: Int, token: String?)>((0, nil))

    /// Checks the settings (files readable, endpoints well formed) without connecting.
    public init(settings: EtcdSettings) throws(EtcdError) {
        guard !settings.endpoints.isEmpty else { throw EtcdError(.failed(status: 0), "etcd: no endpoints") }
        var endpoints: [EtcdEndpoint] = []
        for text in settings.endpoints { endpoints.append(try EtcdEndpoint(parsing: text)) }
        if (settings.username == nil) != (settings.password == nil) {
            throw EtcdError(.failed(status: 0), "etcd: a username needs a password and a password a username")
        }
        if (settings.certFile == nil) != (settings.keyFile == nil) {
            throw EtcdError(.failed(status: 0), "etcd: a client certificate needs its key and a key its certificate")
        }
        for file in [settings.caFile, settings.certFile, settings.keyFile].compactMap({ $0 }) where access(file, R_OK) != 0 {
            throw EtcdError(.failed(status: 0), "etcd: cannot read \(file): \(String(cString: strerror(errno)))")
        }
        if endpoints.contains(where: \.isTLS) {
            do {
                tlsContext = try TLSClientContext(caFile: settings.caFile, certificateFile: settings.certFile, keyFile: settings.keyFile)
            } catch {
                throw EtcdError(.failed(status: 0), "etcd TLS: \(error.description)")
            }
            // OpenSSL writes with write(2), which raises SIGPIPE on a reset connection; the gateway ignores it
            // already (Posix), a CLI or test process using this client might not.
            _ = signal(SIGPIPE, SIG_IGN)
        } else {
            tlsContext = nil
        }
        self.endpoints = endpoints
        self.settings = settings
    }

    /// The keys from `key` (exactly, or every key with that prefix), at `revision` (nil: the latest); also the
    /// store's revision the read was made at. A compacted `revision` throws `.compacted` with compactRevision 0:
    /// etcd's range error does not say which revision is the oldest kept.
    public func range(_ key: String, prefix: Bool = false, revision: Int64? = nil) throws(EtcdError) -> (keyValues: [EtcdKeyValue], revision: Int64) {
        let response = try call("/v3/kv/range", EtcdJSON.rangeRequest(key, prefix: prefix, revision: revision))
        return (EtcdJSON.keyValues(response), EtcdJSON.revision(response))
    }

    public func transaction(compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) throws(EtcdError) -> EtcdTransactionResult {
        let request: EtcdJSONObject = [
            "compare": compare.map(EtcdJSON.compare),
            "success": success.map(EtcdJSON.operation),
            "failure": failure.map(EtcdJSON.operation),
        ]
        let response = try call("/v3/kv/txn", request)
        // proto3 JSON leaves `succeeded: false` out.
        let succeeded = response["succeeded"] as? Bool ?? false
        let ranges = (response["responses"] as? [Any] ?? []).compactMap { item -> [EtcdKeyValue]? in
            guard let range = (item as? EtcdJSONObject)?["response_range"] as? EtcdJSONObject else { return nil }
            return EtcdJSON.keyValues(range)
        }
        return EtcdTransactionResult(succeeded: succeeded, revision: EtcdJSON.revision(response), ranges: ranges)
    }

    /// Returns the revision of the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Int64 {
        EtcdJSON.revision(try call("/v3/kv/put", EtcdJSON.putRequest(key, value, lease: lease)))
    }

    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) throws(EtcdError) -> Int64 {
        EtcdJSON.revision(try call("/v3/kv/deleterange", EtcdJSON.deleteRequest(key, prefix: prefix)))
    }

    /// A lease of `ttlSeconds`; returns its id and the TTL etcd granted.
    public func grantLease(ttlSeconds: Int64) throws(EtcdError) -> (id: Int64, ttl: Int64) {
        let response = try call("/v3/lease/grant", ["TTL": String(ttlSeconds)])
        return (EtcdJSON.int64(response["ID"]), EtcdJSON.int64(response["TTL"]))
    }

    /// Renews the lease once; returns the remaining TTL. Throws `.leaseNotFound` when it expired.
    @discardableResult
    public func keepAlive(lease: Int64) throws(EtcdError) -> Int64 {
        // The gateway maps the LeaseKeepAlive stream to one request and one `{"result": …}` message; an unknown
        // lease is not an error there but a TTL of 0 (left out).
        let response = try call("/v3/lease/keepalive", ["ID": String(lease)])
        let ttl = EtcdJSON.int64((response["result"] as? EtcdJSONObject)?["TTL"])
        guard ttl > 0 else { throw EtcdError(.leaseNotFound, "etcd lease \(lease) expired or was revoked") }
        return ttl
    }

    public func revokeLease(_ lease: Int64) throws(EtcdError) {
        // etcd 3.4 serves LeaseRevoke at /v3/lease/revoke (and the older /v3/kv/lease/revoke).
        _ = try call("/v3/lease/revoke", ["ID": String(lease)])
    }

    /// Compacts the history up to `revision` (tests, and an operator's maintenance). `physical`: returns only
    /// once the compaction was applied to the backend, so that a watch from an older revision fails at once.
    public func compact(revision: Int64) throws(EtcdError) {
        _ = try call("/v3/kv/compaction", ["revision": String(revision), "physical": true])
    }

    /// Watches `key` (or the prefix) from `startRevision` (inclusive); `progressNotify` asks etcd for empty
    /// responses carrying the revision while nothing changes (every `--experimental-watch-progress-notify-interval`,
    /// 10 minutes by default). `idleTimeoutMilliseconds` (0: none) makes `next()` throw `.unavailable` when no
    /// message arrives for that long: with progress notifications a little longer than their interval, it tells a
    /// member that hangs (a partition, a stopped process) from a quiet key.
    public func watch(_ key: String, prefix: Bool = false, startRevision: Int64, progressNotify: Bool = true,
                      idleTimeoutMilliseconds: Int = 0) throws(EtcdError) -> EtcdWatch {
        var create: EtcdJSONObject = ["key": EtcdJSON.base64(key), "start_revision": String(startRevision)]
        if prefix { create["range_end"] = EtcdJSON.base64(EtcdJSON.prefixEnd(key)) }
        if progressNotify { create["progress_notify"] = true }
        let body = EtcdJSON.encode(["create_request": create])
        return try onSomeEndpoint { endpoint, token throws(EtcdAttemptError) -> EtcdWatch in
            // Connecting, the head and the creation message are bounded by the request timeout; then the stream
            // waits as long as nothing happens (a reset or a cancel ends it).
            let connection = try attemptConnection(endpoint, readTimeoutMilliseconds: settings.requestTimeoutMilliseconds)
            var pending: [UInt8] = []
            do {
                try connection.sendPost(path: "/v3/watch", body: body, token: token)
                let head = try connection.readHead()
                guard head.status == 200, head.isChunked else {
                    let rest = (try? connection.readBody(head)) ?? []
                    throw Self.classify(status: head.status, EtcdJSON.decode(rest) ?? [:], endpoint: endpoint)
                }
                // The first message confirms the creation, or says why etcd refused it (an invalid token).
                while pending.firstIndex(of: 10) == nil {
                    guard let chunk = try connection.readChunk() else {
                        throw EtcdTransportError(description: "\(endpoint): the watch stream ended before its creation")
                    }
                    pending += chunk
                }
            } catch let error as EtcdTransportError {
                throw .transport(error.description)
            } catch let error as EtcdAttemptError {
                throw error
            } catch {
                throw .transport("\(endpoint): \(error)")
            }
            let newline = pending.firstIndex(of: 10)!  // the loop above ends only with a newline in `pending`
            let first = EtcdJSON.decode(Array(pending[..<newline])) ?? [:]
            if let result = first["result"] as? EtcdJSONObject, result["canceled"] as? Bool == true, EtcdJSON.int64(result["compact_revision"]) == 0 {
                let reason = result["cancel_reason"] as? String ?? "no reason given"
                throw Self.classify(status: 200, ["error": reason, "message": reason], endpoint: endpoint)
            }
            connection.setReadTimeout(milliseconds: max(0, idleTimeoutMilliseconds))
            return EtcdWatch(connection: connection, endpoint: endpoint, pending: pending)
        }
    }

    // MARK: Calls and failover

    /// One unary call: the response object, or the error etcd or every endpoint gave.
    func call(_ path: String, _ request: EtcdJSONObject) throws(EtcdError) -> EtcdJSONObject {
        let body = EtcdJSON.encode(request)
        return try onSomeEndpoint { endpoint, token throws(EtcdAttemptError) -> EtcdJSONObject in
            try exchange(endpoint, path: path, body: body, token: token)
        }
    }

    private func attemptConnection(_ endpoint: EtcdEndpoint, readTimeoutMilliseconds: Int) throws(EtcdAttemptError) -> EtcdConnection {
        do {
            return try EtcdConnection(endpoint: endpoint, tlsContext: tlsContext, timeoutMilliseconds: settings.requestTimeoutMilliseconds, readTimeoutMilliseconds: readTimeoutMilliseconds)
        } catch {
            throw .transport(error.description)
        }
    }

    private func exchange(_ endpoint: EtcdEndpoint, path: String, body: [UInt8], token: String?) throws(EtcdAttemptError) -> EtcdJSONObject {
        let connection = try attemptConnection(endpoint, readTimeoutMilliseconds: settings.requestTimeoutMilliseconds)
        defer { connection.close() }
        let status: Int
        let responseBody: [UInt8]
        do {
            try connection.sendPost(path: path, body: body, token: token)
            let head = try connection.readHead()
            status = head.status
            responseBody = try connection.readBody(head)
        } catch {
            throw .transport(error.description)
        }
        guard let object = EtcdJSON.decode(responseBody) else {
            if status == 503 { throw .transport("\(endpoint): HTTP 503") }
            throw .etcd(EtcdError(.failed(status: status), "etcd \(endpoint)\(path): HTTP \(status), not JSON: \(String(decoding: responseBody.prefix(120), as: UTF8.self))"))
        }
        if status == 200 && object["error"] == nil { return object }
        throw Self.classify(status: status, object, endpoint: endpoint)
    }

    /// What etcd's error means for the caller: another endpoint may answer (no leader, overloaded), the token
    /// must be renewed, or it is the answer (a missing lease, a compacted revision, a bad request).
    static func classify(status: Int, _ object: EtcdJSONObject, endpoint: EtcdEndpoint) -> EtcdAttemptError {
        let message = object["message"] as? String ?? object["error"] as? String ?? "HTTP \(status)"
        let code = EtcdJSON.int64(object["code"])
        let text = "etcd \(endpoint): \(message)"
        // gRPC codes: 14 Unavailable, 16 Unauthenticated, 5 NotFound.
        let retryable = ["no leader", "too many requests", "leader changed", "request timed out", "not capable", "server stopped"]
        if status == 503 || code == 14 || retryable.contains(where: message.contains) { return .transport(text) }
        if code == 16 || message.contains("invalid auth token") || message.contains("auth token is expired") { return .invalidToken(text) }
        if message.contains("lease not found") { return .etcd(EtcdError(.leaseNotFound, text)) }
        if message.contains("required revision has been compacted") { return .etcd(EtcdError(.compacted(compactRevision: 0), text)) }
        return .etcd(EtcdError(.failed(status: status), text))
    }

    /// Runs `attempt` on the endpoints in order from the one that answered last: a connection failure or an
    /// unavailable member moves on to the next, an invalid token is renewed once. All failed: `.unavailable`
    /// naming each endpoint's error.
    private func onSomeEndpoint<Result>(_ attempt: (EtcdEndpoint, String?) throws(EtcdAttemptError) -> Result) throws(EtcdError) -> Result {
        let start = state.withLock { $0.preferred }
        var failures: [String] = []
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            var renewedToken = false
            while true {
                do {
                    let token = try currentToken(endpoint, renew: renewedToken)
                    let result = try attempt(endpoint, token)
                    state.withLock { $0.preferred = index }
                    return result
                } catch {
                    switch error {
                    case .transport(let text):
                        failures.append(text)
                    case .invalidToken(let text):
                        if !renewedToken && settings.username != nil {
                            renewedToken = true
                            continue
                        }
                        throw EtcdError(.failed(status: 401), text)
                    case .etcd(let etcdError):
                        throw etcdError
                    }
                }
                break
            }
        }
        throw EtcdError(.unavailable, "no etcd endpoint answered: " + failures.joined(separator: "; "))
    }

    /// The token to send (nil without a username), authenticating on `endpoint` when there is none or `renew`.
    private func currentToken(_ endpoint: EtcdEndpoint, renew: Bool) throws(EtcdAttemptError) -> String? {
        guard let username = settings.username, let password = settings.password else { return nil }
        if !renew, let token = state.withLock({ $0.token }) { return token }
        let body = EtcdJSON.encode(["name": username, "password": password])
        let response = try exchange(endpoint, path: "/v3/auth/authenticate", body: body, token: nil)
        guard let token = response["token"] as? String, !token.isEmpty else {
            throw .etcd(EtcdError(.failed(status: 200), "etcd \(endpoint): authentication gave no token (is auth enabled?)"))
        }
        state.withLock { $0.token = token }
        return token
    }
}

/// One endpoint's attempt: try the next endpoint, renew the token, or give etcd's answer to the caller.
enum EtcdAttemptError: Error {
    case transport(String)
    case invalidToken(String)
    case etcd(EtcdError)
}
