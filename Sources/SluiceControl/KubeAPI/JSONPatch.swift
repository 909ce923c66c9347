// Control layer: JSON Patch (RFC 6902, `application/json-patch+json`, `kubectl patch --type json`) over JSON
// Pointers (RFC 6901): add, remove, replace, move, copy and test, applied in order, all or nothing.
import Foundation


public enum JSONPatch {
    /// Why a patch was refused: `isMalformed` for a document that is not a patch (the API server's 400
    /// BadRequest), else an operation that does not apply to the object (its 422).
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public var description: String
        public var isMalformed: Bool
    }

    /// The API server's limit on operations in one patch.
    static let maxOperations = 10_000

    public static func apply(_ patch: JSONValue, to document: JSONValue) throws(Failure) -> JSONValue {
        guard case .array(let operations) = patch else {
            throw Failure(description: "json: cannot unmarshal \(patch.typeName) into Go value of type jsonpatch.Patch", isMalformed: true)
        }
        guard operations.count <= maxOperations else {
            throw Failure(description: "The allowed maximum operations in a JSON patch is \(maxOperations), got \(operations.count)", isMalformed: true)
        }
        var result = document
        for operation in operations {
            guard case .object = operation, let op = operation["op"]?.stringValue else {
                throw Failure(description: "Unexpected kind: \(operation["op"].map { _ in "op" } ?? "missing op")", isMalformed: true)
            }
            guard let pathText = operation["path"]?.stringValue else {
                throw Failure(description: "\(op) operation missing path", isMalformed: true)
            }
            let path = try pointer(pathText)
            switch op {
            case "add":
                guard let value = operation["value"] else { throw Failure(description: "add operation missing value", isMalformed: true) }
                result = try add(value, at: path, in: result, text: pathText)
            case "remove":
                result = try remove(at: path, in: result, text: pathText, op: "remove")
            case "replace":
                guard let value = operation["value"] else { throw Failure(description: "replace operation missing value", isMalformed: true) }
                // RFC 6902 §4.3: the target location must exist.
                _ = try lookup(at: path, in: result, text: pathText, op: "replace")
                // The whole document (path "") is replaced; anything else is a remove then an add in place.
                result = path.isEmpty ? value : try add(value, at: path, in: remove(at: path, in: result, text: pathText, op: "replace"),
                                                        text: pathText)
            case "move", "copy":
                guard let fromText = operation["from"]?.stringValue else {
                    throw Failure(description: "\(op) operation missing from", isMalformed: true)
                }
                let from = try pointer(fromText)
                let moved = try lookup(at: from, in: result, text: fromText, op: op)
                if op == "move" {
                    // §4.4: a location cannot be moved into one of its children.
                    if path.count > from.count, Array(path.prefix(from.count)) == from {
                        throw Failure(description: "move operation: \(fromText) cannot be moved into its child \(pathText)", isMalformed: false)
                    }
                    result = try remove(at: from, in: result, text: fromText, op: op)
                }
                result = try add(moved, at: path, in: result, text: pathText)
            case "test":
                guard let expected = operation["value"] else { throw Failure(description: "test operation missing value", isMalformed: true) }
                let found = try? lookup(at: path, in: result, text: pathText, op: op)
                // §4.6: equal JSON values (numbers by value: 10 and 10.0 are equal).
                guard let found, equal(found, expected) else {
                    throw Failure(description: "testing value \(pathText) failed: test failed", isMalformed: false)
                }
            default:
                throw Failure(description: "Unexpected kind: \(op)", isMalformed: true)
            }
        }
        return result
    }

    /// RFC 6901 §3-4: "" is the whole document; each `/token` with `~1` for `/` and `~0` for `~`.
    static func pointer(_ text: String) throws(Failure) -> [String] {
        guard !text.isEmpty else { return [] }
        guard text.hasPrefix("/") else {
            throw Failure(description: "JSON pointer must be empty or start with a \"/\": \(text)", isMalformed: false)
        }
        return text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    private static func index(_ token: String, count: Int, allowEnd: Bool) -> Int? {
        if allowEnd && token == "-" { return count }
        // RFC 6901 §4: array indices are decimal without leading zeros.
        guard !token.isEmpty, token.allSatisfy(\.isASCIIDigitCharacter), token == "0" || !token.hasPrefix("0"),
              let i = Int(token) else { return nil }
        return i <= (allowEnd ? count : count - 1) ? i : nil
    }

    static func lookup(at path: [String], in document: JSONValue, text: String, op: String) throws(Failure) -> JSONValue {
        var current = document
        for token in path {
            switch current {
            case .object(let members):
                guard let next = members[token] else { throw missing(op, text) }
                current = next
            case .array(let items):
                guard let i = index(token, count: items.count, allowEnd: false) else { throw missing(op, text) }
                current = items[i]
            case .null, .bool, .int, .double, .string:
                throw missing(op, text)
            }
        }
        return current
    }

    private static func add(_ value: JSONValue, at path: [String], in document: JSONValue, text: String) throws(Failure) -> JSONValue {
        guard let token = path.first else { return value }
        let rest = Array(path.dropFirst())
        switch document {
        case .object(var members):
            if rest.isEmpty {
                members[token] = value
            } else {
                guard let child = members[token] else { throw missing("add", text) }
                members[token] = try add(value, at: rest, in: child, text: text)
            }
            return .object(members)
        case .array(var items):
            guard let i = index(token, count: items.count, allowEnd: rest.isEmpty) else { throw missing("add", text) }
            if rest.isEmpty {
                items.insert(value, at: i)
            } else {
                items[i] = try add(value, at: rest, in: items[i], text: text)
            }
            return .array(items)
        case .null, .bool, .int, .double, .string:
            throw missing("add", text)
        }
    }

    private static func remove(at path: [String], in document: JSONValue, text: String, op: String) throws(Failure) -> JSONValue {
        guard let token = path.first else {
            throw Failure(description: "\(op) operation does not apply: the whole document cannot be removed", isMalformed: false)
        }
        let rest = Array(path.dropFirst())
        switch document {
        case .object(var members):
            guard let child = members[token] else { throw missing(op, text) }
            members[token] = rest.isEmpty ? nil : try remove(at: rest, in: child, text: text, op: op)
            return .object(members)
        case .array(var items):
            guard let i = index(token, count: items.count, allowEnd: false) else { throw missing(op, text) }
            if rest.isEmpty {
                items.remove(at: i)
            } else {
                items[i] = try remove(at: rest, in: items[i], text: text, op: op)
            }
            return .array(items)
        case .null, .bool, .int, .double, .string:
            throw missing(op, text)
        }
    }

    /// evanphx/json-patch's wording, which the API server passes on.
    private static func missing(_ op: String, _ path: String) -> Failure {
        Failure(description: "\(op) operation does not apply: doc is missing path: \"\(path)\": missing value", isMalformed: false)
    }

    private static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy(equal)
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { key, value in y[key].map { equal(value, $0) } ?? false }
        default: return a == b
        }
    }
}

extension Character {
    var isASCIIDigitCharacter: Bool { ("0"..."9").contains(self) }
}
