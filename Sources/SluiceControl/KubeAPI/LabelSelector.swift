// Control layer: Kubernetes label selectors (`labelSelector=app=x,tier!=db,env in (a,b),!legacy`), parsed as
// apimachinery's labels.Parse reads them and matched against an object's labels.
import Foundation


/// A parsed label selector: every requirement must hold (comma means and).
public struct LabelSelector: Equatable, Sendable {
    public enum Requirement: Equatable, Sendable {
        case equals(String, String)
        case notEquals(String, String)
        case isIn(String, Set<String>)
        case notIn(String, Set<String>)
        case exists(String)
        case doesNotExist(String)
        case greaterThan(String, Int)
        case lessThan(String, Int)
    }

    public var requirements: [Requirement]

    /// Why a selector does not parse: the API server's 400 BadRequest message.
    public struct ParseError: Error, Equatable, Sendable {
        public var message: String
    }

    /// Parses `text`; an empty text selects everything.
    public init(parsing text: String) throws(ParseError) {
        requirements = []
        for part in Self.splitTopLevel(text) {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty {
                if text.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                throw ParseError(message: "unable to parse requirement: found ',', expected: identifier")
            }
            requirements.append(try Self.requirement(trimmed))
        }
    }

    /// Whether `labels` satisfy every requirement. As in Kubernetes, `!=` and `notin` also match objects that do
    /// not have the key at all.
    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { requirement in
            switch requirement {
            case .equals(let key, let value): return labels[key] == value
            case .notEquals(let key, let value): return labels[key] != value
            case .isIn(let key, let values): return labels[key].map(values.contains) ?? false
            case .notIn(let key, let values): return !(labels[key].map(values.contains) ?? false)
            case .exists(let key): return labels[key] != nil
            case .doesNotExist(let key): return labels[key] == nil
            case .greaterThan(let key, let bound): return labels[key].flatMap { Int($0) }.map { $0 > bound } ?? false
            case .lessThan(let key, let bound): return labels[key].flatMap { Int($0) }.map { $0 < bound } ?? false
            }
        }
    }

    /// Splits at commas outside parentheses (`env in (a,b),tier=x` is two requirements).
    private static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for character in text {
            switch character {
            case "(": depth += 1; current.append(character)
            case ")": depth -= 1; current.append(character)
            case "," where depth == 0: parts.append(current); current = ""
            default: current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    private static func requirement(_ text: String) throws(ParseError) -> Requirement {
        if text.hasPrefix("!") {
            let key = text.dropFirst().trimmingCharacters(in: .whitespaces)
            try validateKey(key)
            return .doesNotExist(key)
        }
        // `key in (…)` / `key notin (…)`: the key is the first word.
        let words = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        if words.count == 2 {
            let rest = words[1].trimmingCharacters(in: .whitespaces)
            for (word, isIn) in [("notin", false), ("in", true)] where rest.hasPrefix(word) {
                let list = rest.dropFirst(word.count).trimmingCharacters(in: .whitespaces)
                guard list.hasPrefix("("), list.hasSuffix(")") else {
                    throw ParseError(message: "unable to parse requirement: found '\(list)', expected: '('")
                }
                let key = String(words[0])
                try validateKey(key)
                let values = list.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: false)
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                guard !values.isEmpty, !(values.count == 1 && values[0].isEmpty) else {
                    throw ParseError(message: "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
                }
                for value in values { try validateValue(value) }
                return isIn ? .isIn(key, Set(values)) : .notIn(key, Set(values))
            }
        }
        for op in ["!=", "==", "=", ">", "<"] {
            guard let range = text.range(of: op) else { continue }
            let key = text[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
            let value = text[range.upperBound...].trimmingCharacters(in: .whitespaces)
            try validateKey(key)
            switch op {
            case ">", "<":
                guard let bound = Int(value) else {
                    throw ParseError(message: "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
                }
                return op == ">" ? .greaterThan(key, bound) : .lessThan(key, bound)
            default:
                try validateValue(value)
                return op == "!=" ? .notEquals(key, value) : .equals(key, value)
            }
        }
        try validateKey(text)
        return .exists(text)
    }

    /// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
    private static func validateKey(_ key: String) throws(ParseError) {
        let name = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).last.map(String.init) ?? key
        guard !key.isEmpty, !name.isEmpty, name.utf8.count <= 63, key.utf8.count <= 253 + 64,
              key.utf8.allSatisfy({ isNameByte($0) || $0 == UInt8(ascii: "/") }), key.utf8.count(where: { $0 == UInt8(ascii: "/") }) <= 1 else {
            throw ParseError(message: "unable to parse requirement: invalid label key \"\(key)\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
        }
    }

    /// A label value: empty, or at most 63 name characters.
    private static func validateValue(_ value: String) throws(ParseError) {
        guard value.utf8.count <= 63, value.utf8.allSatisfy(isNameByte) else {
            throw ParseError(message: "unable to parse requirement: invalid label value: \"\(value)\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
        }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: ".")
    }
}
