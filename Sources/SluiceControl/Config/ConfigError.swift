// Control layer: a configuration problem, named by file, field path and reason.

/// Why a configuration file was rejected. `path` uses the file's own names (`services[0].traffic`),
/// `line`/`column` are set for YAML syntax errors, where there is no field yet.
public struct ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var path: String
    public var reason: String
    public var line: Int?
    public var column: Int?

    public init(file: String, path: String, reason: String, line: Int? = nil, column: Int? = nil) {
        self.file = file
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
    }

    /// `config/sluice.yaml: services[0].traffic: percents add up to 110, must be 100`.
    public var description: String {
        if let line, let column { return "\(file): line \(line), column \(column): \(reason)" }
        return path.isEmpty ? "\(file): \(reason)" : "\(file): \(path): \(reason)"
    }
}
