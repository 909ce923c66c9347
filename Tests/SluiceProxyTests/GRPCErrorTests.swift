// Integration: gateway-made answers to gRPC requests are gRPC-shaped — HTTP 200, trailers-only, grpc-status.
import Foundation
import SluiceBlockingHTTP
import SluiceProxy
import SluiceRouting
import XCTest

let grpcHeaders = [("content-type", "application/grpc"), ("te", "trailers")]
let grpcPath = "/inference.GRPCInferenceService/ModelInfer"

final class GRPCErrorTests: XCTestCase {
    private func call(_ c: H2TestClient, authority: String, headers: [(String, String)] = grpcHeaders) throws -> H2TestResponse {
        let id = c.request("POST", grpcPath, authority: authority, headers: headers, body: [0, 0, 0, 0, 0])
        try c.run { c.responses[id]?.isClosed == true }
        return c.responses[id]!
    }

    private func assertGRPC(_ r: H2TestResponse, status: String, message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 200, file: file, line: line)
        XCTAssertEqual(r.header("content-type"), "application/grpc", file: file, line: line)
        XCTAssertEqual(r.header("grpc-status"), status, file: file, line: line)
        XCTAssertEqual(r.header("grpc-message"), message, file: file, line: line)
        XCTAssertEqual(r.body, [], "trailers-only", file: file, line: line)
    }

    func testUnknownHostIsUnimplementedAndRESTStaysJSON() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        assertGRPC(try call(c, authority: "nope.example.com"), status: "12", message: "no InferenceService serves this host")
        assertGRPC(try call(c, authority: "nope.example.com", headers: [("content-type", "application/grpc+proto")]),
                   status: "12", message: "no InferenceService serves this host")
        // Not gRPC: the JSON error as before.
        let rest = try call(c, authority: "nope.example.com", headers: [("content-type", "application/grpc-web")])
        XCTAssertEqual(rest.status, 404)
        XCTAssertEqual(rest.text, #"{"error": "no InferenceService serves this host"}"#)
    }

    func testNoEndpointAndDeadPodAreUnavailable() throws {
        let dead = RefusingPort()  // connect is refused there
        defer { dead.close() }
        let deadPort = dead.port
        var s = ProxySettings()
        s.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        s.workers = 1
        let services = [
            ServiceSpec(name: "empty", namespace: "ns", revisions: [RevisionSpec(name: "empty-predictor-default-00001", endpoints: [])],
                        traffic: [TrafficTargetSpec(revisionName: "empty-predictor-default-00001", percent: 100, latestRevision: true)]),
            ServiceSpec(name: "dead", namespace: "ns", revisions: [RevisionSpec(name: "dead-predictor-default-00001", endpoints: [Endpoint(host: "127.0.0.1", port: deadPort, protocol: .h2c)])],
                        traffic: [TrafficTargetSpec(revisionName: "dead-predictor-default-00001", percent: 100, latestRevision: true)]),
        ]
        let gateway = try Gateway(settings: s, routes: RouteTable(services: services, rules: HostRules()))
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        assertGRPC(try call(c, authority: "empty.ns.example.com"), status: "14", message: "revision has no ready endpoint")
        assertGRPC(try call(c, authority: "dead.ns.example.com"), status: "14", message: "upstream connect failed")
    }

    func testRevisionWithoutH2CEndpointIsUnimplementedForGRPC() throws {
        let f = try GatewayFixture(split: 0, workers: 1)
        let c = try H2TestClient(port: f.port)
        assertGRPC(try call(c, authority: serviceHost), status: "12", message: "revision serves no gRPC: it has no h2c:// or h2:// endpoint")
        // REST on the same connection still reaches the HTTP/1.1 pod.
        let id = c.request("GET", "/v2/health/ready", authority: serviceHost)
        try c.run { c.responses[id]?.isClosed == true }
        XCTAssertEqual(c.responses[id]?.status, 200)
    }

    func testUpstreamTimeoutIsDeadlineExceeded() throws {
        let pod = H2EchoBackend()
        defer { pod.stop() }
        let gateway = try grpcGateway(pods: (pod.port, pod.port), settings: { $0.timeouts.upstreamResponseMs = 200 })
        defer { gateway.shutdown(graceMs: 1000) }
        let c = try H2TestClient(port: gateway.port)
        let id = c.request("POST", "/inference.GRPCInferenceService/hang", authority: serviceHost, headers: grpcHeaders, body: [0, 0, 0, 0, 0])
        try c.run { c.responses[id]?.isClosed == true }
        assertGRPC(c.responses[id]!, status: "4", message: "upstream response timed out")
    }
}

/// The iris service with h2c endpoints only: `split`% to revision 2 (pods.1), the rest to revision 1 (pods.0).
func grpcGateway(pods: (UInt16, UInt16), split: Int = 0, workers: Int = 1, protocol upstreamProtocol: UpstreamProtocol = .h2c,
                 settings: (inout ProxySettings) -> Void = { _ in }, requestObserver: RequestObserver? = nil) throws -> Gateway {
    var s = ProxySettings()
    s.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
    s.workers = workers
    settings(&s)
    return try Gateway(settings: s, routes: grpcRoutes(pods: pods, split: split, protocol: upstreamProtocol), requestObserver: requestObserver)
}

/// The route table of `grpcGateway`: revision 1 on `pods.0`, revision 2 (`split` %) on `pods.1`.
func grpcRoutes(pods: (UInt16, UInt16), split: Int = 0, protocol upstreamProtocol: UpstreamProtocol = .h2c) throws -> RouteTable {
    let service = ServiceSpec(
        name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
        revisions: [RevisionSpec(name: rev1, endpoints: [Endpoint(host: "127.0.0.1", port: pods.0, protocol: upstreamProtocol)]),
                    RevisionSpec(name: rev2, endpoints: [Endpoint(host: "127.0.0.1", port: pods.1, protocol: upstreamProtocol)])],
        traffic: [TrafficTargetSpec(revisionName: rev2, percent: split, tag: "latest", latestRevision: true),
                  TrafficTargetSpec(revisionName: rev1, percent: 100 - split, tag: "prev")])
    return try RouteTable(services: [service], rules: HostRules())
}
