// Control layer: a checked YAML mapping of the config file, looked up by key with path-named errors.

/// The entries of a checked mapping, looked up by key.
struct ConfigMapping {
    let path: String
    let entries: [(key: String, value: ConfigNode)]

    subscript(key: String) -> ConfigNode? {
        entries.first { $0.key == key }?.value
    }

    func required(_ key: String) throws(ConfigError) -> ConfigNode {
        guard let value = self[key] else {
            throw ConfigError(file: "", path: path.isEmpty ? key : "\(path).\(key)", reason: "required")
        }
        return value
    }
}
