// Unit: state.json written piece by piece (unchanged services' bytes reused) reads back as the state it was made
// from, after every kind of change; JSONValue's own serializer writes what JSONDecoder reads back, escapes included.
@testable import SluiceControl
import Foundation
import XCTest

final class StateDocumentEncoderTests: XCTestCase {
    typealias F = RolloutFixtures

    private func roundTrip(_ state: RolloutState, _ encoder: StateDocumentEncoder, file: StaticString = #filePath, line: UInt = #line) throws {
        let decoded = try JSONDecoder().decode(RolloutState.self, from: try encoder.encode(state))
        XCTAssertEqual(decoded, state, file: file, line: line)
        // The same document JSONEncoder writes, as values.
        XCTAssertEqual(try JSONDecoder().decode(JSONValue.self, from: try encoder.encode(state)),
                       try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(state)), file: file, line: line)
    }

    func testEveryChangeReadsBackWhileUnchangedServicesReuseTheirBytes() throws {
        let encoder = StateDocumentEncoder()
        var state = RolloutState()
        try roundTrip(state, encoder)
        for name in ["a", "b", "c"] {
            let manifest = RolloutRulesTests.manifest(storageUri: F.model1).replacingOccurrences(of: "name: sklearn-iris", with: "name: \(name)")
            let isvc = try XCTUnwrap(ManifestDecoder.decode(manifest, defaultNamespace: "kserve-test").first)
            _ = state.apply(isvc, now: F.t0, resolveEndpoints: F.lookup)
            try roundTrip(state, encoder)
        }
        // One service changes (a canary), then one goes: each save reads back whole.
        let canary = RolloutRulesTests.manifest(storageUri: F.model2, canary: 10).replacingOccurrences(of: "name: sklearn-iris", with: "name: b")
        _ = state.apply(try XCTUnwrap(ManifestDecoder.decode(canary, defaultNamespace: "kserve-test").first), now: F.t0 + 1, resolveEndpoints: F.lookup)
        try roundTrip(state, encoder)
        XCTAssertTrue(state.delete(namespace: "kserve-test", name: "a"))
        try roundTrip(state, encoder)
    }

    func testSerializedJSONReadsBackWithEscapesAndSortedKeys() throws {
        let value: JSONValue = .object([
            "z": .array([.int(-3), .double(1.5), .double(-0.25), .bool(true), .null, .array([]), .object([:])]),
            "a": .string("quote \" backslash \\ slash / newline \n tab \t bell \u{07} é ✓"),
            "m": .object(["b": .int(Int.max), "a": .double(1e300)]),
        ])
        for pretty in [false, true] {
            let bytes = value.serialized(pretty: pretty)
            XCTAssertEqual(try JSONDecoder().decode(JSONValue.self, from: Data(bytes)), value, "pretty: \(pretty)")
        }
        XCTAssertEqual(value.compactJSONText.prefix(6), #"{"a":""#, "keys sorted")
        XCTAssertTrue(value.compactJSONText.contains(#"slash / newline \n tab \t bell \u0007 é ✓"#), value.compactJSONText)
        XCTAssertEqual(JSONValue.object(["k": .array([.int(1)])]).jsonText, "{\n  \"k\" : [\n    1\n  ]\n}")
    }
}
