// Control layer: why the gateway could not say where a revision's pods are.

/// Returned by the caller's endpoint lookup (storageUri → endpoints from the gateway config).
/// The revision stays not ready with this reason and message; traffic stays where it was.
public struct EndpointLookupError: Error, Equatable, Sendable {
    /// CamelCase, shown as the condition reason (`EndpointsNotFound`).
    public var reason: String
    public var message: String

    public init(reason: String = "EndpointsNotFound", message: String) {
        self.reason = reason
        self.message = message
    }
}
