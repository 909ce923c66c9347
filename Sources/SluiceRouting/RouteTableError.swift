// Routing layer: why a set of service specs cannot become a route table, with the field at fault.

/// A rejected route table. `path` names the field like the config file does (`services[1].traffic[0].tag`)
/// so the control layer can report it without translating.
public struct RouteTableError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}
