// Tests of `sluice describe isvc`'s text: kubectl's generic layout of the object, the revisions table and the
// Events section with kubectl's columns and its "(xN over AGE)" for repeats.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class IsvcDescriptionTests: XCTestCase {
    typealias F = RolloutFixtures

    func testDescribeAfterCreateShowsStatusRevisionsAndEvents() throws {
        var driver = RolloutDriver()
        XCTAssertEqual(try driver.apply(F.create, at: F.t0), .created)
        driver.ready(1, at: F.t0 + 5)
        let resource = try XCTUnwrap(driver.resource)
        let rows = try XCTUnwrap(driver.state.revisionRows(namespace: F.namespace, name: F.name))
        let involved = Event.Involved(namespace: F.namespace, name: F.name)
        let log = EventLog(sink: { _ in })
        log.record(Event("isvc.applied", reason: "Created", involved: involved, message: "InferenceService created: revision \(F.revision(1)) created; traffic: none"), at: F.t0)
        for second in [5.0, 35, 65] {
            log.record(Event("endpoint.unhealthy", reason: "EndpointUnhealthy", level: .warning, involved: involved,
                             message: "endpoint 127.0.0.1:9001 of \(F.revision(1)) fails its readiness probe: connection refused"), at: F.t0 + second)
        }
        let text = IsvcDescription.render(resource, revisions: rows, events: log.events(namespace: F.namespace, name: F.name), now: F.t0 + 125)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

        XCTAssertEqual(Array(lines.prefix(7)), [
            "Name:         sklearn-iris",
            "Namespace:    kserve-test",
            "Labels:       <none>",
            "Annotations:  <none>",
            "API Version:  serving.kserve.io/v1beta1",
            "Kind:         InferenceService",
            "Metadata:",
        ])
        XCTAssertTrue(lines.contains("  Generation:          1"), text)
        XCTAssertTrue(lines.contains("Spec:"), text)
        XCTAssertTrue(lines.contains("      Storage Uri:  gs://kfserving-examples/models/sklearn/1.0/model"), text)
        XCTAssertTrue(lines.contains("      Latest Ready Revision:      \(F.revision(1))"), text)
        XCTAssertTrue(lines.contains("  URL:                  http://sklearn-iris.kserve-test.example.com"), text)
        let revisions = try XCTUnwrap(lines.firstIndex(of: "Revisions:"))
        XCTAssertTrue(lines[revisions + 1].hasPrefix("  NAME "), lines[revisions + 1])
        XCTAssertTrue(lines[revisions + 2].hasPrefix("  \(F.revision(1)) "), lines[revisions + 2])
        let events = try XCTUnwrap(lines.firstIndex(of: "Events:"))
        XCTAssertEqual(Array(lines[events...]), [
            "Events:",
            "  Type     Reason             Age               From    Message",
            "  ----     ------             ----              ----    -------",
            "  Normal   Created            2m5s              sluice  InferenceService created: revision \(F.revision(1)) created; traffic: none",
            "  Warning  EndpointUnhealthy  60s (x3 over 2m)  sluice  endpoint 127.0.0.1:9001 of \(F.revision(1)) fails its readiness probe: connection refused",
            "",
        ])
    }

    func testNoEventsAndLabelsAsKubectlPrintsThem() {
        XCTAssertEqual(IsvcDescription.eventsSection([], now: Date()), "Events:  <none>\n")
        XCTAssertEqual(IsvcDescription.pairs(.object(["b": "2", "a": "1"])), ["a=1", "b=2"])
        XCTAssertEqual(IsvcDescription.smartLabel("latestReadyRevision"), "Latest Ready Revision")
        XCTAssertEqual(IsvcDescription.smartLabel("url"), "URL")
        XCTAssertEqual(IsvcDescription.smartLabel("apiVersion"), "API Version")
        XCTAssertEqual(IsvcDescription.smartLabel("serving.kserve.io/enable-tag-routing"), "serving.kserve.io/enable-tag-routing")
    }
}
