// Routing layer: the answer to "which service does this Host name?".

/// A matched host. `tag` is set when the host itself was a tag host (`latest-…`, `prev-…`):
/// the request then goes to `service.revisions[tag.revisionIndex]`, bypassing the split.
public struct RouteMatch: Sendable {
    public let service: ServiceRoute
    public let tag: TagRoute?
}
