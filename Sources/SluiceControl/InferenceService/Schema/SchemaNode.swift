// Control layer: the declarative schema model — a tree of typed nodes with descriptions — that the manifest decoder
// validates documents against and the OpenAPI v2/v3 documents are generated from (one model, never two copies).

/// One node of a schema: its shape and the description `kubectl explain` prints.
struct SchemaNode: Sendable {
    indirect enum Shape: Sendable {
        /// An object with these fields; any other field is unknown (fieldValidation decides what that does).
        case object([SchemaProperty])
        /// A string; `allowed` non-empty: one of these values.
        case string(allowed: [String])
        /// An integer within the bounds; `unit` follows the bounds in the refusal (`must be between 1 and 86400 seconds`).
        case integer(minimum: Int?, maximum: Int?, unit: String?)
        case boolean
        /// `map[string]string` (labels, annotations, nodeSelector).
        case stringMap
        case array(SchemaNode)
        /// An object kept as written (`x-kubernetes-preserve-unknown-fields`): Kubernetes types Sluice does not look
        /// into (`resources`, `affinity`), whose fields are never unknown.
        case opaque
        /// A KServe field Sluice does not implement: refused when set (never ignored), left out of the OpenAPI
        /// documents. The text says what to do instead.
        case unsupported(String)
    }

    var shape: Shape
    var description: String
    /// Set where the OpenAPI documents name the node as a definition of its own and refer to it (ObjectMeta).
    var definition: String?
    /// The OpenAPI `format` (`date-time`, `int32`).
    var format: String?

    init(_ shape: Shape, _ description: String, definition: String? = nil, format: String? = nil) {
        self.shape = shape
        self.description = description
        self.definition = definition
        self.format = format
    }

    static func object(_ description: String, definition: String? = nil, _ properties: [SchemaProperty]) -> SchemaNode {
        SchemaNode(.object(properties), description, definition: definition)
    }

    static func string(_ description: String, allowed: [String] = [], format: String? = nil) -> SchemaNode {
        SchemaNode(.string(allowed: allowed), description, format: format)
    }

    static func integer(_ description: String, minimum: Int? = nil, maximum: Int? = nil, unit: String? = nil) -> SchemaNode {
        SchemaNode(.integer(minimum: minimum, maximum: maximum, unit: unit), description)
    }

    static func unsupported(_ reason: String) -> SchemaNode {
        SchemaNode(.unsupported(reason), "")
    }

    /// The properties of an object node; empty for any other node.
    var properties: [SchemaProperty] {
        guard case .object(let properties) = shape else { return [] }
        return properties
    }

    /// The property `name` of an object node (supported or not); nil when the node has no such field.
    subscript(name: String) -> SchemaNode? {
        properties.first { $0.name == name }?.node
    }

    var isUnsupported: Bool {
        guard case .unsupported = shape else { return false }
        return true
    }
}

/// One named field of an object node.
struct SchemaProperty: Sendable {
    var name: String
    var node: SchemaNode

    init(_ name: String, _ node: SchemaNode) {
        self.name = name
        self.node = node
    }
}
