// Control layer: Kubernetes field selectors on InferenceServices — `metadata.name` and `metadata.namespace` with
// `=`, `==` and `!=`, the fields the API server supports for every custom resource (`kubectl wait` uses them).
import Foundation


public struct FieldSelector: Equatable, Sendable {
    public enum Field: String, Sendable {
        case name = "metadata.name"
        case namespace = "metadata.namespace"
    }

    public struct Requirement: Equatable, Sendable {
        public var field: Field
        public var value: String
        public var isEqual: Bool
    }

    public var requirements: [Requirement]

    /// Parses `text`; an empty text selects everything. A field other than the two is the API server's
    /// 400 `field label not supported: FIELD`.
    public init(parsing text: String) throws(LabelSelector.ParseError) {
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
            guard let field = Field(rawValue: label.trimmingCharacters(in: .whitespaces)) else {
                throw LabelSelector.ParseError(message: "field label not supported: \(label)")
            }
            requirements.append(Requirement(field: field, value: value.trimmingCharacters(in: .whitespaces), isEqual: isEqual))
        }
    }

    public func matches(namespace: String, name: String) -> Bool {
        requirements.allSatisfy { requirement in
            let actual = requirement.field == .name ? name : namespace
            return (actual == requirement.value) == requirement.isEqual
        }
    }

    /// The one name an equality on `metadata.name` pins the selection to (kubectl wait's `metadata.name=NAME`).
    public var name: String? {
        requirements.first { $0.field == .name && $0.isEqual }?.value
    }
}
