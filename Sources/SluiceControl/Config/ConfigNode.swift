// Control layer: a YAML node with its field path, read with typed accessors that fail with that path.
import Foundation
import Yams

/// A node of the configuration document plus where it sits (`services[0].traffic[1].percent`).
/// Errors leave `file` empty; `GatewayConfig.parse` fills it in.
struct ConfigNode {
    let node: Node
    let path: String

    func error(_ reason: String) -> ConfigError {
        ConfigError(file: "", path: path, reason: reason)
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// What the node holds, for "expected X, got Y" messages.
    var found: String {
        switch node {
        case .scalar(let scalar): node.null != nil ? "nothing" : "\"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// A mapping whose keys must all be in `keys`; an unknown key is reported at its own path.
    func mapping(keys: [String]) throws(ConfigError) -> ConfigMapping {
        let entries = try entries()
        for (key, value) in entries where !keys.contains(key) {
            throw ConfigError(file: "", path: value.path, reason: "unknown key, expected one of \(keys.joined(separator: ", "))")
        }
        return ConfigMapping(path: path, entries: entries)
    }

    /// A mapping with free-form keys (revision names), in file order.
    func entries() throws(ConfigError) -> [(key: String, value: ConfigNode)] {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, got \(found)") }
        var result: [(key: String, value: ConfigNode)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw error("keys must be plain strings, got \(ConfigNode(node: key, path: path).found)")
            }
            result.append((scalar.string, ConfigNode(node: value, path: child(scalar.string))))
        }
        return result
    }

    func list() throws(ConfigError) -> [ConfigNode] {
        guard case .sequence(let sequence) = node else { throw error("expected a list, got \(found)") }
        return sequence.enumerated().map { ConfigNode(node: $1, path: "\(path)[\($0)]") }
    }

    func string() throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node, node.null == nil else { throw error("expected a string, got \(found)") }
        return scalar.string
    }

    func int() throws(ConfigError) -> Int {
        guard let value = node.int else { throw error("expected an integer, got \(found)") }
        return value
    }

    func bool() throws(ConfigError) -> Bool {
        guard let value = node.bool else { throw error("expected true or false, got \(found)") }
        return value
    }

    /// A number in `range` (integers allowed: `sample: 1`); NaN and infinities are outside every range.
    func double(in range: ClosedRange<Double>) throws(ConfigError) -> Double {
        guard case .scalar = node, let value = node.float else { throw error("expected a number, got \(found)") }
        guard range.contains(value) else { throw error("\(scalarText) is outside \(range.lowerBound)...\(range.upperBound)") }
        return value
    }

    /// The scalar as written (`1.5`, not `1.5000000000000002`), for messages.
    private var scalarText: String {
        if case .scalar(let scalar) = node { return scalar.string }
        return found
    }

    func int(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let value = try int()
        guard range.contains(value) else { throw error("\(value) is outside \(range.lowerBound)...\(range.upperBound)") }
        return value
    }
}
