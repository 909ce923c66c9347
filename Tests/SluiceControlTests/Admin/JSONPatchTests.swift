// Tests for the patch documents on their own: JSON Patch (RFC 6902) operations and their failures, JSON merge patch
// (RFC 7386).
@testable import SluiceControl
import XCTest

final class JSONPatchTests: XCTestCase {
    func j(_ text: String) -> JSONValue {
        guard let value = JSONValue.parse(Array(text.utf8)) else {
            XCTFail("not JSON: \(text)")
            return .null
        }
        return value
    }

    var document: JSONValue { j(#"{"a": {"b": 1, "list": ["x", "y"]}, "c": "keep", "a/b": 7}"#) }

    func patch(_ operations: String) throws -> JSONValue {
        try JSONPatch.apply(j(operations), to: document)
    }

    func testEachOperation() throws {
        XCTAssertEqual(try patch(#"[{"op": "add", "path": "/a/list/1", "value": "new"}]"#)["a"]?["list"], j(#"["x", "new", "y"]"#))
        XCTAssertEqual(try patch(#"[{"op": "add", "path": "/a/list/-", "value": "end"}]"#)["a"]?["list"], j(#"["x", "y", "end"]"#))
        XCTAssertEqual(try patch(#"[{"op": "add", "path": "/a/b", "value": 2}]"#)["a"]?["b"], .int(2), "add replaces a member")
        XCTAssertNil(try patch(#"[{"op": "remove", "path": "/a/b"}]"#)["a"]?["b"])
        XCTAssertEqual(try patch(#"[{"op": "remove", "path": "/a/list/0"}]"#)["a"]?["list"], j(#"["y"]"#))
        XCTAssertEqual(try patch(#"[{"op": "replace", "path": "/c", "value": "changed"}]"#)["c"], "changed")
        let moved = try patch(#"[{"op": "move", "from": "/c", "path": "/a/c"}]"#)
        XCTAssertNil(moved["c"])
        XCTAssertEqual(moved["a"]?["c"], "keep")
        let copied = try patch(#"[{"op": "copy", "from": "/a/list", "path": "/d"}]"#)
        XCTAssertEqual(copied["d"], j(#"["x", "y"]"#))
        XCTAssertEqual(copied["a"]?["list"], j(#"["x", "y"]"#))
        XCTAssertEqual(try patch(#"[{"op": "test", "path": "/a/b", "value": 1.0}]"#), document, "1 and 1.0 are equal numbers")
        XCTAssertEqual(try patch(#"[{"op": "replace", "path": "/a~1b", "value": 8}]"#)["a/b"], .int(8), "~1 escapes a slash")
        XCTAssertEqual(try patch(#"[{"op": "replace", "path": "", "value": "whole"}]"#), "whole")
    }

    func testFailuresApplyNothingAndSayWhy() throws {
        XCTAssertThrowsError(try patch(#"[{"op": "replace", "path": "/c", "value": "x"}, {"op": "test", "path": "/c", "value": "keep"}]"#)) { error in
            XCTAssertEqual((error as? JSONPatch.Failure)?.description, "testing value /c failed: test failed")
            XCTAssertEqual((error as? JSONPatch.Failure)?.isMalformed, false)
        }
        XCTAssertThrowsError(try patch(#"[{"op": "replace", "path": "/missing", "value": "x"}]"#), "replace needs the target to exist")
        XCTAssertThrowsError(try patch(#"[{"op": "remove", "path": "/a/list/2"}]"#))
        XCTAssertThrowsError(try patch(#"[{"op": "add", "path": "/a/list/01", "value": "x"}]"#), "no leading zeros in an index")
        XCTAssertThrowsError(try patch(#"[{"op": "add", "path": "/no/parent", "value": "x"}]"#))
        XCTAssertThrowsError(try patch(#"[{"op": "move", "from": "/a", "path": "/a/inside"}]"#), "a location cannot move into its child")
        XCTAssertThrowsError(try patch(#"[{"op": "frobnicate", "path": "/a"}]"#)) { error in
            XCTAssertEqual((error as? JSONPatch.Failure)?.isMalformed, true, "an unknown op is a malformed patch (400)")
        }
        XCTAssertThrowsError(try patch(#"{"op": "add"}"#)) { error in
            XCTAssertEqual((error as? JSONPatch.Failure)?.isMalformed, true, "a patch is an array")
        }
    }

    func testMergePatch() {
        // RFC 7386 §3's rules: null removes, arrays and scalars replace, objects merge member by member.
        let target = j(#"{"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}"#)
        let patch = j(#"{"a": "z", "c": {"f": null}, "list": [3], "new": {"x": null, "y": 1}}"#)
        XCTAssertEqual(MergePatch.apply(patch, to: target), j(#"{"a": "z", "c": {"d": "e"}, "list": [3], "new": {"y": 1}}"#))
        XCTAssertEqual(MergePatch.apply(j(#"["x"]"#), to: target), j(#"["x"]"#), "a non-object patch replaces the target")
    }
}
