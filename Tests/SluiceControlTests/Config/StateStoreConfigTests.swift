// Tests for `stateStore:` in the configuration file: the etcd settings as given, and each mistake refused with the
// field and the reason (the running configuration stays; nothing is half-set).
import Foundation
import SluiceControl
import XCTest

final class StateStoreConfigTests: XCTestCase {
    private func parse(_ stateStore: String) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: "listen: 127.0.0.1:8080\nstateStore: \(stateStore)\n", file: "test.yaml")
    }

    private func refusal(_ stateStore: String) -> String? {
        do {
            _ = try parse(stateStore)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testTheFileStoreIsTheDefault() throws {
        XCTAssertEqual(try GatewayConfig.parse(yaml: "listen: 127.0.0.1:8080\n", file: "test.yaml").control.stateStore, .file)
        XCTAssertEqual(try parse("{kind: file}").control.stateStore, .file)
    }

    func testEtcdSettingsAreTakenAsWritten() throws {
        let dir = NSTemporaryDirectory() + "sluice-etcd-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "s3cret\n".write(toFile: dir + "/password", atomically: true, encoding: .utf8)
        let config = try parse("""
            {kind: etcd, endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:22379/"], prefix: /gw/, leaseTTL: 5s,
             replicaName: gw-1, username: sluice, passwordFile: \(dir)/password, requestTimeout: 2s}
            """)
        guard case .etcd(let etcd) = config.control.stateStore else { return XCTFail("not etcd: \(config.control.stateStore)") }
        XCTAssertEqual(etcd.client.endpoints, ["http://127.0.0.1:2379", "http://127.0.0.1:22379"])
        XCTAssertEqual(etcd.client.prefix, "/gw/")
        XCTAssertEqual(etcd.leaseTTLSeconds, 5)
        XCTAssertEqual(etcd.replicaName, "gw-1")
        XCTAssertEqual(etcd.client.username, "sluice")
        XCTAssertEqual(etcd.client.password, "s3cret", "the file's content without its newline")
        XCTAssertEqual(etcd.client.requestTimeoutMilliseconds, 2_000)
    }

    func testMistakesAreRefusedWithTheFieldAndTheReason() {
        XCTAssertEqual(refusal("{kind: etc}"), #"test.yaml: stateStore.kind: unknown state store "etc" (file or etcd)"#)
        XCTAssertEqual(refusal("{kind: etcd}"), "test.yaml: stateStore.endpoints: required")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [127.0.0.1:2379]}"),
                       #"test.yaml: stateStore.endpoints[0]: "127.0.0.1:2379" is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)"#)
        XCTAssertEqual(refusal("{kind: file, endpoints: [http://127.0.0.1:2379]}"), "test.yaml: stateStore.endpoints: only for kind: etcd")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], prefix: sluice}"),
                       #"test.yaml: stateStore.prefix: must start and end with "/" and name a folder ("/sluice/"), so that two prefixes never overlap"#)
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], leaseTTL: 1500ms}"),
                       "test.yaml: stateStore.leaseTTL: must be whole seconds, at least 2s (etcd's leases count in seconds)")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], username: u}"),
                       "test.yaml: stateStore: username and passwordFile go together (etcd's authentication takes both)")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], passwordFile: /nonexistent/pw}"),
                       "test.yaml: stateStore.passwordFile: cannot read /nonexistent/pw")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], caFile: /etc/hostname}"),
                       "test.yaml: stateStore.endpoints: caFile, certFile and keyFile are for https:// endpoints; every endpoint here must be https://")
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], replicaName: \"a b\"}"),
                       #"test.yaml: stateStore.replicaName: "a b" is not a replica name (letters, digits, - . : _; at most 253)"#)
        XCTAssertEqual(refusal("{kind: etcd, endpoints: [http://127.0.0.1:2379], lease: 5s}")?.hasPrefix("test.yaml: stateStore.lease: unknown key"), true)
    }
}
