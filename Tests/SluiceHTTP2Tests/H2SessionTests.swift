// Unit tests of H2Session (the server side of HTTP/2) with no socket and no gateway: an nghttp2 client, or frames
// made by hand, on one side; a recording delegate on the other; bytes shuttled in memory.
import CNGHTTP2
import SluiceHTTP2
import SluiceIO
import XCTest

final class H2SessionTests: XCTestCase {
    // MARK: Preface and SETTINGS

    func testTheServerPrefaceCarriesOurSettingsAndOpensTheConnectionWindow() {
        let server = ServerRecorder()
        let first = H2Frame.parse(serverOutput(server)).frames
        // RFC 9113 §3.4: the server preface is a SETTINGS frame; ours says 100 streams, a 65 535-byte stream window,
        // a 64 KiB header list, no push, a 4 KiB HPACK table and no RFC 7540 priorities.
        XCTAssertEqual(first.first?.type, H2Frame.settings)
        XCTAssertEqual(first.first?.flags, 0)
        let entries = Dictionary(uniqueKeysWithValues: (first.first?.settingsEntries ?? []).map { ($0.id, $0.value) })
        XCTAssertEqual(entries, [0x3: 100, 0x4: 65_535, 0x6: 65_536, 0x2: 0, 0x1: 4096, 0x9: 1])
        // Then the connection window grows from the default 65 535 to 1 MiB.
        XCTAssertEqual(first.dropFirst().first?.type, H2Frame.windowUpdate)
        XCTAssertEqual(first.dropFirst().first?.streamId, 0)
        XCTAssertEqual(first.dropFirst().first?.windowIncrement, UInt32(1 << 20) - 65_535)
    }

    func testAClientSeesOurSettingsAndItsOwnSettingsAreAcknowledged() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.remoteSetting(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 100)
        XCTAssertEqual(client.remoteSetting(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 65_535)
        XCTAssertEqual(client.remoteSetting(NGHTTP2_SETTINGS_ENABLE_PUSH), 0)
        XCTAssertEqual(client.remoteSetting(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 65_536)
        XCTAssertEqual(client.remoteWindow(0), 1 << 20)
        XCTAssertTrue(client.frames.contains { $0.type == H2Frame.settings && $0.flags == H2Frame.ack }, "client SETTINGS not acknowledged")
        XCTAssertTrue(server.events.isEmpty)
        XCTAssertFalse(server.session.wantsWrite)
        XCTAssertTrue(server.session.wantsRead)
    }

    // MARK: Requests in

    func testARequestsHeadersAndBodyReachTheDelegateInOrder() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        let body = Array("{\"instances\": [[1, 2]]}".utf8)
        let post = client.request("POST", "/v1/models/m:predict", headers: [("content-type", "application/json"), ("content-length", "\(body.count)")], body: body)
        let get = client.request("GET", "/v2/health/ready")
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(post, 1)
        XCTAssertEqual(get, 3)
        let postFields: [ServerRecorder.Event] = [(":method", "POST"), (":scheme", "http"), (":path", "/v1/models/m:predict"), (":authority", "example.test"),
                                                  ("content-type", "application/json"), ("content-length", "\(body.count)")].map { .header(1, $0.0, $0.1) }
        let getFields: [ServerRecorder.Event] = [(":method", "GET"), (":scheme", "http"), (":path", "/v2/health/ready"), (":authority", "example.test")].map { .header(3, $0.0, $0.1) }
        // Each stream: opened, its fields (pseudo-headers first), the head's end, then the body and END_STREAM. (The
        // client may interleave the streams: nghttp2 sends both HEADERS before the first DATA.)
        XCTAssertEqual(server.events.filter { $0.streamId == post }, [.opened(1)] + postFields + [.headersComplete(1, endStream: false), .data(1, body), .ended(1)])
        XCTAssertEqual(server.events.filter { $0.streamId == get }, [.opened(3)] + getFields + [.headersComplete(3, endStream: true)])
        XCTAssertEqual(server.events.count, postFields.count + getFields.count + 6)
    }

    // MARK: Responses out

    func testAResponseBodyIsPulledFromTheDelegateAndEndsTheStream() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        let id = client.request("GET", "/")
        XCTAssertTrue(pump(client, server))
        server.respond(id, status: 200, headers: [("Content-Type", "application/json"), ("X-Model", "iris")], hasBody: true)
        XCTAssertTrue(pump(client, server))
        // Nothing buffered yet: the head went out, the body waits (deferred), the stream stays open.
        XCTAssertEqual(client.responses[id]?.status, 200)
        XCTAssertEqual(client.responses[id]?.header("content-type"), "application/json", "names are lower-cased")
        XCTAssertEqual(client.responses[id]?.header("x-model"), "iris")
        XCTAssertTrue(server.deferredReads.contains(id))
        XCTAssertEqual(client.responses[id]?.isClosed, false)
        server.provide(id, Array("{\"predictions\":".utf8), isComplete: false)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.responses[id]?.isClosed, false)
        server.provide(id, Array(" [1]}".utf8), isComplete: true)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.responses[id]?.body, Array("{\"predictions\": [1]}".utf8))
        XCTAssertEqual(client.responses[id]?.isClosed, true)
        XCTAssertEqual(client.responses[id]?.errorCode, 0)
        XCTAssertEqual(server.closeCode(id), 0)
        let data = client.frames.filter { $0.type == H2Frame.data && $0.streamId == id }
        XCTAssertEqual((data.last?.flags ?? 0) & H2Frame.endStream, H2Frame.endStream, "the last DATA frame ends the stream")
    }

    /// A value unique to each response (a request id) goes out HPACK-never-indexed: it does not enter the client's
    /// dynamic table, where it would only evict the fields that repeat; those stay indexed.
    func testUniqueValuesAreSentNeverIndexedAndLeaveTheDynamicTableAlone() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        var tableSizes: [Int] = []
        for i in 0..<3 {
            let id = client.request("GET", "/")
            XCTAssertTrue(pump(client, server))
            server.respond(id, status: 200, headers: [("content-type", "application/json")],
                           unindexed: [("x-request-id", "5f1c2a9e-7d43-4c1b-9d7e-\(1000 + i)")], hasBody: false)
            XCTAssertTrue(pump(client, server))
            XCTAssertEqual(client.responses[id]?.header("x-request-id"), "5f1c2a9e-7d43-4c1b-9d7e-\(1000 + i)")
            XCTAssertEqual(client.responses[id]?.neverIndexed, ["x-request-id"])
            tableSizes.append(client.dynamicTableSize)
        }
        // content-type entered the table with the first response; nothing after it did.
        XCTAssertGreaterThan(tableSizes[0], 0)
        XCTAssertEqual(Set(tableSizes).count, 1, "the table kept its size: \(tableSizes)")
    }

    func testTrailersFollowTheBodyAndCarryEndStream() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        let id = client.request("POST", "/pkg.Service/Method", headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 0])
        XCTAssertTrue(pump(client, server))
        server.respond(id, status: 200, headers: [("content-type", "application/grpc")], hasBody: true)
        server.provide(id, [0, 0, 0, 0, 1, 7], isComplete: true, trailers: [("grpc-status", "0"), ("grpc-message", "")])
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.responses[id]?.body, [0, 0, 0, 0, 1, 7])
        XCTAssertEqual(client.responses[id]!.trailers.map { "\($0.0)=\($0.1)" }, ["grpc-status=0", "grpc-message="])
        XCTAssertEqual(client.responses[id]?.isClosed, true)
        XCTAssertEqual(client.responses[id]?.errorCode, 0)
        let streamFrames = client.frames.filter { $0.streamId == id }
        XCTAssertTrue(streamFrames.filter { $0.type == H2Frame.data }.allSatisfy { $0.flags & H2Frame.endStream == 0 }, "END_STREAM is on the trailers")
        XCTAssertEqual(streamFrames.last?.type, H2Frame.headers)
        XCTAssertEqual((streamFrames.last?.flags ?? 0) & H2Frame.endStream, H2Frame.endStream)
    }

    // MARK: Flow control

    func testTheStreamWindowReopensOnlyByWhatWasConsumed() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        // A body longer than the 65 535-byte stream window, with more to come.
        let id = client.request("POST", "/upload", body: Array(repeating: 0x61, count: 70_000), isComplete: false)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(server.body(id).count, 65_535, "the client stops at the stream window")
        XCTAssertEqual(client.remoteWindow(id), 0)
        XCTAssertEqual(client.remoteWindow(0), (1 << 20) - 65_535)
        // Not consumed: no WINDOW_UPDATE, however long the client waits.
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.remoteWindow(id), 0)
        XCTAssertFalse(client.frames.contains { $0.type == H2Frame.windowUpdate && $0.streamId == id })
        // Under half the window consumed: still nothing (nghttp2 batches updates).
        server.session.consume(id, 20_000)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.remoteWindow(id), 0)
        XCTAssertEqual(server.body(id).count, 65_535)
        // 40 000 consumed in all: exactly that much window comes back, and the client sends exactly that much more.
        server.session.consume(id, 20_000)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.frames.filter { $0.streamId == id }.compactMap(\.windowIncrement), [40_000])
        XCTAssertEqual(server.body(id).count, 70_000)
        XCTAssertEqual(client.remoteWindow(id), 40_000 - (70_000 - 65_535))
        client.appendBody(id, Array(repeating: 0x62, count: 50_000), isComplete: true)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(server.body(id).count, 65_535 + 40_000)
        XCTAssertEqual(client.remoteWindow(id), 0)
        XCTAssertFalse(server.events.contains(.ended(id)), "the end is still behind the window")
        // The connection window (1 MiB) never reached its update threshold either.
        XCTAssertEqual(client.remoteWindow(0), (1 << 20) - 65_535 - 40_000)
    }

    // MARK: Our own header limits

    func testOneFieldOverTheCountLimitResetsThatStreamOnly() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        // Four pseudo-headers + 96 fields = 100, the limit: accepted. One more: refused.
        let atLimit = client.request("GET", "/", headers: (0..<96).map { ("x-f\($0)", "v") })
        let over = client.request("GET", "/", headers: (0..<97).map { ("x-g\($0)", "v") })
        let after = client.request("GET", "/after")
        XCTAssertTrue(pump(client, server))
        assertOnlyStreamRefused(server, client, accepted: [atLimit, after], refused: over)
        XCTAssertEqual(server.headers(atLimit).count, 100)
    }

    func testOneByteOverTheHeaderListLimitResetsThatStreamOnly() {
        // RFC 9113 §6.5.2 sizes: name + value + 32 per field. The pseudo-headers of `request` are 177 bytes; 32 copies
        // of a 2 037-byte field (indexed by HPACK, so the block stays small on the wire) and a pad reach 65 536.
        let big = ("x-big", String(repeating: "b", count: 2000))
        func fields(pad: Int) -> [(String, String)] { Array(repeating: big, count: 32) + [("x-pad", String(repeating: "p", count: pad))] }
        XCTAssertEqual(177 + 32 * (5 + 2000 + 32) + 5 + 138 + 32, 65_536)
        let server = ServerRecorder()
        let client = H2PeerClient()
        let atLimit = client.request("GET", "/", headers: fields(pad: 138))
        let over = client.request("GET", "/", headers: fields(pad: 139))
        let after = client.request("GET", "/after")
        XCTAssertTrue(pump(client, server))
        assertOnlyStreamRefused(server, client, accepted: [atLimit, after], refused: over)
    }

    private func assertOnlyStreamRefused(_ server: ServerRecorder, _ client: H2PeerClient, accepted: [Int32], refused: Int32,
                                         file: StaticString = #filePath, line: UInt = #line) {
        for id in accepted {
            XCTAssertTrue(server.events.contains(.headersComplete(id, endStream: true)), "stream \(id) refused", file: file, line: line)
        }
        // The refused stream opened, never completed, and was reset with INTERNAL_ERROR (nghttp2's word for a callback's refusal).
        XCTAssertTrue(server.opened(refused), file: file, line: line)
        XCTAssertFalse(server.events.contains { if case .headersComplete(refused, _) = $0 { true } else { false } }, file: file, line: line)
        XCTAssertEqual(client.resets(refused), [H2ErrorCode.internalError.rawValue], file: file, line: line)
        XCTAssertEqual(client.responses[refused]?.isClosed, true, file: file, line: line)
        XCTAssertEqual(server.closeCode(refused), H2ErrorCode.internalError.rawValue, file: file, line: line)
        // The connection lives on.
        XCTAssertTrue(client.goAways.isEmpty, "\(client.goAways)", file: file, line: line)
        XCTAssertNil(server.session.terminatedReason, file: file, line: line)
        XCTAssertFalse(server.session.isGoingAway, file: file, line: line)
    }

    // MARK: Resets and the end of the connection

    func testAClientsResetReachesTheDelegateWithItsCode() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        let id = client.request("POST", "/upload", headers: [("content-length", "100")], body: [1, 2, 3], isComplete: false)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(server.body(id), [1, 2, 3])
        XCTAssertNil(server.closeCode(id))
        client.reset(id, code: H2ErrorCode.cancel.rawValue)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(server.closeCode(id), H2ErrorCode.cancel.rawValue)
        XCTAssertFalse(server.events.contains(.ended(id)))
    }

    func testGracefulShutdownSendsTwoGoAwaysAndInFlightStreamsStillComplete() {
        let server = ServerRecorder()
        let client = H2PeerClient()
        let first = client.request("GET", "/a")
        let second = client.request("GET", "/b")
        XCTAssertTrue(pump(client, server))
        server.session.announceShutdown()
        XCTAssertTrue(server.session.isGoingAway)
        XCTAssertTrue(pump(client, server))
        // RFC 9113 §6.8: first a notice with the largest id, then (a round trip later) the last stream processed.
        XCTAssertEqual(client.goAways.map(\.lastStreamId), [0x7FFF_FFFF])
        server.session.goAway()
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.goAways.map(\.lastStreamId), [0x7FFF_FFFF, second])
        XCTAssertEqual(client.goAways.map(\.errorCode), [0, 0])
        // Streams at or below the last id are still answered.
        server.respond(first, status: 200, hasBody: false)
        server.respond(second, status: 204, hasBody: false)
        XCTAssertTrue(pump(client, server))
        XCTAssertEqual(client.responses[first]?.status, 200)
        XCTAssertEqual(client.responses[second]?.status, 204)
        XCTAssertNil(server.session.terminatedReason)
    }

    func testAStreamAfterTheLastOneOfAGoAwayIsNotOpened() {
        let server = ServerRecorder()
        var bytes = H2Frame.preface + H2Frame(type: H2Frame.settings).bytes + requestHeaders(stream: 1).bytes
        XCTAssertTrue(feed(server, bytes))
        server.session.goAway()
        _ = serverOutput(server)  // the GOAWAY (last stream 1) is on the wire
        bytes = requestHeaders(stream: 3).bytes
        XCTAssertTrue(feed(server, bytes))
        XCTAssertTrue(server.opened(1))
        XCTAssertFalse(server.opened(3), "a stream above GOAWAY's last id is ignored (RFC 9113 §6.8)")
    }

    func testTheStreamCapPerConnectionEndsItGracefully() {
        var limits = H2Limits()
        limits.maxStreamsPerConnection = 2
        let server = ServerRecorder(limits: limits)
        let client = H2PeerClient()
        client.request("GET", "/1")
        XCTAssertTrue(pump(client, server))
        XCTAssertFalse(server.session.isGoingAway)
        client.request("GET", "/2")
        XCTAssertTrue(pump(client, server))
        XCTAssertTrue(server.session.isGoingAway)
        XCTAssertEqual(server.session.streamsOpened, 2)
        XCTAssertEqual(client.goAways.map { "\($0.lastStreamId)/\($0.errorCode)" }, ["3/0"])
        XCTAssertNil(server.session.terminatedReason, "graceful, not a flood")
    }

    func testRapidResetEndsTheConnectionOnlyWithinOneSecond() {
        var limits = H2Limits()
        limits.maxResetsPerSecond = 3
        let server = ServerRecorder(limits: limits)
        let client = H2PeerClient()
        func openAndReset(now: Int64) -> Bool {
            let id = client.request("POST", "/", body: [], isComplete: false)
            XCTAssertTrue(pump(client, server, now: now))  // opened first: nghttp2 drops a reset of a stream never sent
            client.reset(id, code: H2ErrorCode.cancel.rawValue)
            return pump(client, server, now: now)
        }
        // Three resets in the first second, three more in the next: within the limit.
        for now: Int64 in [10_000, 10_400, 10_999, 11_000, 11_500, 11_900] { XCTAssertTrue(openAndReset(now: now)) }
        XCTAssertNil(server.session.terminatedReason)
        // A fourth within the same second: GOAWAY ENHANCE_YOUR_CALM.
        _ = openAndReset(now: 11_950)
        XCTAssertEqual(server.session.terminatedReason.map { "\($0)" }, "rapid reset")
        XCTAssertEqual(client.goAways.last?.errorCode, H2ErrorCode.enhanceYourCalm.rawValue)
    }

    // MARK: Floods and garbage end the connection

    func testEightContinuationsAreAcceptedAndTheNinthIsAFlood() {
        let accepted = ServerRecorder()
        XCTAssertTrue(feed(accepted, H2Frame.preface + H2Frame(type: H2Frame.settings).bytes + continued(stream: 1, continuations: 8, ends: true)))
        XCTAssertTrue(accepted.events.contains(.headersComplete(1, endStream: true)))
        XCTAssertEqual(accepted.headers(1).filter { $0.0 == "accept" }.count, 8)

        let flooded = ServerRecorder()
        XCTAssertFalse(feed(flooded, H2Frame.preface + H2Frame(type: H2Frame.settings).bytes + continued(stream: 1, continuations: 9, ends: false)))
        XCTAssertEqual(flooded.session.terminatedReason.map { "\($0)" }, "CONTINUATION flood")
        XCTAssertTrue(flooded.session.wantsWrite, "a GOAWAY is queued")
        let goAways = H2Frame.parse(serverOutput(flooded)).frames.compactMap(\.goAway)
        XCTAssertEqual(goAways.map(\.errorCode), [H2ErrorCode.enhanceYourCalm.rawValue])
        XCTAssertFalse(flooded.events.contains { if case .headersComplete = $0 { true } else { false } })

        // The limit is ours, not only nghttp2's default (which is also 8).
        var limits = H2Limits()
        limits.maxContinuations = 2
        let strict = ServerRecorder(limits: limits)
        XCTAssertFalse(feed(strict, H2Frame.preface + H2Frame(type: H2Frame.settings).bytes + continued(stream: 1, continuations: 3, ends: true)))
        XCTAssertEqual(strict.session.terminatedReason.map { "\($0)" }, "CONTINUATION flood")
    }

    func testPingsPilingUpUnreadAreAFlood() {
        var limits = H2Limits()
        limits.maxOutboundAck = 10
        let ping = H2Frame(type: H2Frame.ping, payload: Array(repeating: 1, count: 8)).bytes
        let start = H2Frame.preface + H2Frame(type: H2Frame.settings).bytes
        // A client that reads its PING acks is never a flood…
        let polite = ServerRecorder(limits: limits)
        XCTAssertTrue(feed(polite, start))
        for _ in 0..<10 {
            XCTAssertTrue(feed(polite, ping + ping + ping))
            XCTAssertEqual(H2Frame.parse(serverOutput(polite)).frames.filter { $0.type == H2Frame.ping && $0.flags == H2Frame.ack }.count, 3)
        }
        XCTAssertNil(polite.session.terminatedReason)
        // …one that sends PINGs and never reads their acks is (nghttp2_option_set_max_outbound_ack).
        let flooding = ServerRecorder(limits: limits)
        XCTAssertFalse(feed(flooding, start + Array((0..<20).map { _ in ping }.joined())))
        XCTAssertEqual(flooding.session.terminatedReason.map { "\($0)" }, "flood")
        XCTAssertEqual(H2Frame.parse(serverOutput(flooding)).frames.compactMap(\.goAway).map(\.errorCode).last, H2ErrorCode.enhanceYourCalm.rawValue)
    }

    func testABadPrefaceEndsTheConnectionWithAGoAway() {
        let server = ServerRecorder()
        XCTAssertFalse(feed(server, Array("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n".utf8)))
        XCTAssertEqual(server.session.terminatedReason.map { "\($0)" }, "protocol error")
        XCTAssertTrue(server.session.isGoingAway)
        XCTAssertTrue(server.session.wantsWrite, "a GOAWAY is queued")
        let frames = H2Frame.parse(serverOutput(server)).frames
        XCTAssertEqual(frames.compactMap(\.goAway).map(\.errorCode), [H2ErrorCode.protocolError.rawValue], "\(frames.map(\.type))")
        XCTAssertTrue(server.events.isEmpty)
    }

    // MARK: Helpers

    /// Shuttles bytes both ways until neither side has more to say (at most 100 rounds). False once the server's
    /// `receive` refused the client's bytes (what it answered is still delivered).
    private func pump(_ client: H2PeerClient, _ server: ServerRecorder, now: Int64 = 0, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        for _ in 0..<100 {
            let toServer = client.output()
            let accepted = toServer.withUnsafeBytes { server.session.receive($0, now: now) }
            let toClient = serverOutput(server, file: file, line: line)
            if !toClient.isEmpty { XCTAssertGreaterThanOrEqual(client.input(toClient), 0, "the client refused the server's bytes", file: file, line: line) }
            if !accepted { return false }
            if toServer.isEmpty && toClient.isEmpty { return true }
        }
        XCTFail("still talking after 100 rounds", file: file, line: line)
        return true
    }

    /// Feeds bytes made by hand; the session's verdict.
    private func feed(_ server: ServerRecorder, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { server.session.receive($0, now: 0) }
    }

    /// All the frames the server has queued.
    private func serverOutput(_ server: ServerRecorder, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
        let out = ByteBuffer(capacity: 4096)
        XCTAssertTrue(server.session.send(into: out, limit: 1 << 24), file: file, line: line)
        return Array(out.readable)
    }

    /// `GET /` with :authority, in HPACK by hand (RFC 7541 appendix A: static indices 2, 6, 4; 1 with a literal value).
    private static let requestBlock: [UInt8] = [0x82, 0x86, 0x84, 0x41, 12] + Array("example.test".utf8)

    private func requestHeaders(stream: Int32) -> H2Frame {
        H2Frame(type: H2Frame.headers, flags: H2Frame.endStream | H2Frame.endHeaders, streamId: stream, payload: Self.requestBlock)
    }

    /// A HEADERS frame without END_HEADERS, then `continuations` CONTINUATION frames each adding `accept: */*`
    /// (static index 19); the last one has END_HEADERS when `ends`.
    private func continued(stream: Int32, continuations: Int, ends: Bool) -> [UInt8] {
        var bytes = H2Frame(type: H2Frame.headers, flags: H2Frame.endStream, streamId: stream, payload: Self.requestBlock).bytes
        for i in 0..<continuations {
            let last = i == continuations - 1
            bytes += H2Frame(type: H2Frame.continuation, flags: last && ends ? H2Frame.endHeaders : 0, streamId: stream, payload: [0x80 | 19]).bytes
        }
        return bytes
    }
}
