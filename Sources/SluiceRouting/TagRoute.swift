// Routing layer: a traffic tag (`latest`, `prev`) bound to the revision it always reaches.

/// A tag and its revision. Exists for every tagged traffic target, whatever its percent,
/// so both tag hosts and the `Knative-Serving-Tag` header can reach a 0 % revision.
public struct TagRoute: Sendable {
    public let tag: String
    /// Index into `ServiceRoute.revisions`.
    public let revisionIndex: Int
    /// `Knative-Serving-Tag: <tag>\r\n`, added toward the backend for requests routed by tag.
    public let upstreamHeader: [UInt8]
    /// The tag lower-cased, compared against header bytes without building a String.
    let key: [UInt8]

    init(tag: String, revisionIndex: Int) {
        self.tag = tag
        self.revisionIndex = revisionIndex
        upstreamHeader = Array("Knative-Serving-Tag: \(tag)\r\n".utf8)
        key = ASCII.lowercasedBytes(tag)
    }
}
