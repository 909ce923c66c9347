// Control layer: turning a composed YAML document into a `JSONValue`, as kubectl's YAML-to-JSON step does.
import Yams

extension JSONValue {
    /// Converts a YAML node. Plain scalars are typed by YAML's resolver (`10` → int, `true` → bool);
    /// quoted scalars are always strings, so `"true"` in an annotation stays a string.
    /// Throws the problem text and the node's mark when a node has no JSON form.
    static func fromYAML(_ node: Node) throws(ManifestError.Located) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch scalar.style {
            case .singleQuoted, .doubleQuoted, .literal, .folded:
                return .string(scalar.string)
            case .any, .plain:
                break
            }
            // `Tag.name` is internal to Yams; the raw value is the resolved tag URI.
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return node.int.map(JSONValue.int) ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try fromYAML(item)) }
            return .array(items)
        case .mapping(let mapping):
            var members: [String: JSONValue] = [:]
            for (key, value) in mapping {
                // JSON objects have string keys only; go-yaml → JSON refuses other keys too.
                guard case .scalar(let keyScalar) = key else {
                    throw ManifestError.Located(problem: "mapping keys must be strings", mark: key.mark)
                }
                members[keyScalar.string] = try fromYAML(value)
            }
            return .object(members)
        case .alias:
            throw ManifestError.Located(problem: "aliases are not supported in manifests", mark: node.mark)
        }
    }
}
