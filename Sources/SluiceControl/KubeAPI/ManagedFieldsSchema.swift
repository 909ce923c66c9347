// Control layer: the structural facts of an InferenceService that server-side apply needs (which objects are
// structs, maps or atomic; which lists are keyed, sets or atomic), as KServe's CRD declares them.

/// What structured-merge-diff reads from the schema, looked up by the names of the fields from the root to the node
/// (list items add no name). Taken from KServe's CRD (`config/crd/full/serving.kserve.io_inferenceservices.yaml`:
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, `additionalProperties`) and
/// ObjectMeta's schema. Anything not listed is a struct (an object) or atomic (a list): a CRD list without
/// `x-kubernetes-list-type` is atomic, and so are KServe's `containers`, `volumes` and `tolerations`.
enum ManagedFieldsSchema {
    enum ObjectShape: Equatable {
        /// Named fields (`properties`): a path through them is not itself owned.
        case fields
        /// `additionalProperties` (labels, resource limits): each key is owned as an item.
        case map
        /// `x-kubernetes-map-type: atomic`: owned and replaced whole.
        case atomic
    }

    enum ListShape: Equatable {
        case atomic
        /// `x-kubernetes-list-type: set`: scalars owned one by one (`v:"x"`).
        case set
        /// `x-kubernetes-list-type: map`: items owned by their keys (`k:{"name":"x"}`).
        case keyed([String])
    }

    /// String-valued or quantity-valued maps (`additionalProperties`).
    private static let maps: Set<String> = ["labels", "annotations", "limits", "requests", "overhead", "matchLabels",
                                            "config", "parameters", "volumeAttributes"]
    /// `x-kubernetes-map-type: atomic` in the CRD (the core/v1 references and selectors inside a pod spec).
    private static let atomicObjects: Set<String> = [
        "nodeSelector", "configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef", "fileKeyRef", "configMapRef",
        "secretRef", "selector", "labelSelector", "namespaceSelector", "dataSource", "configMap", "secret",
        "nodePublishSecretRef", "preference", "requiredDuringSchedulingIgnoredDuringExecution",
    ]
    /// `x-kubernetes-list-type: map` and its keys, in the CRD and in ObjectMeta.
    private static let keyedLists: [String: [String]] = [
        "env": ["name"], "ports": ["containerPort", "protocol"], "volumeMounts": ["mountPath"],
        "volumeDevices": ["devicePath"], "claims": ["name"], "resourceClaims": ["name"], "schedulingGates": ["name"],
        "topologySpreadConstraints": ["topologyKey", "whenUnsatisfiable"], "ownerReferences": ["uid"],
    ]
    /// Key fields the schema defaults, which structured-merge-diff uses when an item omits them.
    static let keyDefaults: [String: JSONValue] = ["protocol": "TCP"]

    static func objectShape(_ names: [String]) -> ObjectShape {
        guard let last = names.last else { return .fields }
        if names.count == 1 { return .fields }
        if maps.contains(last) { return .map }
        if atomicObjects.contains(last) { return .atomic }
        return .fields
    }

    static func listShape(_ names: [String]) -> ListShape {
        guard let last = names.last else { return .atomic }
        if names == ["metadata", "finalizers"] { return .set }
        if let keys = keyedLists[last] { return .keyed(keys) }
        return .atomic
    }

    /// The path element of a list item, or nil when the list is atomic for this value (an item without its keys:
    /// the API server refuses such an apply; Sluice owns the list whole instead).
    static func element(of item: JSONValue, in shape: ListShape) -> FieldPathElement? {
        switch shape {
        case .atomic: return nil
        case .set:
            switch item {
            case .object, .array: return nil
            default: return .value(item)
            }
        case .keyed(let keys):
            guard case .object(let members) = item else { return nil }
            var fields: [FieldPathElement.KeyField] = []
            for key in keys.sorted() {
                guard let value = members[key] ?? keyDefaults[key] else { return nil }
                fields.append(.init(name: key, value: value))
            }
            return .key(fields)
        }
    }

    /// The elements of a list's items, in order, or nil when the list is owned whole.
    static func elements(of items: [JSONValue], names: [String]) -> [FieldPathElement]? {
        let shape = listShape(names)
        var elements: [FieldPathElement] = []
        for item in items {
            guard let element = element(of: item, in: shape) else { return nil }
            elements.append(element)
        }
        return elements
    }
}
