// Tests for the routing layer's sticky keys: consistent hashing over the split as the canary grows, the key's
// extraction from header and cookie lines, and the setting text.
import SluiceRouting
import XCTest

final class StickyKeyTests: XCTestCase {
    typealias R = RouteTableTests
    static let next = "sklearn-iris-predictor-default-00003"
    static let keyCount = 100_000

    /// The iris service (latest first, as KServe writes it) with a sticky header.
    static func service(latestPercent: Int, name: String = "sklearn-iris") throws -> ServiceRoute {
        var spec = R.iris(name: name, latestPercent: latestPercent)
        spec.stickyKey = .header("x-user-id")
        return try RouteTable(services: [spec], rules: HostRules()).services[0]
    }

    /// The revision a request with `x-user-id: key` gets: the pick with the key's hash as its draw, as the worker does.
    static func revision(of key: String, in service: ServiceRoute) throws -> String {
        let reader = try XCTUnwrap(service.sticky)
        var name = "x-user-id", value = key
        let hash: UInt64? = name.withUTF8 { name in
            value.withUTF8 { value in
                guard case .key(let bytes) = reader.read(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value))
                else { return nil }
                return StickyKey.hash(bytes, seed: reader.seed)
            }
        }
        return service.revisions[try XCTUnwrap(service.pick(try XCTUnwrap(hash)))].name
    }

    static let keys = (0..<keyCount).map { "user-\($0)" }

    /// |count − n·p| within 5σ of Binomial(n, p), σ = √(n·p·(1−p)): a false failure about once in 1.7 million runs
    /// (and the keys are fixed, so the outcome is too: the bound says the hash spreads them as a fair draw would).
    func assertShare(_ count: Int, of n: Int, percent: Int, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = Double(percent) / 100
        let sigma = (Double(n) * p * (1 - p)).squareRoot()
        XCTAssertLessThanOrEqual(abs(Double(count) - Double(n) * p), 5 * sigma,
                                 "\(what): \(count) of \(n) keys, expected \(Double(n) * p) ± \(5 * sigma)", file: file, line: line)
    }

    func testGrowingCanaryMovesKeysOnlyFromThePreviousRevisionToTheCanary() throws {
        var before: [String]?
        var previousPercent = 0
        for percent in [10, 25, 50, 100] {
            let service = try Self.service(latestPercent: percent)
            let now = try Self.keys.map { try Self.revision(of: $0, in: service) }
            assertShare(now.filter { $0 == R.latest }.count, of: Self.keyCount, percent: percent, "canary at \(percent) %")
            if let before {
                var moved = 0
                for (old, new) in zip(before, now) where old != new {
                    XCTAssertEqual(old, R.previous, "a key left the canary when its share grew to \(percent) %")
                    XCTAssertEqual(new, R.latest)
                    moved += 1
                }
                // The keys that move are those between the two shares: Binomial(n, Δp) over all keys.
                assertShare(moved, of: Self.keyCount, percent: percent - previousPercent, "moved at \(previousPercent) → \(percent) %")
            }
            before = now
            previousPercent = percent
        }
        XCTAssertEqual(before?.allSatisfy { $0 == R.latest }, true, "promoted: every key on the latest revision")
    }

    func testAKeyKeepsItsRevisionAtAFixedSplitInEveryRouteTable() throws {
        // Two tables built apart stand for two workers, processes or replicas: the hash has no per-process seed.
        let first = try Self.service(latestPercent: 10), second = try Self.service(latestPercent: 10)
        for key in Self.keys.prefix(10_000) {
            let revision = try Self.revision(of: key, in: first)
            XCTAssertEqual(try Self.revision(of: key, in: first), revision)
            XCTAssertEqual(try Self.revision(of: key, in: second), revision)
        }
    }

    func testTheNextCanaryTakesOnlyKeysFromThePromotedRevision() throws {
        func spec(_ traffic: [TrafficTargetSpec]) -> ServiceSpec {
            var spec = R.iris(latestPercent: 100)
            spec.revisions.append(RevisionSpec(name: Self.next, endpoints: [Endpoint(host: "127.0.0.1", port: 9003)]))
            spec.traffic = traffic
            spec.stickyKey = .header("x-user-id")
            return spec
        }
        // After promotion KServe writes the latest target alone; the next canary comes first, the promoted one `prev`.
        let promoted = try RouteTable(services: [spec([
            TrafficTargetSpec(revisionName: R.latest, percent: 100, tag: "latest", latestRevision: true),
        ])], rules: HostRules()).services[0]
        let nextCanary = try RouteTable(services: [spec([
            TrafficTargetSpec(revisionName: Self.next, percent: 10, tag: "latest", latestRevision: true),
            TrafficTargetSpec(revisionName: R.latest, percent: 90, tag: "prev"),
        ])], rules: HostRules()).services[0]
        var moved = 0
        for key in Self.keys {
            XCTAssertEqual(try Self.revision(of: key, in: promoted), R.latest)
            let now = try Self.revision(of: key, in: nextCanary)
            XCTAssertTrue(now == R.latest || now == Self.next, "\(key) went to \(now)")
            if now == Self.next { moved += 1 }
        }
        assertShare(moved, of: Self.keyCount, percent: 10, "next canary at 10 %")
    }

    func testEachServiceHasItsOwnCanaryUsers() throws {
        // Seeded per service: the users in one service's 10 % canary are not the same users in another's.
        let a = try Self.service(latestPercent: 10, name: "sklearn-iris")
        let b = try Self.service(latestPercent: 10, name: "xgboost-iris")
        var both = 0
        for key in Self.keys where try Self.revision(of: key, in: a) == R.latest && Self.revision(of: key, in: b) == R.latest {
            both += 1
        }
        // Independent: 1 % of keys in both (one seed for all would put 10 % there).
        assertShare(both, of: Self.keyCount, percent: 1, "canary users of both services")
    }

    func testTheHashIsTheDocumentedFunction() {
        // Reference values computed apart (Python: the service seed as FNV-1a of `namespace/name`; the key hashed by
        // 8-byte little-endian words through wyhash's mum, then murmur3's fmix64): replicas running different builds
        // must agree, so a change here would move users between revisions mid-rollout.
        let seed = StickyKey.seed(namespace: "kserve-test", name: "sklearn-iris")
        XCTAssertEqual(seed, 0x6c4a_a746_b699_c331)
        func hash(_ key: String) -> UInt64 {
            var key = key
            return key.withUTF8 { StickyKey.hash(UnsafeRawBufferPointer($0), seed: seed) }
        }
        XCTAssertEqual(hash("user-1"), 0x2133_ace3_9d3b_70c8, "a tail only")
        XCTAssertEqual(hash("abcdefgh"), 0x3c55_abc1_7830_dcfc, "one whole word")
        XCTAssertEqual(hash("5f1c2a9e-7d43-4b8e-9a61-0c2f3e4d5b6a"), 0xe94a_bc27_1a63_9f8d, "words and a tail")
        XCTAssertEqual(hash(""), 0xd85d_4f49_366c_1732)
    }

    // MARK: Extraction

    /// What the worker does: the field lines in order, the first answer other than `.other` decides.
    func key(_ key: StickyKey, _ fields: [(String, String)]) -> String? {
        var spec = R.iris()
        spec.stickyKey = key
        guard let service = try? RouteTable(services: [spec], rules: HostRules()).services[0], let reader = service.sticky else {
            XCTFail("no sticky service")
            return nil
        }
        for (name, value) in fields {
            var name = name, value = value
            let field: String?? = name.withUTF8 { name in
                value.withUTF8 { value in
                    switch reader.read(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value)) {
                    case .other: return .none
                    case .empty: return .some(nil)
                    case .key(let bytes): return .some(String(decoding: bytes, as: UTF8.self))
                    }
                }
            }
            if let field { return withExtendedLifetime(service) { field } }
        }
        return withExtendedLifetime(service) { nil }
    }

    func testHeaderKeyIsTheFirstLineOfItsNameInAnyCase() {
        let header = StickyKey.header("x-user-id")
        XCTAssertEqual(key(header, [("Host", "a"), ("X-User-ID", "alice")]), "alice")
        XCTAssertEqual(key(header, [("x-user-id", "alice"), ("x-user-id", "bob")]), "alice", "duplicate lines: the first wins")
        XCTAssertNil(key(header, [("x-user-id", ""), ("x-user-id", "bob")]), "an empty first line is no key")
        XCTAssertNil(key(header, [("x-user", "alice"), ("x-user-idx", "bob"), ("cookie", "x-user-id=carol")]))
    }

    func testCookieKeyIsTheNamedCookieOfAnyCookieLine() {
        let session = StickyKey.cookie("session")
        XCTAssertEqual(key(session, [("Cookie", "a=1; session=abc; b=2")]), "abc", "several cookies")
        XCTAssertEqual(key(session, [("cookie", "a=1;session=abc")]), "abc", "no space after ;")
        XCTAssertEqual(key(session, [("cookie", " a = 1 ;\tsession = abc ; b=2")]), "abc", "spaces and tabs around")
        XCTAssertEqual(key(session, [("cookie", "session=\"abc\"")]), "abc", "the value without its quotes")
        XCTAssertEqual(key(session, [("cookie", "flag; session=abc")]), "abc", "a pair without = is skipped")
        XCTAssertEqual(key(session, [("cookie", "session=a=b")]), "a=b", "the value runs to the ;")
        XCTAssertEqual(key(StickyKey.cookie("user"), [("cookie", "xuser=1; user=2")]), "2", "the name as a suffix of another")
        XCTAssertEqual(key(StickyKey.cookie("user"), [("cookie", "user2=1; user=2")]), "2", "the name as a prefix of another")
        XCTAssertEqual(key(session, [("cookie", "a=1"), ("x", "session=no"), ("Cookie", "session=late")]), "late",
                       "a Cookie line without the name: the next one")
        XCTAssertEqual(key(session, [("cookie", "session=first; session=second"), ("cookie", "session=third")]), "first")
        XCTAssertNil(key(session, [("cookie", "Session=abc")]), "cookie names are case-sensitive")
        XCTAssertNil(key(session, [("cookie", "session=; a=1"), ("cookie", "session=late")]), "an empty value is no key")
        XCTAssertNil(key(session, [("cookie", "session=\"\"")]), "nor are empty quotes")
        XCTAssertNil(key(session, [("cookie", "sessionid=abc"), ("cookie", "")]))
        XCTAssertNil(key(session, [("set-cookie", "session=abc"), ("session", "abc")]))
    }

    // MARK: Setting text

    func testSettingTextParsesToAKeyAndBack() throws {
        XCTAssertEqual(try StickyKey.parse("header:x-user-id").get(), .header("x-user-id"))
        XCTAssertEqual(try StickyKey.parse("header:X-User-Id").get(), .header("x-user-id"), "header names lowercased")
        XCTAssertEqual(try StickyKey.parse("cookie:Session_ID").get(), .cookie("Session_ID"), "cookie names kept")
        XCTAssertEqual(StickyKey.header("x-user-id").description, "header:x-user-id")
        XCTAssertEqual(StickyKey.cookie("session").description, "cookie:session")
    }

    func testBadSettingTextIsRefusedWithItsReason() {
        func reason(_ text: String) -> String? {
            guard case .failure(let error) = StickyKey.parse(text) else { return nil }
            return error.reason
        }
        let shape = "must be header:NAME or cookie:NAME (e.g. 'header:x-user-id', or 'cookie:session')"
        XCTAssertEqual(reason("x-user-id"), shape)
        XCTAssertEqual(reason("query:user"), shape)
        XCTAssertEqual(reason("Header:x-user-id"), shape)
        XCTAssertEqual(reason(""), shape)
        XCTAssertEqual(reason("header:"), "the header name after 'header:' must not be empty")
        XCTAssertEqual(reason("cookie:"), "the cookie name after 'cookie:' must not be empty")
        XCTAssertEqual(reason("header:x user"),
                       "a header name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. 'x-user-id')")
        XCTAssertEqual(reason("cookie:a=b"),
                       "a cookie name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. 'session')")
        XCTAssertEqual(reason("header:" + String(repeating: "a", count: 257)),
                       "a header name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. 'x-user-id')")
        XCTAssertEqual(reason("header::path"),
                       "a header name must be at most 256 characters of letters, digits or !#$%&'*+-.^_`|~ (an RFC 9110 token, e.g. 'x-user-id')")
        XCTAssertEqual(reason("header:Cookie"), "the whole Cookie field cannot be the key; name one cookie with cookie:NAME")
        XCTAssertNil(reason("header:x-user-id"))
    }
}
