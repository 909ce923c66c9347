// Control layer: which objects a list or a watch selects — `labelSelector` and `fieldSelector` read from the query
// and matched against an object as GET shows it.
import SluiceBlockingHTTP

struct ObjectSelection: Sendable {
    var labels: LabelSelector
    var fields: FieldSelector

    init(_ request: BlockingRequest) throws(LabelSelector.ParseError) {
        labels = try LabelSelector(parsing: request.query("labelSelector") ?? "")
        fields = try FieldSelector(parsing: request.query("fieldSelector") ?? "")
    }

    var isEverything: Bool { labels.requirements.isEmpty && fields.requirements.isEmpty }

    /// Whether `object` (in `namespace` when one is given) is selected.
    func matches(_ object: JSONValue, namespace: String?) -> Bool {
        let metadata = object["metadata"]
        let objectNamespace = metadata?["namespace"]?.stringValue ?? ""
        if let namespace, objectNamespace != namespace { return false }
        let labelValues = (metadata?["labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
        return labels.matches(labelValues) && fields.matches(namespace: objectNamespace, name: metadata?["name"]?.stringValue ?? "")
    }
}
