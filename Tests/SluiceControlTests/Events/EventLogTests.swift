// Tests of the event log: the JSON line of an event (order, timestamp, escaping), the per-service history
// (repeats folded as Kubernetes does, at most 50 kept, dropped with the service) and its core/v1 Event objects.
import Foundation
import SluiceControl
@testable import SluiceProxy
import XCTest

final class EventLogTests: XCTestCase {
    let isvc = Event.Involved(namespace: "kserve-test", name: "sklearn-iris")

    func testALineIsOneJSONObjectWithTimeLevelAndEventFirst() throws {
        let capture = EventCapture()
        let log = EventLog(sink: capture.sink)
        let before = Date()
        log.record(Event("revision.not_ready", reason: "RevisionNotReady", level: .warning, involved: isvc,
                         message: "revision r is not ready: GET /v1/models/x answered 503 \"quoted\"\n\tand\u{1} more — ünïcode",
                         fields: [("revision", "r"), ("count", .int(3)), ("ready", .bool(false)),
                                  ("traffic", .array([.object(["percent": .int(100), "revisionName": "r"])]))]))
        let line = try XCTUnwrap(capture.all.first)
        XCTAssertTrue(line.hasPrefix(#"{"time":""#), line)
        XCTAssertTrue(line.contains(#"Z","level":"warning","event":"revision.not_ready","reason":"RevisionNotReady","namespace":"kserve-test","inferenceservice":"sklearn-iris","revision":"r","count":3,"ready":false,"traffic":[{"percent":100,"revisionName":"r"}],"message":"#), line)
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1, "one line, whatever the message holds")
        let object = try XCTUnwrap(capture.objects().first)
        XCTAssertEqual(object["message"] as? String, "revision r is not ready: GET /v1/models/x answered 503 \"quoted\"\n\tand\u{1} more — ünïcode")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let time = try XCTUnwrap((object["time"] as? String).flatMap(formatter.date(from:)), "RFC 3339 with a fraction: \(object["time"] ?? "")")
        XCTAssertEqual(time.timeIntervalSince(before), 0, accuracy: 5)
        XCTAssertTrue((object["time"] as? String)?.hasSuffix("Z") == true, "UTC")
    }

    /// The data plane's operator lines (a paused listener, a pod's failed TLS handshake) are event lines on fd 2 too.
    func testTheDataPlaneLogLineIsAJSONEventOnStderr() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let saved = dup(2)
        XCTAssertGreaterThanOrEqual(saved, 0)
        XCTAssertEqual(dup2(fds[1], 2), 2)
        close(fds[1])
        logLine("upstream 127.0.0.1:8443: TLS handshake failed: certificate verify failed", event: "upstream.tls.handshake_failed",
                fields: ["endpoint": "127.0.0.1:8443"])
        XCTAssertEqual(dup2(saved, 2), 2)  // restores stderr and drops the pipe's last write end
        close(saved)
        var captured: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            captured += buffer[0..<n]
        }
        // Another thread of the test process may have written in the meantime: find this line by its event.
        let line = try XCTUnwrap(String(decoding: captured, as: UTF8.self).split(separator: "\n")
            .first { $0.contains("upstream.tls.handshake_failed") })
        let object = try XCTUnwrap((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], String(line))
        XCTAssertEqual(object["level"] as? String, "warning")
        XCTAssertEqual(object["endpoint"] as? String, "127.0.0.1:8443")
        XCTAssertEqual(object["message"] as? String, "upstream 127.0.0.1:8443: TLS handshake failed: certificate verify failed")
        XCTAssertTrue(line.hasPrefix(#"{"time":"20"#), String(line))
    }

    func testRepeatsFoldIntoOneEventWithCountAndFirstAndLastTime() throws {
        let log = EventLog(sink: { _ in })
        let t0 = Date(timeIntervalSince1970: 1_790_000_000)
        let failing = Event("endpoint.unhealthy", reason: "EndpointUnhealthy", level: .warning, involved: isvc, message: "endpoint e fails")
        log.record(failing, at: t0)
        log.record(Event("endpoint.healthy", reason: "EndpointHealthy", involved: isvc, message: "endpoint e passes"), at: t0 + 1)
        log.record(failing, at: t0 + 2)
        log.record(failing, at: t0 + 5)
        let events = log.events(namespace: "kserve-test", name: "sklearn-iris")
        XCTAssertEqual(events.map(\.reason), ["EndpointHealthy", "EndpointUnhealthy"], "least recent last occurrence first")
        XCTAssertEqual(events[1].count, 3)
        XCTAssertEqual(events[1].firstTimestamp, t0)
        XCTAssertEqual(events[1].lastTimestamp, t0 + 5)
        XCTAssertEqual(events[1].type, "Warning")
        XCTAssertEqual(events[0].type, "Normal")
        XCTAssertTrue(log.events(namespace: "default", name: "sklearn-iris").isEmpty, "kept per namespace and name")

        // The Kubernetes shape the API serves.
        let json = events[1].json
        XCTAssertEqual(json["apiVersion"], "v1")
        XCTAssertEqual(json["kind"], "Event")
        XCTAssertEqual(json["involvedObject"], .object(["apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                                        "namespace": "kserve-test", "name": "sklearn-iris"]))
        XCTAssertEqual(json["count"], .int(3))
        XCTAssertEqual(json["firstTimestamp"], "2026-09-21T14:13:20Z")
        XCTAssertEqual(json["lastTimestamp"], "2026-09-21T14:13:25Z")
        XCTAssertEqual(json["type"], "Warning")
        XCTAssertEqual(json["reason"], "EndpointUnhealthy")
        XCTAssertEqual(json["metadata"]?["namespace"], "kserve-test")
        XCTAssertTrue(json["metadata"]?["name"]?.stringValue?.hasPrefix("sklearn-iris.") == true)
        XCTAssertEqual(StoredEvent(json: json), events[1], "describe reads back what the API sends")
    }

    func testAtMostFiftyKeptPerServiceAndNamesStayUnique() {
        let log = EventLog(sink: { _ in })
        let t0 = Date(timeIntervalSince1970: 1_790_000_000)
        for i in 0..<60 {
            // All at the same instant: the object names must still differ.
            log.record(Event("isvc.applied", reason: "Configured", involved: isvc, message: "apply \(i)"), at: t0)
        }
        let events = log.events(namespace: "kserve-test", name: "sklearn-iris")
        XCTAssertEqual(events.count, EventLog.keptPerService)
        XCTAssertEqual(events.first?.message, "apply 10", "the oldest go first")
        XCTAssertEqual(events.last?.message, "apply 59")
        XCTAssertEqual(Set(events.map(\.objectName)).count, events.count)
        log.forget(namespace: "kserve-test", name: "sklearn-iris")
        XCTAssertTrue(log.events(namespace: "kserve-test", name: "sklearn-iris").isEmpty)
    }

    func testEventsAreCountedByReasonForMetrics() {
        let log = EventLog(sink: { _ in })
        log.record(Event("config.reload_refused", reason: "ReloadRefused", level: .warning, message: "no"))
        log.record(Event("config.reload_refused", reason: "ReloadRefused", level: .warning, message: "no again"))
        log.record(Event("config.reloaded", reason: "Reloaded", message: "yes"))
        var exposition = MetricsExposition(format: .prometheus)
        log.writeMetrics(into: &exposition)
        let metrics = MetricsText(exposition.finish())
        XCTAssertEqual(metrics[#"sluice_events_total{reason="ReloadRefused"}"#], 2)
        XCTAssertEqual(metrics[#"sluice_events_total{reason="Reloaded"}"#], 1)
        XCTAssertEqual(metrics.type(of: "sluice_events_total"), "counter")
    }
}
