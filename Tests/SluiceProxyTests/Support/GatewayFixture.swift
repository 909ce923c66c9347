// Test support: an in-process gateway on an ephemeral loopback port in front of demo predictors.
import SluiceBlockingHTTP
import Foundation
import SluiceDemo
import SluiceProxy
import SluiceRouting
import XCTest

let serviceHost = "sklearn-iris.kserve-test.example.com"
let rev1 = "sklearn-iris-predictor-default-00001"
let rev2 = "sklearn-iris-predictor-default-00002"

/// Two demo predictors (revisions 1 and 2) and a gateway splitting `split`% to revision 2.
final class GatewayFixture: @unchecked Sendable {  // immutable after init; its parts are thread-safe
    let backend1: BlockingServer
    let backend2: BlockingServer
    let gateway: Gateway
    var port: UInt16 { gateway.port }

    init(split: Int = 10, workers: Int = 2, tagRouting: Bool = true, tagHeaderRouting: Bool = false, stickyKey: StickyKey? = nil,
         settings: (inout ProxySettings) -> Void = { _ in },
         handler1: (@Sendable (BlockingRequest) -> BlockingResponse)? = nil,
         handler2: (@Sendable (BlockingRequest) -> BlockingResponse)? = nil) throws {
        backend1 = try BlockingServer(port: 0, handler: handler1 ?? predictorHandler(modelName: "sklearn-iris", version: .v1, revision: rev1))
        backend2 = try BlockingServer(port: 0, handler: handler2 ?? predictorHandler(modelName: "sklearn-iris", version: .v2, revision: rev2))
        backend1.start()
        backend2.start()
        var s = ProxySettings()
        s.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        s.workers = workers
        settings(&s)
        var rules = HostRules()
        rules.tagHeaderRouting = tagHeaderRouting
        let routes = try GatewayFixture.table(split: split, ports: (backend1.port, backend2.port), tagRouting: tagRouting, rules: rules,
                                              stickyKey: stickyKey)
        gateway = try Gateway(settings: s, routes: routes)
    }

    static func table(split: Int, ports: (UInt16, UInt16), tagRouting: Bool = true, rules: HostRules = HostRules(),
                      extra: [ServiceSpec] = [], stickyKey: StickyKey? = nil) throws -> RouteTable {
        let service = ServiceSpec(
            name: "sklearn-iris", namespace: "kserve-test", tagRouting: tagRouting,
            revisions: [RevisionSpec(name: rev1, endpoints: [Endpoint(host: "127.0.0.1", port: ports.0)]),
                        RevisionSpec(name: rev2, endpoints: [Endpoint(host: "127.0.0.1", port: ports.1)])],
            traffic: split >= 100
                ? [TrafficTargetSpec(revisionName: rev2, percent: 100, tag: "latest", latestRevision: true),
                   TrafficTargetSpec(revisionName: rev1, percent: 0, tag: "prev")]
                : [TrafficTargetSpec(revisionName: rev2, percent: split, tag: "latest", latestRevision: true),
                   TrafficTargetSpec(revisionName: rev1, percent: 100 - split, tag: "prev")],
            stickyKey: stickyKey)
        return try RouteTable(services: [service] + extra, rules: rules)
    }

    func client() throws -> TestClient { try TestClient(port: port) }

    deinit {
        gateway.shutdown(graceMs: 2_000)
        backend1.stop()
        backend2.stop()
    }
}

let irisBody = #"{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}"#

extension GatewayFixture {
    /// Settings of an in-process test gateway: an ephemeral loopback port and `workers` workers.
    static func settings(workers: Int = 1, _ adjust: (inout ProxySettings) -> Void = { _ in }) -> ProxySettings {
        var s = ProxySettings()
        s.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        s.workers = workers
        adjust(&s)
        return s
    }

    /// A gateway whose one service (`{name}.ns.example.com`) sends every request to the pod on `port`.
    static func gateway(to port: UInt16, name: String = "big", _ adjust: (inout ProxySettings) -> Void = { _ in }) throws -> Gateway {
        let revision = "\(name)-predictor-default-00001"
        let service = ServiceSpec(name: name, namespace: "ns", revisions: [RevisionSpec(name: revision, endpoints: [Endpoint(host: "127.0.0.1", port: port)])],
                                  traffic: [TrafficTargetSpec(revisionName: revision, percent: 100, latestRevision: true)])
        return try Gateway(settings: settings(adjust), routes: RouteTable(services: [service], rules: HostRules()))
    }
}
