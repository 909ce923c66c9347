// Tests for watches on InferenceServices: the initial ADDED events, replay from a resource version with selectors,
// 410 for history no longer kept, bookmarks and timeoutSeconds, a streamed watch on a real blocking server that
// sees changes as they happen and frees its thread when the watcher leaves, and readiness as kubectl wait sees it.
import Foundation
import Glibc
@testable import SluiceControl
import SluiceBlockingHTTP
import SluiceDemo
import XCTest

final class WatchTests: XCTestCase {
    typealias V = KubeVerbsTests

    /// The events of a watch that ends by itself (timeoutSeconds), as (type, name, resourceVersion).
    func events(_ api: AdminAPI, _ query: String) -> [(type: String, name: String, version: String, object: JSONValue)] {
        let response = api.handle(BlockingRequest(method: "GET", target: V.collection + "?watch=true&" + query))
        XCTAssertEqual(response.status, 200)
        return String(decoding: response.collectedBody, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let event = JSONValue.parse(Array(line.utf8)) else {
                XCTFail("not one JSON event per line: \(line)")
                return nil
            }
            let object = event["object"] ?? .null
            return (event["type"]?.stringValue ?? "", object["metadata"]?["name"]?.stringValue ?? "",
                    object["metadata"]?["resourceVersion"]?.stringValue ?? "", object)
        }
    }

    func version(_ object: JSONValue?) -> String { object?["metadata"]?["resourceVersion"]?.stringValue ?? "" }

    func testAWatchFromNowSendsEveryObjectThenABookmarkAtTheEnd() throws {
        let (api, plane, _) = try V.makeAPI()
        defer { plane.stop() }
        _ = V.send(api, "POST", V.collection, V.object("a"))
        _ = V.send(api, "POST", V.collection, V.object("b"))
        let list = V.send(api, "GET", V.collection).1
        let started = Date()
        let seen = events(api, "timeoutSeconds=1&allowWatchBookmarks=true")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "timeoutSeconds ends the stream")
        XCTAssertEqual(seen.map(\.type), ["ADDED", "ADDED", "BOOKMARK"])
        XCTAssertEqual(seen.prefix(2).map(\.object), list?["items"]?.arrayValue ?? [], "each object as GET shows it")
        XCTAssertEqual(seen.last?.version, version(list), "the bookmark carries the version seen up to")
        XCTAssertEqual(seen.last?.object["metadata"]?.objectValue?.count, 1, "a bookmark has only the resourceVersion")
        XCTAssertEqual(events(api, "timeoutSeconds=1&resourceVersion=0&fieldSelector=metadata.name%3Db").map(\.name), ["b"])
    }

    func testAWatchFromAVersionReplaysLaterChangesAsTheSelectionSeesThem() throws {
        let (api, plane, _) = try V.makeAPI()
        defer { plane.stop() }
        let created = V.send(api, "POST", V.collection, V.object("a", labels: ["team": "x"])).1
        let from = version(created)
        let patch = Array(#"{"metadata":{"labels":{"team":"y"}}}"#.utf8)
        let patched = V.send(api, "PATCH", V.collection + "/a", patch, contentType: "application/merge-patch+json").1
        _ = V.send(api, "POST", V.collection, V.object("b", labels: ["team": "x"]))
        _ = V.send(api, "DELETE", V.collection + "/a")

        let all = events(api, "timeoutSeconds=1&resourceVersion=\(from)")
        XCTAssertEqual(all.map { "\($0.type) \($0.name)" }, ["MODIFIED a", "ADDED b", "DELETED a"])
        XCTAssertEqual(all.first?.object, patched, "the object as GET showed it after the change")
        let versions = all.compactMap { UInt64($0.version) }
        XCTAssertEqual(versions, versions.sorted(), "in version order")
        XCTAssertEqual(Set(versions).count, versions.count, "each change its own version")

        // kubectl wait's watch: one object by name.
        XCTAssertEqual(events(api, "timeoutSeconds=1&resourceVersion=\(from)&fieldSelector=metadata.name%3Da").map(\.type), ["MODIFIED", "DELETED"])
        // An object that stops matching a label selector is DELETED for that watcher; one that starts, ADDED.
        XCTAssertEqual(events(api, "timeoutSeconds=1&resourceVersion=\(from)&labelSelector=team%3Dx").map { "\($0.type) \($0.name)" },
                       ["DELETED a", "ADDED b"])
        XCTAssertEqual(events(api, "timeoutSeconds=1&resourceVersion=\(from)&labelSelector=team%3Dy").map { "\($0.type) \($0.name)" },
                       ["ADDED a", "DELETED a"])
    }

    func testAVersionOlderThanTheKeptHistoryIsGone() throws {
        let dir = NSTemporaryDirectory() + "sluice-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var (api, plane, _) = try V.makeAPI(stateDirectory: dir)
        let old = version(V.send(api, "POST", V.collection, V.object("a")).1)
        _ = V.send(api, "PATCH", V.collection + "/a", Array(#"{"metadata":{"labels":{"x":"1"}}}"#.utf8), contentType: "application/merge-patch+json")
        plane.stop()
        // A restarted plane keeps no history from before its start.
        (api, plane, _) = try V.makeAPI(stateDirectory: dir)
        defer { plane.stop() }
        let started = Date()
        let seen = events(api, "resourceVersion=\(old)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "the stream ends at once")
        XCTAssertEqual(seen.map(\.type), ["ERROR"])
        XCTAssertEqual(seen.first?.object["code"], .int(410))
        XCTAssertEqual(seen.first?.object["reason"], "Expired")
        XCTAssertEqual(seen.first?.object["message"]?.stringValue?.hasPrefix("too old resource version: \(old)"), true)
    }

    func testAStreamedWatchSeesChangesLiveAndFreesItsThreadWhenTheWatcherLeaves() throws {
        let (api, plane, _) = try V.makeAPI()
        defer { plane.stop() }
        let server = try BlockingServer(port: 0) { api.handle($0) }
        server.start()
        defer { server.stop() }
        _ = V.send(api, "POST", V.collection, V.object("a"))

        let watcher = try StreamClient(port: server.port)
        try watcher.send("GET \(V.collection)?watch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        XCTAssertTrue(try watcher.read(until: #""type":"ADDED""#).contains("HTTP/1.1 200"))
        try waitFor { plane.watchHub.watcherCount == 1 }
        let created = V.send(api, "POST", V.collection, V.object("b")).1
        let text = try watcher.read(until: #""name":"b""#)
        XCTAssertTrue(text.contains("Transfer-Encoding: chunked"))
        XCTAssertTrue(text.contains(#""resourceVersion":"\#(version(created))""#))

        watcher.close()
        try waitFor { plane.watchHub.watcherCount == 0 }
    }

    /// kubectl wait --for=condition=Ready: the readiness a probe finds is a MODIFIED event of the watched object.
    func testReadinessFromAProbeIsAModifiedEventAsKubectlWaitWatchesIt() throws {
        let pod = try BlockingServer(port: 0, handler: predictorHandler(modelName: "sklearn-iris", version: .v1, revision: "pod"))
        pod.start()
        defer { pod.stop() }
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        defer { plane.stop() }
        let api = AdminAPI(plane: plane, token: nil)
        let server = try BlockingServer(port: 0) { api.handle($0) }
        server.start()
        defer { server.stop() }
        var body = String(decoding: V.object(), as: UTF8.self)
        body = body.replacingOccurrences(of: "127.0.0.1:9001", with: "127.0.0.1:\(pod.port)")
        let created = V.send(api, "POST", V.collection, Array(body.utf8)).1
        let watcher = try StreamClient(port: server.port)
        defer { watcher.close() }
        try watcher.send("GET \(V.collection)?watch=true&fieldSelector=metadata.name%3Dsklearn-iris&resourceVersion=\(version(created)) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        plane.start()
        let text = try watcher.read(until: #""status":"True","type":"Ready""#)
        XCTAssertTrue(text.contains(#""type":"MODIFIED""#))
        XCTAssertFalse(text.contains(#""type":"ADDED""#), "from a version: only what changed after it")
    }

    /// Waits, bounded, until `condition` holds.
    func waitFor(timeout: TimeInterval = 5, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else {
                XCTFail("condition not met within \(timeout) s", file: file, line: line)
                return
            }
            usleep(10_000)  // polling a condition with a deadline, not a fixed sleep
        }
    }
}

/// A raw client socket that reads a streamed response as it comes (BlockingClient waits for whole responses).
private final class StreamClient {
    let fd: Int32
    var received = ""

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CocoaError(.fileReadUnknown) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw CocoaError(.fileWriteUnknown) }
    }

    /// Everything received until `marker` appears (each read bounded by the socket's 5 s timeout, all by 15 s).
    func read(until marker: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(15)
        while !received.contains(marker) {
            guard Date() < deadline else { throw CocoaError(.fileReadUnknown) }
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { throw CocoaError(.fileReadUnknown) }
            received += String(decoding: buffer[0..<count], as: UTF8.self)
        }
        return received
    }

    func close() { Glibc.close(fd) }
}
