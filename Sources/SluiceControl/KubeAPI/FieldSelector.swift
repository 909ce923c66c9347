// Control layer: Kubernetes field selectors — `=`, `==` and `!=` on the fields a kind supports (metadata.name and
// metadata.namespace for every custom resource, which `kubectl wait` uses; more for core/v1 pods and events).
import Foundation

public struct FieldSelector: Equatable, Sendable {
    /// The fields the API server takes for every custom resource.
    public static let objectMetaFields: Set<String> = ["metadata.name", "metadata.namespace"]

    public struct Requirement: Equatable, Sendable {
        /// The field's path as written (`metadata.name`, `involvedObject.uid`).
        public var field: String
        public var value: String
        public var isEqual: Bool
    }

    public var requirements: [Requirement]

    /// Parses `text`; an empty text selects everything. A field outside `allowed` is the API server's
    /// 400 `field label not supported: FIELD`.
    public init(parsing text: String, allowed: Set<String> = FieldSelector.objectMetaFields) throws(LabelSelector.ParseError) {
        requirements = []
        for part in text.split(separator: ",", omittingEmptySubsequences: true) {
            let term = String(part)
            var matched: (String, String, Bool)?
            for op in ["!=", "==", "="] {
                guard let range = term.range(of: op) else { continue }
                matched = (String(term[..<range.lowerBound]), String(term[range.upperBound...]), op != "!=")
                break
            }
            guard let (label, value, isEqual) = matched else {
                throw LabelSelector.ParseError(message: "invalid selector: '\(text)'; can't understand '\(term)'")
            }
            let field = label.trimmingCharacters(in: .whitespaces)
            guard allowed.contains(field) else {
                throw LabelSelector.ParseError(message: "field label not supported: \(field)")
            }
            requirements.append(Requirement(field: field, value: value.trimmingCharacters(in: .whitespaces), isEqual: isEqual))
        }
    }

    /// Whether every requirement holds, `value` giving a field's value ("" for a field the object lacks, as the API
    /// server's field sets have every supported field).
    public func matches(_ value: (String) -> String) -> Bool {
        requirements.allSatisfy { (value($0.field) == $0.value) == $0.isEqual }
    }

    public func matches(namespace: String, name: String) -> Bool {
        matches { $0 == "metadata.name" ? name : $0 == "metadata.namespace" ? namespace : "" }
    }

    /// The one name an equality on `metadata.name` pins the selection to (kubectl wait's `metadata.name=NAME`).
    public var name: String? {
        requirements.first { $0.field == "metadata.name" && $0.isEqual }?.value
    }
}
