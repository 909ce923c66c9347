// Control layer: a set of field paths (structured-merge-diff's `fieldpath.Set`) and its `FieldsV1` form, the
// `fieldsV1` of a managedFields entry.
import Foundation

/// One step of a field path, as structured-merge-diff names them: a field `f:name`, an associative list's item by
/// its keys `k:{"name":"x"}`, a set's item by value `v:"x"`, or an index `i:3` (never produced: Sluice's lists are
/// atomic, sets or keyed).
enum FieldPathElement: Hashable, Comparable, Sendable {
    case field(String)
    /// The key fields sorted by name, as structured-merge-diff sorts them.
    case key([KeyField])
    case value(JSONValue)
    case index(Int)

    struct KeyField: Hashable, Sendable {
        var name: String
        var value: JSONValue
    }

    /// structured-merge-diff's order: fields, then keys, then values, then indices.
    private var rank: Int {
        switch self {
        case .field: return 0
        case .key: return 1
        case .value: return 2
        case .index: return 3
        }
    }

    static func < (lhs: FieldPathElement, rhs: FieldPathElement) -> Bool {
        switch (lhs, rhs) {
        case (.field(let a), .field(let b)): return a < b
        case (.index(let a), .index(let b)): return a < b
        case (.key, .key), (.value, .value): return lhs.fieldsV1Key < rhs.fieldsV1Key
        default: return lhs.rank < rhs.rank
        }
    }

    /// The member name in `fieldsV1` (`fieldpath/serialize-pe.go`).
    var fieldsV1Key: String {
        switch self {
        case .field(let name): return "f:" + name
        case .key(let fields):
            let members = fields.map { GoJSON.string($0.name) + ":" + GoJSON.encode($0.value) }
            return "k:{" + members.joined(separator: ",") + "}"
        case .value(let value): return "v:" + GoJSON.encode(value)
        case .index(let index): return "i:\(index)"
        }
    }

    /// Parses a `fieldsV1` member name; nil for anything else.
    init?(fieldsV1Key text: String) {
        guard text.count >= 2, text.dropFirst().first == ":" else { return nil }
        let body = String(text.dropFirst(2))
        switch text.first {
        case "f": self = .field(body)
        case "i":
            guard let index = Int(body) else { return nil }
            self = .index(index)
        case "v":
            guard let value = GoJSON.decode(body) else { return nil }
            self = .value(value)
        case "k":
            guard case .object(let members)? = GoJSON.decode(body) else { return nil }
            self = .key(members.map { KeyField(name: $0.key, value: $0.value) }.sorted { $0.name < $1.name })
        default: return nil
        }
    }

    /// `fieldpath.PathElement.String()`: `.name`, `[name="x",port=80]`, `[=x]`, `[3]`.
    var pathText: String {
        switch self {
        case .field(let name): return "." + name
        case .key(let fields): return "[" + fields.map { "\($0.name)=\(GoJSON.valueText($0.value))" }.joined(separator: ",") + "]"
        case .value(let value): return "[=\(GoJSON.valueText(value))]"
        case .index(let index): return "[\(index)]"
        }
    }
}

/// A set of field paths as a tree: `members` are the paths that end at this node's children, `children` the
/// subtrees below them (a path may be a member and have children: `fieldsV1` writes that as `".": {}`).
struct FieldSet: Equatable, Sendable {
    var members: Set<FieldPathElement> = []
    var children: [FieldPathElement: FieldSet] = [:]

    var isEmpty: Bool { members.isEmpty && children.values.allSatisfy(\.isEmpty) }

    mutating func insert(_ path: ArraySlice<FieldPathElement>) {
        guard let first = path.first else { return }
        if path.count == 1 {
            members.insert(first)
        } else {
            children[first, default: FieldSet()].insert(path.dropFirst())
        }
    }

    mutating func insert(_ path: [FieldPathElement]) { insert(path[...]) }

    func contains(_ path: [FieldPathElement]) -> Bool {
        guard let first = path.first else { return false }
        if path.count == 1 { return members.contains(first) }
        return children[first]?.contains(Array(path.dropFirst())) ?? false
    }

    /// The subtree below `element` (structured-merge-diff's `WithPrefix`).
    func below(_ element: FieldPathElement) -> FieldSet { children[element] ?? FieldSet() }

    func union(_ other: FieldSet) -> FieldSet {
        var result = self
        result.members.formUnion(other.members)
        for (element, child) in other.children {
            result.children[element] = (result.children[element] ?? FieldSet()).union(child)
        }
        return result
    }

    /// Exact paths of `self` that are not in `other` (not recursive: a member of `other` does not take the
    /// paths below it away).
    func subtracting(_ other: FieldSet) -> FieldSet {
        var result = FieldSet(members: members.subtracting(other.members))
        for (element, child) in children {
            let rest = other.children[element].map { child.subtracting($0) } ?? child
            if !rest.isEmpty { result.children[element] = rest }
        }
        return result
    }

    func intersection(_ other: FieldSet) -> FieldSet {
        var result = FieldSet(members: members.intersection(other.members))
        for (element, child) in children {
            guard let theirs = other.children[element] else { continue }
            let common = child.intersection(theirs)
            if !common.isEmpty { result.children[element] = common }
        }
        return result
    }

    /// Every path, in structured-merge-diff's iteration order: this node's members, then each child's subtree.
    var paths: [[FieldPathElement]] {
        var result = members.sorted().map { [$0] }
        for element in children.keys.sorted() {
            result += children[element]!.paths.map { [element] + $0 }
        }
        return result
    }

    /// `fieldsV1`: each member `{}`, each subtree an object, `".": {}` for a member that has a subtree too.
    var fieldsV1: JSONValue {
        var object: [String: JSONValue] = [:]
        for element in members where children[element]?.isEmpty ?? true {
            object[element.fieldsV1Key] = .object([:])
        }
        for (element, child) in children where !child.isEmpty {
            guard case .object(var nested) = child.fieldsV1 else { continue }
            if members.contains(element) { nested["."] = .object([:]) }
            object[element.fieldsV1Key] = .object(nested)
        }
        return .object(object)
    }

    /// Reads `fieldsV1`; nil when a member name is not a path element or a value is not an object.
    init?(fieldsV1 value: JSONValue) {
        guard case .object(let object) = value else { return nil }
        for (key, nested) in object where key != "." {
            guard let element = FieldPathElement(fieldsV1Key: key), case .object(let inner) = nested else { return nil }
            if inner.isEmpty || inner["."] != nil { members.insert(element) }
            guard let child = FieldSet(fieldsV1: nested) else { return nil }
            if !child.isEmpty { children[element] = child }
        }
    }

    init(members: Set<FieldPathElement> = [], children: [FieldPathElement: FieldSet] = [:]) {
        self.members = members
        self.children = children
    }

    /// `fieldpath.Path.String()`: `.spec.predictor.canaryTrafficPercent`.
    static func text(_ path: [FieldPathElement]) -> String { path.map(\.pathText).joined() }
}

/// JSON as Go's `encoding/json` writes it (sorted keys, `<`, `>`, `&` escaped), for `k:`/`v:` path elements and the
/// `last-applied-configuration` annotation, which must match what the API server writes byte for byte.
enum GoJSON {
    static func encode(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .int(let number): return String(number)
        case .double(let number):
            // Go prints an integral float64 without a fraction (`1`, not `1.0`).
            if number.rounded() == number, abs(number) < 1e21 { return String(Int(number)) }
            return String(number)
        case .string(let text): return string(text)
        case .array(let items): return "[" + items.map(encode).joined(separator: ",") + "]"
        case .object(let members):
            return "{" + members.keys.sorted().map { string($0) + ":" + encode(members[$0]!) }.joined(separator: ",") + "}"
        }
    }

    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                out += String(format: "\\u%04x", scalar.value)
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// `value.ToString` of structured-merge-diff, for paths in conflict messages: strings quoted, numbers plain.
    static func valueText(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return string(text)
        default: return encode(value)
        }
    }

    /// Any JSON text, scalars included (wrapped in an array so the decoder never has to accept a fragment).
    static func decode(_ text: String) -> JSONValue? {
        guard let array = try? JSONDecoder().decode([JSONValue].self, from: Data("[\(text)]".utf8)), array.count == 1 else {
            return nil
        }
        return array[0]
    }
}
