// Integration: gRPC through the gateway to h2c pods — headers both ways, DATA with flow control, trailers relayed,
// split and tags by :authority, multiplexing on one upstream connection, client cancel resetting the pod's stream.
import Foundation
import SluiceProxy
import SluiceRouting
import XCTest

final class GRPCProxyTests: XCTestCase {
    private func call(_ c: H2TestClient, _ method: String = "echo", authority: String = serviceHost, body: [UInt8]) throws -> H2TestResponse {
        let id = c.request("POST", "/inference.GRPCInferenceService/\(method)", authority: authority,
                           headers: grpcHeaders + [("grpc-timeout", "5S"), ("x-request-id", "rid-1"), ("custom-bin", "AAEC")], body: body)
        try c.run { c.responses[id]?.isClosed == true }
        return c.responses[id]!
    }

    func testCallIsRelayedWithHeadersBodyAndTrailers() throws {
        let one = H2EchoBackend(name: "one"), two = H2EchoBackend(name: "two")
        defer { one.stop(); two.stop() }
        let gateway = try grpcGateway(pods: (one.port, two.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let message: [UInt8] = [0, 0, 0, 0, 3, 1, 2, 3]
        let r = try call(c, body: message)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, message)
        XCTAssertEqual(r.header("x-backend"), "one")
        XCTAssertEqual(r.header("sluice-revision"), rev1)
        XCTAssertEqual(r.header("grpc-status"), "0", "trailers relayed")
        XCTAssertEqual(r.header("grpc-message"), "echoed 8 bytes")
        XCTAssertEqual(r.errorCode, 0)
        let seen = try XCTUnwrap(one.requests.first)
        func field(_ name: String) -> String? { seen.first { $0.0 == name }?.1 }
        XCTAssertEqual(field(":authority"), serviceHost)
        XCTAssertEqual(field(":path"), "/inference.GRPCInferenceService/echo")
        XCTAssertEqual(field(":scheme"), "http")
        XCTAssertEqual(field("content-type"), "application/grpc")
        XCTAssertEqual(field("te"), "trailers")
        XCTAssertEqual(field("grpc-timeout"), "5S")
        XCTAssertEqual(field("custom-bin"), "AAEC")
        XCTAssertEqual(field("x-forwarded-for"), "127.0.0.1")
        XCTAssertEqual(field("x-forwarded-proto"), "http")
        XCTAssertEqual(field("x-request-id"), "rid-1")
        XCTAssertEqual(field("knative-serving-revision"), rev1)
        XCTAssertEqual(field("knative-serving-namespace"), "kserve-test")
        XCTAssertEqual(field("kserve-isvc-name"), "sklearn-iris")
        XCTAssertEqual(field("kserve-isvc-namespace"), "kserve-test")
        XCTAssertEqual(seen.filter { $0.0 == "te" }.count, 1)
    }

    func testTrailersOnlyErrorFromThePodIsRelayed() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let r = try call(c, "fail", body: [0, 0, 0, 0, 0])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("grpc-status"), "5")
        XCTAssertEqual(r.header("grpc-message"), "model not found")
        XCTAssertEqual(r.body, [])
        // The connection and the pod's connection go on.
        XCTAssertEqual(try call(c, body: [0, 0, 0, 0, 1, 9]).header("grpc-status"), "0")
    }

    func testTagsAndSplitByAuthority() throws {
        let one = H2EchoBackend(name: "one"), two = H2EchoBackend(name: "two")
        defer { one.stop(); two.stop() }
        let gateway = try grpcGateway(pods: (one.port, two.port), split: 10, workers: 2)
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        XCTAssertEqual(try call(c, authority: "latest-sklearn-iris-predictor-default.kserve-test.example.com", body: [0, 0, 0, 0, 0]).header("x-backend"), "two")
        XCTAssertEqual(try call(c, authority: "prev-sklearn-iris-predictor-default.kserve-test.example.com", body: [0, 0, 0, 0, 0]).header("x-backend"), "one")
        var counts: [String: Int] = [:]
        var ids: [Int32] = []
        for _ in 0..<400 {
            ids.append(c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0]))
        }
        try c.run(seconds: 20) { ids.allSatisfy { c.responses[$0]?.isClosed == true } }
        for id in ids { counts[c.responses[id]?.header("x-backend") ?? "none", default: 0] += 1 }
        XCTAssertEqual(counts["one", default: 0] + counts["two", default: 0], 400)
        XCTAssertTrue((15...70).contains(counts["two", default: 0]), "about 10% to revision 2: \(counts)")
    }

    func testManyConcurrentCallsShareOneUpstreamConnection() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        var ids: [Int32: [UInt8]] = [:]
        for i in 0..<60 {
            let body: [UInt8] = [0, 0, 0, 0, 2, UInt8(i), 7]
            ids[c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost, headers: grpcHeaders, body: body)] = body
        }
        try c.run { ids.keys.allSatisfy { c.responses[$0]?.isClosed == true } }
        for (id, body) in ids {
            XCTAssertEqual(c.responses[id]?.body, body)
            XCTAssertEqual(c.responses[id]?.header("grpc-status"), "0")
        }
        XCTAssertEqual(pod.connections, 1, "multiplexed on one h2c connection")
    }

    func testASecondUpstreamConnectionOpensAtThePodsStreamLimit() throws {
        let pod = H2EchoBackend(maxStreams: 3)
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        // The first call lets the gateway learn the pod's SETTINGS; then 5 calls that stay open need 2 connections.
        XCTAssertEqual(try call(c, body: [0, 0, 0, 0, 0]).header("grpc-status"), "0")
        var hanging: [Int32] = []
        for _ in 0..<5 {
            hanging.append(c.request("POST", "/inference.GRPCInferenceService/hang", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0]))
        }
        let deadline = Date().addingTimeInterval(5)
        while pod.requests.count < 6 && Date() < deadline { try c.exchangeOnce(waitMs: 20) }
        XCTAssertEqual(pod.requests.count, 6, "every call reached the pod at once")
        XCTAssertEqual(pod.connections, 2)
        for id in hanging { c.reset(id) }
        while pod.resets < 5 && Date() < deadline { try c.exchangeOnce(waitMs: 20) }
        XCTAssertEqual(pod.resets, 5)
    }

    func testAPodThatReadsNothingStallsTheClientNotTheGateway() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let id = c.request("POST", "/inference.GRPCInferenceService/stall", authority: serviceHost, headers: grpcHeaders,
                           body: [UInt8](repeating: 7, count: 4 << 20))
        try c.runUntilQuiet(quietMs: 300, seconds: 5)
        // The pod's window (64 KiB) plus one client stream window held by Sluice, not the 4 MiB.
        XCTAssertLessThanOrEqual(pod.bodyBytes, 65_535)
        XCTAssertLessThanOrEqual(c.uploaded(id), 2 * 65_535 + 16_384, "the client is held back by flow control")
        XCTAssertGreaterThan(c.uploaded(id), 60_000)
        // Other calls on the same client and upstream connections go on.
        XCTAssertEqual(try call(c, body: [0, 0, 0, 0, 1, 5]).body, [0, 0, 0, 0, 1, 5])
        c.reset(id)
        let deadline = Date().addingTimeInterval(5)
        while pod.resets == 0 && Date() < deadline { try c.exchangeOnce(waitMs: 20) }
        XCTAssertEqual(pod.resets, 1)
    }

    func testACallOnAConnectionThePodJustClosedGoesAgainOnAFreshOne() throws {
        let pod = H2EchoBackend(dropFirstConnectionOnSecondRequest: true)
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        XCTAssertEqual(try call(c, body: [0, 0, 0, 0, 1, 1]).body, [0, 0, 0, 0, 1, 1])
        // The pod drops the reused connection on this call's HEADERS; the gateway sends it again, body included.
        let r = try call(c, body: [0, 0, 0, 0, 2, 4, 2])
        XCTAssertEqual(r.header("grpc-status"), "0")
        XCTAssertEqual(r.body, [0, 0, 0, 0, 2, 4, 2])
        XCTAssertEqual(pod.connections, 2)
    }

    func testSlowClientsOfFinishedCallsDoNotShrinkThePodConnectionWindow() throws {
        // Each answer (60 KiB) ends at the pod while most of it still waits for a client with a 16 KiB window;
        // 40 of them are more than the upstream connection's 1 MiB window unless finished calls give theirs back.
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port, window: 16_384)
        let body = [UInt8](repeating: 3, count: 60_000)
        for i in 0..<40 {
            let id = c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost, headers: grpcHeaders, body: body)
            try c.run(seconds: 5) { c.responses[id]?.isClosed == true }
            XCTAssertEqual(c.responses[id]?.body.count, body.count, "call \(i)")
            XCTAssertEqual(c.responses[id]?.header("grpc-status"), "0", "call \(i)")
        }
        XCTAssertEqual(pod.connections, 1)
    }

    func testLargeMessagesBothWaysWithFlowControl() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        var body = [UInt8](repeating: 0, count: 3 << 20)
        for i in body.indices { body[i] = UInt8(truncatingIfNeeded: i &* 31) }
        let id = c.request("POST", "/inference.GRPCInferenceService/echo", authority: serviceHost, headers: grpcHeaders, body: body)
        try c.run(seconds: 20) { c.responses[id]?.isClosed == true }
        XCTAssertEqual(c.responses[id]?.body.count, body.count)
        XCTAssertTrue(c.responses[id]?.body == body)
        XCTAssertEqual(c.responses[id]?.header("grpc-status"), "0")
    }

    func testClientCancelResetsThePodStream() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let id = c.request("POST", "/inference.GRPCInferenceService/hang", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
        let deadline = Date().addingTimeInterval(5)
        while pod.requests.isEmpty && Date() < deadline { try c.exchangeOnce(waitMs: 20) }
        XCTAssertEqual(pod.requests.count, 1)
        c.reset(id)
        while pod.resets == 0 && Date() < deadline { try c.exchangeOnce(waitMs: 20) }
        XCTAssertEqual(pod.resets, 1, "RST_STREAM reached the pod")
        // The upstream connection still serves new calls.
        XCTAssertEqual(try call(c, body: [0, 0, 0, 0, 0]).header("grpc-status"), "0")
        XCTAssertEqual(pod.connections, 1)
    }
}
