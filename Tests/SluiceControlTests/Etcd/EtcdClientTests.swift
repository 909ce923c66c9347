// Tests for the etcd v3 client (SluiceControl/Etcd) against real etcd members on 127.0.0.1 (ports 23000–23099):
// KV, transactions, leases, watches, compaction, failover, authentication and TLS with a client certificate.
import Foundation
import SluiceControl
import XCTest

final class EtcdClientTests: XCTestCase {
    /// One member for the tests that do not stop or reconfigure etcd; each test writes under its own key prefix.
    nonisolated(unsafe) private static var shared: EtcdCluster?
    /// Why the shared member did not start (its log included), for every test that needs it.
    nonisolated(unsafe) private static var sharedFailure = ""

    override class func setUp() {
        super.setUp()
        // Progress notifications every 500 ms (10 minutes by default) so that the watch test sees one quickly.
        do {
            shared = try EtcdCluster(size: 1, basePort: 23000, extraArguments: ["--experimental-watch-progress-notify-interval=500ms"])
        } catch {
            sharedFailure = "\(error)"
        }
    }

    override class func tearDown() {
        shared?.stopAll()
        shared = nil
        super.tearDown()
    }

    private func sharedClient() throws -> EtcdClient {
        guard let cluster = Self.shared else { throw EtcdClusterError(description: "the shared etcd member did not start: \(Self.sharedFailure)") }
        return try EtcdClient(settings: cluster.settings())
    }

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testPutRangePrefixAndDelete() throws {
        let client = try sharedClient()
        let first = try client.put("/t/kv/a", bytes("1"))
        let second = try client.put("/t/kv/b", bytes("2"))
        try client.put("/t/kw", bytes("outside the prefix"))
        XCTAssertGreaterThan(second, first)

        let exact = try client.range("/t/kv/a")
        XCTAssertEqual(exact.keyValues.map(\.key), ["/t/kv/a"])
        XCTAssertEqual(exact.keyValues.first?.value, bytes("1"))
        XCTAssertEqual(exact.keyValues.first?.modRevision, first)
        XCTAssertEqual(exact.keyValues.first?.createRevision, first)
        XCTAssertEqual(exact.keyValues.first?.version, 1)
        XCTAssertGreaterThanOrEqual(exact.revision, second)

        let listed = try client.range("/t/kv/", prefix: true)
        XCTAssertEqual(listed.keyValues.map(\.key), ["/t/kv/a", "/t/kv/b"])
        XCTAssertEqual(try client.range("/t/missing").keyValues, [])

        // An old revision still shows the first value.
        try client.put("/t/kv/a", bytes("1b"))
        XCTAssertEqual(try client.range("/t/kv/a", revision: first).keyValues.first?.value, bytes("1"))
        XCTAssertEqual(try client.range("/t/kv/a").keyValues.first?.version, 2)

        let deletion = try client.delete("/t/kv/", prefix: true)
        XCTAssertGreaterThan(deletion, second)
        XCTAssertEqual(try client.range("/t/kv/", prefix: true).keyValues, [])
        XCTAssertEqual(try client.range("/t/kw").keyValues.count, 1)
        try client.delete("/t/kw")
        XCTAssertEqual(try client.range("/t/kw").keyValues, [])
    }

    func testTransactionOnModRevisionLetsOneOfTwoWritersWin() throws {
        let client = try sharedClient()
        let created = try client.put("/t/txn/owner", bytes("nobody"))
        // Both writers read revision `created`; only the first compare-and-swap can still match it.
        let first = try client.transaction(compare: [.modRevision(key: "/t/txn/owner", equals: created)],
                                           success: [.put(key: "/t/txn/owner", value: bytes("writer-1"))],
                                           failure: [.range(key: "/t/txn/owner")])
        let second = try client.transaction(compare: [.modRevision(key: "/t/txn/owner", equals: created)],
                                            success: [.put(key: "/t/txn/owner", value: bytes("writer-2"))],
                                            failure: [.range(key: "/t/txn/owner")])
        XCTAssertTrue(first.succeeded)
        XCTAssertEqual(first.ranges.count, 0)
        XCTAssertFalse(second.succeeded)
        XCTAssertEqual(second.ranges.count, 1)
        XCTAssertEqual(second.ranges.first?.first?.value, bytes("writer-1"))
        XCTAssertEqual(second.ranges.first?.first?.modRevision, first.revision)
        XCTAssertEqual(try client.range("/t/txn/owner").keyValues.first?.value, bytes("writer-1"))
    }

    func testTransactionCreateAndValueComparesAndBothBranches() throws {
        let client = try sharedClient()
        try client.delete("/t/txn2/", prefix: true)
        // Create-if-absent: create revision 0 means the key does not exist.
        let create = try client.transaction(compare: [.createRevision(key: "/t/txn2/lock", equals: 0)],
                                            success: [.put(key: "/t/txn2/lock", value: bytes("me")), .range(key: "/t/txn2/", prefix: true)])
        XCTAssertTrue(create.succeeded)
        XCTAssertEqual(create.ranges.first?.map(\.key), ["/t/txn2/lock"])
        let again = try client.transaction(compare: [.createRevision(key: "/t/txn2/lock", equals: 0)],
                                           success: [.put(key: "/t/txn2/lock", value: bytes("other"))])
        XCTAssertFalse(again.succeeded)
        XCTAssertEqual(again.ranges.count, 0)

        let release = try client.transaction(compare: [.value(key: "/t/txn2/lock", equals: bytes("me"))],
                                             success: [.delete(key: "/t/txn2/lock")],
                                             failure: [.range(key: "/t/txn2/lock")])
        XCTAssertTrue(release.succeeded)
        XCTAssertEqual(try client.range("/t/txn2/lock").keyValues, [])
    }

    func testLeaseKeepAliveThenExpiryRemovesItsKey() throws {
        let client = try sharedClient()
        let lease = try client.grantLease(ttlSeconds: 2)
        XCTAssertNotEqual(lease.id, 0)
        XCTAssertGreaterThanOrEqual(lease.ttl, 2)
        try client.put("/t/lease/alive", bytes("x"), lease: lease.id)
        XCTAssertEqual(try client.range("/t/lease/alive").keyValues.first?.lease, lease.id)
        XCTAssertGreaterThan(try client.keepAlive(lease: lease.id), 0)

        // No more keep-alives: the lease expires within its TTL (plus etcd's checking interval).
        let deadline = Date().addingTimeInterval(10)
        var expired = false
        while Date() < deadline {
            if try client.range("/t/lease/alive").keyValues.isEmpty {
                expired = true
                break
            }
            usleep(100_000)  // polling the expiry, bounded by the deadline
        }
        XCTAssertTrue(expired, "the leased key outlived its lease")
        XCTAssertThrowsError(try client.keepAlive(lease: lease.id)) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .leaseNotFound)
        }
    }

    func testRevokeDeletesTheKeysAttached() throws {
        let client = try sharedClient()
        let lease = try client.grantLease(ttlSeconds: 60)
        try client.put("/t/revoke/a", bytes("1"), lease: lease.id)
        try client.put("/t/revoke/b", bytes("2"), lease: lease.id)
        try client.put("/t/revoke/kept", bytes("3"))
        try client.revokeLease(lease.id)
        XCTAssertEqual(try client.range("/t/revoke/", prefix: true).keyValues.map(\.key), ["/t/revoke/kept"])
        XCTAssertThrowsError(try client.revokeLease(lease.id)) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .leaseNotFound)
        }
        XCTAssertThrowsError(try client.keepAlive(lease: lease.id)) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .leaseNotFound)
        }
    }

    func testWatchDeliversPutsAndDeletesInOrderFromTheStartRevision() throws {
        let client = try sharedClient()
        let start = try client.put("/t/watch/a", bytes("1"))
        try client.put("/t/watch/b", bytes("2"))
        try client.put("/t/watchless", bytes("outside the prefix"))
        try client.delete("/t/watch/a")
        // Started after the writes: history from `start` replays them, then live events follow.
        let watch = try client.watch("/t/watch/", prefix: true, startRevision: start, progressNotify: false)
        defer { watch.cancel() }
        let live = try client.put("/t/watch/c", bytes("3"))

        var events: [EtcdWatchEvent] = []
        var lastRevision: Int64 = 0
        while events.count < 4 {
            let response = try watch.next()
            events += response.events
            lastRevision = response.revision
        }
        XCTAssertEqual(events.map(\.kind), [.put, .put, .delete, .put])
        XCTAssertEqual(events.map(\.keyValue.key), ["/t/watch/a", "/t/watch/b", "/t/watch/a", "/t/watch/c"])
        XCTAssertEqual(events.map(\.keyValue.value), [bytes("1"), bytes("2"), [], bytes("3")])
        XCTAssertEqual(events.first?.keyValue.modRevision, start)
        XCTAssertEqual(events.last?.keyValue.modRevision, live)
        XCTAssertEqual(events.map(\.keyValue.modRevision), events.map(\.keyValue.modRevision).sorted())
        XCTAssertGreaterThanOrEqual(lastRevision, live)
    }

    func testWatchProgressNotificationsCarryTheRevision() throws {
        let client = try sharedClient()
        let revision = try client.put("/t/progress/x", bytes("1"))
        let watch = try client.watch("/t/progress/quiet", startRevision: revision + 1, progressNotify: true)
        defer { watch.cancel() }
        // The shared member notifies every 500 ms; nothing is written under the key, so the response is empty.
        let response = try watch.next()
        XCTAssertEqual(response.events, [])
        XCTAssertGreaterThanOrEqual(response.revision, revision)
    }

    func testCancelUnblocksNextOnAnotherThread() throws {
        let client = try sharedClient()
        let revision = try client.range("/t/cancel").revision
        let watch = try client.watch("/t/cancel", startRevision: revision + 1, progressNotify: false)
        let finished = DispatchSemaphore(value: 0)
        let outcome = OutcomeBox()
        let thread = Thread {
            do {
                _ = try watch.next()
                outcome.text = "next() returned"
            } catch {
                outcome.text = watch.isCanceled ? "canceled" : "threw \(error)"
            }
            finished.signal()
        }
        thread.start()
        // Give next() time to block in its read; the outcome is the same if cancel() comes first.
        XCTAssertEqual(finished.wait(timeout: .now() + 0.3), .timedOut, "next() returned with nothing written")
        let canceledAt = Date()
        watch.cancel()
        XCTAssertEqual(finished.wait(timeout: .now() + 5), .success, "cancel() did not unblock next()")
        XCTAssertLessThan(Date().timeIntervalSince(canceledAt), 2)
        XCTAssertEqual(outcome.text, "canceled")
        XCTAssertThrowsError(try watch.next())
    }

    func testIdleTimeoutEndsAQuietWatch() throws {
        let client = try sharedClient()
        let revision = try client.range("/t/idle").revision
        let watch = try client.watch("/t/idle", startRevision: revision + 1, progressNotify: false, idleTimeoutMilliseconds: 300)
        let started = Date()
        XCTAssertThrowsError(try watch.next()) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .unavailable)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        // With progress notifications more often than the idle timeout, a quiet key keeps the stream alive.
        let notified = try client.watch("/t/idle", startRevision: revision + 1, progressNotify: true, idleTimeoutMilliseconds: 2_000)
        defer { notified.cancel() }
        XCTAssertEqual(try notified.next().events, [])
    }

    func testCompactionMakesOlderRevisionsCompacted() throws {
        let client = try sharedClient()
        let old = try client.put("/t/compact/k", bytes("1"))
        let newer = try client.put("/t/compact/k", bytes("2"))
        try client.compact(revision: newer)
        XCTAssertThrowsError(try client.range("/t/compact/k", revision: old)) { error in
            guard case .compacted = (error as? EtcdError)?.kind else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try client.range("/t/compact/k", revision: newer).keyValues.first?.value, bytes("2"))
        let watch = try client.watch("/t/compact/k", startRevision: old)
        defer { watch.cancel() }
        XCTAssertThrowsError(try watch.next()) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .compacted(compactRevision: newer))
        }
        // Compacting an already compacted revision is etcd's refusal, not a transport failure.
        XCTAssertThrowsError(try client.compact(revision: old)) { error in
            guard case .compacted = (error as? EtcdError)?.kind else { return XCTFail("\(error)") }
        }
    }

    func testFailoverToTheLiveMembersThenUnavailableWhenAllAreDown() throws {
        let cluster = try EtcdCluster(size: 3, basePort: 23010)
        defer { cluster.stopAll() }
        var settings = cluster.settings()
        settings.requestTimeoutMilliseconds = 1_000
        let client = try EtcdClient(settings: settings)
        let written = try client.put("/t/failover", bytes("before"))
        let streaming = try client.watch("/t/failover", startRevision: written + 1, progressNotify: false)

        // The first endpoint (the one that answered) dies: its watch stream breaks, the client moves on to the next.
        cluster.kill(member: 0)
        XCTAssertThrowsError(try streaming.next()) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .unavailable)
            XCTAssertFalse(streaming.isCanceled)
        }
        // Member 0 may have been the leader: the others answer once they have elected another (a second or so, more
        // under a sanitizer on a loaded machine); until then the client says .unavailable, which the plane retries.
        let electionDeadline = Date().addingTimeInterval(15)
        var read = try? client.range("/t/failover")
        while read == nil && Date() < electionDeadline {
            usleep(50_000)  // polling the survivors, bounded by the deadline
            read = try? client.range("/t/failover")
        }
        XCTAssertEqual(read?.keyValues.first?.modRevision, written, cluster.logs)
        try client.put("/t/failover", bytes("after"))
        let watch = try client.watch("/t/failover", startRevision: written, progressNotify: false)
        XCTAssertEqual(try watch.next().events.first?.keyValue.value, bytes("before"))
        watch.cancel()

        // The killed member rejoins on its data dir and catches up.
        try cluster.start(member: 0)
        var only = settings
        only.endpoints = [cluster.clientURLs[0]]
        let deadline = Date().addingTimeInterval(10)
        var caughtUp = false
        while Date() < deadline && !caughtUp {
            caughtUp = (try? EtcdClient(settings: only).range("/t/failover").keyValues.first?.value) == bytes("after")
            if !caughtUp { usleep(50_000) }  // polling the rejoined member, bounded by the deadline
        }
        XCTAssertTrue(caughtUp, cluster.logs)

        cluster.stopAll()
        let started = Date()
        XCTAssertThrowsError(try client.range("/t/failover")) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .unavailable)
            // Each endpoint's reason is named.
            for url in cluster.clientURLs { XCTAssertTrue("\(error)".contains(url), "\(error)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    func testAuthenticationRequiredThenTokenRenewedAfterARestart() throws {
        let cluster = try EtcdCluster(size: 1, basePort: 23020)
        defer { cluster.stopAll() }
        let added = cluster.etcdctl(["user", "add", "root:pw"])
        XCTAssertEqual(added.status, 0, added.output)
        let enabled = cluster.etcdctl(["auth", "enable"])
        XCTAssertEqual(enabled.status, 0, enabled.output)

        let anonymous = try EtcdClient(settings: cluster.settings())
        XCTAssertThrowsError(try anonymous.put("/t/auth", bytes("x"))) { error in
            guard case .failed = (error as? EtcdError)?.kind else { return XCTFail("\(error)") }
        }
        var wrong = cluster.settings()
        wrong.username = "root"
        wrong.password = "wrong"
        XCTAssertThrowsError(try EtcdClient(settings: wrong).range("/t/auth")) { error in
            guard case .failed = (error as? EtcdError)?.kind else { return XCTFail("\(error)") }
        }

        var settings = cluster.settings()
        settings.username = "root"
        settings.password = "pw"
        let client = try EtcdClient(settings: settings)
        let revision = try client.put("/t/auth", bytes("x"))
        XCTAssertEqual(try client.range("/t/auth").keyValues.first?.value, bytes("x"))
        let watch = try client.watch("/t/auth", startRevision: revision, progressNotify: false)
        XCTAssertEqual(try watch.next().events.first?.keyValue.modRevision, revision)
        watch.cancel()

        // Simple tokens live in the member's memory: after a restart the client's token is invalid, and the
        // client authenticates again by itself.
        cluster.healthSettings = { $0.username = "root"; $0.password = "pw" }
        cluster.stop(member: 0)
        try cluster.start(member: 0)
        XCTAssertEqual(try client.range("/t/auth").keyValues.first?.value, bytes("x"), cluster.logs)
    }

    func testTLSWithAClientCertificate() throws {
        let directory = NSTemporaryDirectory() + "sluice-etcd-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try makeCertificates(in: directory)
        let tls = EtcdClusterTLS(certFile: "\(directory)/server.crt", keyFile: "\(directory)/server.key",
                                 caFile: "\(directory)/ca.crt", requiresClientCertificate: true,
                                 clientCertFile: "\(directory)/client.crt", clientKeyFile: "\(directory)/client.key")
        let cluster = try EtcdCluster(size: 1, basePort: 23030, tls: tls, directory: directory + "/cluster")
        defer { cluster.stopAll() }

        let settings = cluster.settings()
        let client = try EtcdClient(settings: settings)
        let revision = try client.put("/t/tls", bytes("secret"))
        XCTAssertEqual(try client.range("/t/tls").keyValues.first?.value, bytes("secret"))
        let watch = try client.watch("/t/tls", startRevision: revision, progressNotify: false)
        XCTAssertEqual(try watch.next().events.first?.keyValue.value, bytes("secret"))
        watch.cancel()

        // Without the client certificate the member refuses the handshake.
        var anonymous = cluster.settings()
        anonymous.certFile = nil
        anonymous.keyFile = nil
        anonymous.requestTimeoutMilliseconds = 2_000
        XCTAssertThrowsError(try EtcdClient(settings: anonymous).range("/t/tls")) { error in
            XCTAssertEqual((error as? EtcdError)?.kind, .unavailable)
        }
        // Nor does a client trust a member whose CA it was not given.
        var untrusting = settings
        untrusting.caFile = "\(directory)/other-ca.crt"
        XCTAssertThrowsError(try EtcdClient(settings: untrusting).range("/t/tls")) { error in
            XCTAssertTrue("\(error)".contains("certificate"), "\(error)")
        }
    }

    func testSettingsAreCheckedWithoutConnecting() {
        XCTAssertThrowsError(try EtcdClient(settings: EtcdSettings(endpoints: [])))
        XCTAssertThrowsError(try EtcdClient(settings: EtcdSettings(endpoints: ["127.0.0.1:2379"])))
        XCTAssertThrowsError(try EtcdClient(settings: EtcdSettings(endpoints: ["http://127.0.0.1:notaport"])))
        var missingCA = EtcdSettings(endpoints: ["https://127.0.0.1:2379"])
        missingCA.caFile = "/nonexistent/ca.pem"
        XCTAssertThrowsError(try EtcdClient(settings: missingCA))
        var halfCredentials = EtcdSettings(endpoints: ["http://127.0.0.1:2379"])
        halfCredentials.username = "root"
        XCTAssertThrowsError(try EtcdClient(settings: halfCredentials))
        XCTAssertNoThrow(try EtcdClient(settings: EtcdSettings(endpoints: ["http://127.0.0.1:2379", "http://[::1]:2379"])))
    }

    /// A CA, a server certificate for IP 127.0.0.1 and a client certificate signed by it, and an unrelated CA.
    private func makeCertificates(in directory: String) throws {
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n".write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: "\(directory)/client.ext", atomically: true, encoding: .utf8)
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + curve + ["-keyout", "\(directory)/\(ca).key", "-out", "\(directory)/\(ca).crt",
                                                   "-days", "2", "-subj", "/CN=Sluice test \(ca)"])
        }
        for leaf in ["server", "client"] {
            try openssl(["req"] + curve + ["-keyout", "\(directory)/\(leaf).key", "-out", "\(directory)/\(leaf).csr", "-subj", "/CN=\(leaf)"])
            try openssl(["x509", "-req", "-in", "\(directory)/\(leaf).csr", "-CA", "\(directory)/ca.crt", "-CAkey", "\(directory)/ca.key",
                         "-CAcreateserial", "-out", "\(directory)/\(leaf).crt", "-days", "2", "-extfile", "\(directory)/\(leaf).ext"])
        }
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw EtcdClusterError(description: "openssl \(arguments.joined(separator: " ")) failed")
        }
    }
}

private final class OutcomeBox: @unchecked Sendable {  // written by the thread before it signals, read after the wait
    var text = ""
}
