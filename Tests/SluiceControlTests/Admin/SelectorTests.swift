// Tests for label and field selectors as the API server parses and matches them.
@testable import SluiceControl
import XCTest

final class SelectorTests: XCTestCase {
    func selects(_ text: String, _ labels: [String: String]) throws -> Bool {
        try LabelSelector(parsing: text).matches(labels)
    }

    func testLabelSelectorOperators() throws {
        let labels = ["app": "iris", "tier": "model", "version": "3"]
        XCTAssertTrue(try selects("", labels))
        XCTAssertTrue(try selects("app=iris", labels))
        XCTAssertTrue(try selects("app==iris,tier=model", labels))
        XCTAssertFalse(try selects("app=iris,tier=db", labels), "comma means and")
        XCTAssertTrue(try selects("app!=other", labels))
        XCTAssertTrue(try selects("missing!=x", labels), "!= matches an object without the key")
        XCTAssertTrue(try selects("tier in (db, model)", labels))
        XCTAssertFalse(try selects("tier notin (db,model)", labels))
        XCTAssertTrue(try selects("missing notin (a)", labels), "notin matches an object without the key")
        XCTAssertTrue(try selects("app", labels))
        XCTAssertFalse(try selects("!app", labels))
        XCTAssertTrue(try selects("!missing", labels))
        XCTAssertTrue(try selects("version>2,version<4", labels))
        XCTAssertTrue(try selects("serving.kserve.io/inferenceservice!=x", labels), "prefixed keys")
    }

    func testMalformedSelectorsAreRefused() {
        for text in ["tier in db", "a=b,,c=d", "tier in ()", "bad key=x", "a=b c", "version>x"] {
            XCTAssertThrowsError(try LabelSelector(parsing: text), text)
        }
    }

    func testFieldSelector() throws {
        let selector = try FieldSelector(parsing: "metadata.name=sklearn-iris,metadata.namespace!=default")
        XCTAssertTrue(selector.matches(namespace: "kserve-test", name: "sklearn-iris"))
        XCTAssertFalse(selector.matches(namespace: "default", name: "sklearn-iris"))
        XCTAssertFalse(selector.matches(namespace: "kserve-test", name: "other"))
        XCTAssertEqual(selector.name, "sklearn-iris")
        XCTAssertTrue(try FieldSelector(parsing: "metadata.name==a").matches(namespace: "x", name: "a"))
        XCTAssertThrowsError(try FieldSelector(parsing: "spec.predictor=x")) { error in
            XCTAssertEqual((error as? LabelSelector.ParseError)?.message, "field label not supported: spec.predictor")
        }
        XCTAssertThrowsError(try FieldSelector(parsing: "metadata.name"))
    }
}
