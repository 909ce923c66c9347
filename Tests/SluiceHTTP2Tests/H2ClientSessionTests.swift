// Unit tests of H2ClientSession (the client side of HTTP/2, toward pods) against our own H2Session as the pod, bytes
// shuttled in memory between the two: requests out, responses and trailers back, SETTINGS, flow control, GOAWAY.
import SluiceHTTP2
import SluiceIO
import XCTest

final class H2ClientSessionTests: XCTestCase {
    private let grpcRequest = [(":method", "POST"), (":scheme", "http"), (":path", "/pkg.Predict/Infer"), (":authority", "pod.test"),
                               ("content-type", "application/grpc"), ("te", "trailers")]

    func testARequestGoesOutAndTheResponseAndItsTrailersComeBack() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        let message: [UInt8] = [0, 0, 0, 0, 2, 8, 1]
        let id = client.request(grpcRequest, body: message)
        XCTAssertEqual(id, 1)
        pump(client, pod)
        XCTAssertEqual(pod.headers(id).map { "\($0.0)=\($0.1)" }, grpcRequest.map { "\($0.0)=\($0.1)" })
        XCTAssertEqual(pod.body(id), message)
        XCTAssertTrue(pod.events.contains(.ended(id)))

        pod.respond(id, status: 200, headers: [("content-type", "application/grpc")], hasBody: true)
        pod.provide(id, [0, 0, 0, 0, 1, 9], isComplete: true, trailers: [("grpc-status", "0"), ("grpc-message", "ok")])
        pump(client, pod)
        XCTAssertEqual(client.fields(id, trailers: false), [":status=200", "content-type=application/grpc"])
        XCTAssertEqual(client.fields(id, trailers: true), ["grpc-status=0", "grpc-message=ok"])
        XCTAssertEqual(client.body(id), [0, 0, 0, 0, 1, 9])
        // The order a relay depends on: head, body, trailers (ending the stream), then the close; no END_STREAM on DATA.
        let milestones = client.events.filter { if case .header = $0 { false } else if case .data = $0 { false } else { true } }
        XCTAssertEqual(milestones, [.headersComplete(id, isTrailer: false, endStream: false), .headersComplete(id, isTrailer: true, endStream: true),
                                    .closed(id, errorCode: 0)])
        XCTAssertEqual(pod.closeCode(id), 0)
    }

    func testAResponseWithoutTrailersEndsOnItsLastDataFrame() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        let id = client.request([(":method", "GET"), (":scheme", "http"), (":path", "/v2/health/ready"), (":authority", "pod.test")])
        pump(client, pod)
        XCTAssertTrue(pod.events.contains(.headersComplete(id, endStream: true)))
        pod.respond(id, status: 200, headers: [("content-length", "2")], hasBody: true)
        pod.provide(id, Array("ok".utf8), isComplete: true)
        pump(client, pod)
        XCTAssertEqual(client.body(id), Array("ok".utf8))
        let milestones = client.events.filter { if case .header = $0 { false } else if case .data = $0 { false } else { true } }
        XCTAssertEqual(milestones, [.headersComplete(id, isTrailer: false, endStream: false), .dataEnded(id), .closed(id, errorCode: 0)])
    }

    func testThePodsMaxConcurrentStreamsReachesTheClientAndHoldsBackTheRest() {
        var limits = H2Limits()
        limits.maxConcurrentStreams = 3
        let client = ClientRecorder()
        let pod = ServerRecorder(limits: limits)
        XCTAssertEqual(client.session.maxConcurrentStreams, 100, "nghttp2's assumption before the pod's SETTINGS")
        pump(client, pod)
        XCTAssertEqual(client.session.maxConcurrentStreams, 3)
        let ids = (0..<4).map { _ in client.request([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "pod.test")]) }
        pump(client, pod)
        XCTAssertEqual(ids.filter { pod.opened($0) }, Array(ids.prefix(3)), "the fourth waits for a free stream")
        pod.respond(ids[0], status: 200, hasBody: false)
        pump(client, pod)
        XCTAssertEqual(client.closeCode(ids[0]), 0)
        XCTAssertTrue(pod.opened(ids[3]))
    }

    func testTheClientGrantsWindowOnlyForWhatItConsumed() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        let id = client.request([(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", "pod.test")])
        pump(client, pod)
        pod.respond(id, status: 200, hasBody: true)
        pod.provide(id, Array(repeating: 7, count: 100_000), isComplete: true)
        pump(client, pod)
        XCTAssertEqual(client.body(id).count, Int(H2ClientSession.streamWindow), "the pod stops at our stream window")
        pump(client, pod)
        XCTAssertEqual(client.body(id).count, Int(H2ClientSession.streamWindow), "no window comes back unconsumed")
        client.session.consume(id, Int(H2ClientSession.streamWindow))
        pump(client, pod)
        XCTAssertEqual(client.body(id).count, 100_000)
        XCTAssertEqual(client.closeCode(id), 0)
    }

    func testAGoAwayReachesTheClientAndRefusesTheStreamsAboveItsLastId() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        let first = client.request([(":method", "GET"), (":scheme", "http"), (":path", "/a"), (":authority", "pod.test")])
        pump(client, pod)
        // The pod says GOAWAY (last stream 1) while the client's next request is already on its way.
        pod.session.goAway()
        let fromPod = output(pod.session)
        let second = client.request([(":method", "GET"), (":scheme", "http"), (":path", "/b"), (":authority", "pod.test")])
        XCTAssertTrue(output(client.session).withUnsafeBytes { pod.session.receive($0, now: 0) })
        XCTAssertFalse(pod.opened(second), "the pod ignores streams above its last id")
        XCTAssertTrue(fromPod.withUnsafeBytes { client.session.receive($0) })
        XCTAssertTrue(client.session.receivedGoAway)
        XCTAssertTrue(client.events.contains(.goAway))
        // RFC 9113 §6.8: unprocessed, so safe to retry elsewhere; the first stream is still served.
        XCTAssertEqual(client.closeCode(second), 7, "REFUSED_STREAM")
        XCTAssertNil(client.closeCode(first))
        pod.respond(first, status: 200, hasBody: false)
        pump(client, pod)
        XCTAssertEqual(client.fields(first, trailers: false), [":status=200"])
        XCTAssertEqual(client.closeCode(first), 0)
    }

    func testResetsTravelBothWaysWithTheirCodes() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        let fields = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "pod.test")]
        let byPod = client.request(fields, body: [1], isComplete: false)
        let byClient = client.request(fields, body: [2], isComplete: false)
        pump(client, pod)
        pod.session.resetStream(byPod, .refusedStream)
        client.session.resetStream(byClient, .cancel)
        pump(client, pod)
        XCTAssertEqual(client.closeCode(byPod), H2ErrorCode.refusedStream.rawValue)
        XCTAssertEqual(pod.closeCode(byClient), H2ErrorCode.cancel.rawValue)
    }

    func testTheClientsGoAwayReachesThePod() {
        let client = ClientRecorder()
        let pod = ServerRecorder()
        pump(client, pod)
        client.session.goAway()
        XCTAssertTrue(client.session.wantsWrite)
        let frames = H2Frame.parse(Array(output(client.session))).frames
        XCTAssertEqual(frames.compactMap(\.goAway).map(\.errorCode), [0])
        XCTAssertFalse(client.session.wantsRead, "nothing more is read after our own GOAWAY with no stream open")
    }

    // MARK: Helpers

    /// Shuttles bytes both ways until neither side has more to say (at most 100 rounds); both must accept.
    private func pump(_ client: ClientRecorder, _ pod: ServerRecorder, file: StaticString = #filePath, line: UInt = #line) {
        for _ in 0..<100 {
            let up = output(client.session)
            XCTAssertTrue(up.withUnsafeBytes { pod.session.receive($0, now: 0) }, "the pod refused the client's bytes", file: file, line: line)
            let down = output(pod.session)
            XCTAssertTrue(down.withUnsafeBytes { client.session.receive($0) }, "the client refused the pod's bytes", file: file, line: line)
            if up.isEmpty && down.isEmpty { return }
        }
        XCTFail("still talking after 100 rounds", file: file, line: line)
    }

    private func output(_ session: H2ClientSession) -> [UInt8] {
        let out = ByteBuffer(capacity: 4096)
        XCTAssertTrue(session.send(into: out, limit: 1 << 24))
        return Array(out.readable)
    }

    private func output(_ session: H2Session) -> [UInt8] {
        let out = ByteBuffer(capacity: 4096)
        XCTAssertTrue(session.send(into: out, limit: 1 << 24))
        return Array(out.readable)
    }
}
