// Control layer: walking a decoded document against the schema model — unknown fields (what fieldValidation rules on),
// wrong types and bounds, KServe fields Sluice refuses — in the API server's words.

/// What one walk found. `value` is the document without its unknown fields (the API server prunes them whatever
/// the fieldValidation directive: Strict refuses the request, Warn and Ignore store the rest).
struct SchemaValidation {
    /// Paths of unknown fields (`spec.predictor.canaryTrafficPercnt`, `spec.x[0].y`), in document order.
    var unknownFields: [String] = []
    /// Wrong types, values out of bounds, unsupported fields: the 422 Invalid causes.
    var causes: [ManifestError.FieldError] = []

    /// Walks `value` against `node`; returns it with unknown fields removed.
    mutating func walk(_ value: JSONValue, _ node: SchemaNode, path: String) -> JSONValue {
        // A null is "not set" for every field, as the decoder has always read it.
        if value == .null { return value }
        switch node.shape {
        case .object(let properties):
            guard case .object(let members) = value else { return typeMismatch(value, "object", path) }
            var kept: [String: JSONValue] = [:]
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                let field = path.isEmpty ? key : "\(path).\(key)"
                guard let property = properties.first(where: { $0.name == key }) else {
                    unknownFields.append(field)
                    continue
                }
                kept[key] = walk(member, property.node, path: field)
            }
            return .object(kept)
        case .string(let allowed):
            guard case .string(let text) = value else { return typeMismatch(value, "string", path) }
            if !allowed.isEmpty && !allowed.contains(text) {
                // apimachinery's `field.NotSupported` list of values.
                causes.append(.init(field: path, kind: .invalid(value: "\"\(text)\""),
                                    detail: "supported values: " + allowed.map { "\"\($0)\"" }.joined(separator: ", ")))
            }
            return value
        case .integer(let minimum, let maximum, let unit):
            guard case .int(let number) = value else { return typeMismatch(value, "integer", path) }
            if number < (minimum ?? .min) || number > (maximum ?? .max) {
                let suffix = unit.map { " \($0)" } ?? ""
                let detail: String
                switch (minimum, maximum) {
                case (let low?, let high?): detail = "must be between \(low) and \(high)\(suffix)"
                case (let low?, nil): detail = "must be greater than or equal to \(low)\(suffix)"
                case (nil, let high?): detail = "must be less than or equal to \(high)\(suffix)"
                case (nil, nil): detail = ""
                }
                causes.append(.init(field: path, kind: .invalid(value: String(number)), detail: detail))
            }
            return value
        case .boolean:
            guard case .bool = value else { return typeMismatch(value, "boolean", path) }
            return value
        case .stringMap:
            guard case .object(let members) = value else { return typeMismatch(value, "object", path) }
            for (key, member) in members.sorted(by: { $0.key < $1.key }) where member.stringValue == nil {
                _ = typeMismatch(member, "string", "\(path).\(key)")
            }
            return value
        case .array(let item):
            guard case .array(let items) = value else { return typeMismatch(value, "array", path) }
            return .array(items.enumerated().map { walk($1, item, path: "\(path)[\($0)]") })
        case .opaque:
            guard case .object = value else { return typeMismatch(value, "object", path) }
            return value
        case .unsupported(let reason):
            causes.append(.init(field: path, kind: .forbidden, detail: "not supported by Sluice: \(reason)"))
            return value
        }
    }

    /// The OpenAPI schema validator's wording (`… in body must be of type integer: "string"`).
    private mutating func typeMismatch(_ value: JSONValue, _ expected: String, _ path: String) -> JSONValue {
        causes.append(.init(field: path, kind: .invalid(value: "\"\(value.typeName)\""),
                            detail: "\(path) in body must be of type \(expected): \"\(value.typeName)\""))
        return value
    }
}
