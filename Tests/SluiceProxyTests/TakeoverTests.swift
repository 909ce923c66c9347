// Integration: the takeover protocol between two in-process gateways — the claim of a listen address, the
// listeners handed over by descriptor passing (connections queued meanwhile are served by the new gateway), the
// release and drain hooks, and a refused takeover that leaves the running gateway as it was.
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceProxy
import Synchronization
import XCTest

/// How often the running side's hooks were called.
final class HookCalls: Sendable {
    let released = Atomic<Int>(0)
    let drained = Atomic<Int>(0)
}

final class TakeoverTests: XCTestCase {
    static let host = "big.ns.example.com"

    /// The running side: a gateway, its claim, and a takeover server whose hooks count their calls.
    final class Running: Sendable {
        let pod: BlockingServer
        let gateway: Gateway
        let address: SocketAddressSpec
        let claims = ListenClaims()
        let server: TakeoverServer
        let hooks = HookCalls()
        var released: Int { hooks.released.load(ordering: .relaxed) }
        var drained: Int { hooks.drained.load(ordering: .relaxed) }

        init() throws {
            pod = try BlockingServer(port: 0) { _ in .json(status: 200, #"{"predictions": [1]}"#) }
            pod.start()
            gateway = try GatewayFixture.gateway(to: pod.port) { $0.workers = 2 }
            address = SocketAddressSpec(host: "127.0.0.1", port: gateway.port)
            try claims.claim(address, role: "listen")
            let calls = hooks
            server = TakeoverServer(claimFD: claims.descriptor(for: address)!, listeners: gateway.listenerDescriptors,
                                    address: address, events: EventLog(sink: { _ in }),
                                    hooks: .init(release: { calls.released.add(1, ordering: .relaxed) },
                                                 drain: { calls.drained.add(1, ordering: .relaxed) }))
            server.start()
        }

        func stop(drainGateway: Bool) {
            server.stop()
            if drainGateway { gateway.shutdown(graceMs: 2_000) }
            claims.release(address)
            pod.stop()
        }
    }

    func predict(_ port: UInt16) throws -> TestResponse {
        let client = try TestClient(port: port, timeoutSeconds: 5)
        return try client.request("POST", "/v1/models/big:predict", host: Self.host, body: "{}")
    }

    func testTheListenersChangeHandsWithTheirQueuedConnectionsAndTheOldGatewayDrains() throws {
        let running = try Running()
        var drainedOld = false
        defer { running.stop(drainGateway: !drainedOld) }
        XCTAssertEqual(try predict(running.gateway.port).status, 200)

        // A second start on the address is refused, naming this process (the claim answers "who").
        XCTAssertEqual(ListenClaims.holder(of: running.address), getpid())
        XCTAssertThrowsError(try ListenClaims().claim(running.address, role: "listen")) { error in
            XCTAssertTrue("\(error)".contains("listen address \(running.address) is already served by sluice process \(getpid())"), "\(error)")
        }

        let client = try TakeoverClient.connect(running.address)
        XCTAssertEqual(client.pid, getpid())
        XCTAssertEqual(client.listeners.count, 2, "one listening socket per worker")
        try client.verify(listen: running.address)
        XCTAssertEqual(running.released, 0, "nothing released before asked")
        try client.release()
        XCTAssertEqual(running.released, 1)

        // The old gateway stops accepting before the new one starts: the harshest order. A client connecting now
        // waits in the shared accept queue (the new process holds the sockets) instead of being refused.
        running.gateway.shutdown(graceMs: 2_000)
        drainedOld = true
        let queued = try TestClient(port: running.address.port, timeoutSeconds: 5)
        try queued.send("POST /v1/models/big:predict HTTP/1.1\r\nHost: \(Self.host)\r\nContent-Length: 2\r\n\r\n{}")

        client.handOverDescriptors()
        var settings = GatewayFixture.settings(workers: 1)
        settings.listen = running.address
        let new = try Gateway(settings: settings, routes: running.gateway.routes, adopting: client.listeners)
        defer { new.shutdown(graceMs: 2_000) }
        XCTAssertEqual(new.port, running.address.port)
        XCTAssertEqual(new.workerCount, 2, "a worker per inherited socket, though the settings ask for 1: none is closed with connections queued")
        XCTAssertEqual(try queued.readResponse().status, 200, "the connection queued while no one accepted is served")
        try client.drain()
        XCTAssertEqual(running.drained, 1)
        for _ in 0..<20 { XCTAssertEqual(try predict(running.address.port).status, 200) }
    }

    func testAListenAddressThatDoesNotMatchIsRefusedAndTheRunningGatewayIsUntouched() throws {
        let running = try Running()
        defer { running.stop(drainGateway: true) }
        let other = SocketAddressSpec(host: "127.0.0.2", port: running.address.port)
        let client = try TakeoverClient.connect(running.address)
        XCTAssertThrowsError(try client.verify(listen: other)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("listens on \(running.address), the new configuration on \(other)"), text)
            XCTAssertTrue(text.contains("the running process is untouched"), text)
        }
        XCTAssertEqual(running.released, 0)
        XCTAssertEqual(running.drained, 0)
        for _ in 0..<10 { XCTAssertEqual(try predict(running.address.port).status, 200, "still served by the running gateway") }
        XCTAssertFalse(running.gateway.isDraining)
        // It still answers the next takeover.
        let second = try TakeoverClient.connect(running.address)
        XCTAssertNoThrow(try second.verify(listen: running.address))
    }

    func testATakeoverWithNobodyToTakeOverFromSaysSo() throws {
        let address = SocketAddressSpec(host: "127.0.0.1", port: RefusingPort().port)
        XCTAssertThrowsError(try TakeoverClient.connect(address)) { error in
            XCTAssertTrue("\(error)".contains("no running sluice serves \(address)"), "\(error)")
        }
    }
}
