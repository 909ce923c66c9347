// Control layer: the OpenAPI v2 document in the protobuf form client-go asks for (gnostic's openapi_v2.Document,
// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): kubectl 1.27 and 1.28 need it to apply or explain.

/// Encodes the Swagger 2.0 JSON document as gnostic's `openapi.v2.Document` message (the field numbers are those of
/// gnostic's OpenAPIv2.proto). Covers what the generated document uses: info, paths with their operations,
/// parameters and responses, definitions with their schemas and `x-` vendor extensions.
enum OpenAPIProtobuf {
    /// What client-go's Accept header asks for.
    static let mediaType = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    /// What the answer says it is: the API server's spelling, since Go's mime parser refuses the `@` in a response.
    static let contentType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

    static let swagger: [UInt8] = document(OpenAPIDocument.swagger)

    static func document(_ json: JSONValue) -> [UInt8] {
        var message = ProtobufMessage()
        message.string(1, json["swagger"]?.stringValue)
        if let info = json["info"] {
            var body = ProtobufMessage()
            body.string(1, info["title"]?.stringValue)
            body.string(2, info["version"]?.stringValue)
            message.message(2, body)
        }
        var paths = ProtobufMessage()
        for (name, item) in sortedMembers(json["paths"]) {
            paths.message(2, named(name, pathItem(item)))
        }
        message.message(8, paths)
        var definitions = ProtobufMessage()
        for (name, schema) in sortedMembers(json["definitions"]) {
            definitions.message(1, named(name, self.schema(schema)))
        }
        message.message(9, definitions)
        return message.bytes
    }

    static func pathItem(_ json: JSONValue) -> ProtobufMessage {
        var message = ProtobufMessage()
        for (method, field) in [("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("patch", 8)] {
            if let operation = json[method] { message.message(field, self.operation(operation)) }
        }
        for parameter in json["parameters"]?.arrayValue ?? [] { message.message(9, parametersItem(parameter)) }
        return message
    }

    static func operation(_ json: JSONValue) -> ProtobufMessage {
        var message = ProtobufMessage()
        for tag in json["tags"]?.arrayValue ?? [] { message.string(1, tag.stringValue) }
        message.string(3, json["description"]?.stringValue)
        message.string(5, json["operationId"]?.stringValue)
        for type in json["produces"]?.arrayValue ?? [] { message.string(6, type.stringValue) }
        for type in json["consumes"]?.arrayValue ?? [] { message.string(7, type.stringValue) }
        for parameter in json["parameters"]?.arrayValue ?? [] { message.message(8, parametersItem(parameter)) }
        var responses = ProtobufMessage()
        for (code, response) in sortedMembers(json["responses"]) {
            var body = ProtobufMessage()
            body.string(1, response["description"]?.stringValue)
            if let schema = response["schema"] {
                var item = ProtobufMessage()
                item.message(1, self.schema(schema))
                body.message(2, item)
            }
            var value = ProtobufMessage()
            value.message(1, body)
            responses.message(1, named(code, value))
        }
        message.message(9, responses)
        for scheme in json["schemes"]?.arrayValue ?? [] { message.string(10, scheme.stringValue) }
        vendorExtensions(json, field: 13, into: &message)
        return message
    }

    /// ParametersItem → Parameter → BodyParameter, or NonBodyParameter's query or path sub-schema.
    static func parametersItem(_ json: JSONValue) -> ProtobufMessage {
        var parameter = ProtobufMessage()
        let location = json["in"]?.stringValue ?? ""
        if location == "body" {
            var body = ProtobufMessage()
            body.string(1, json["description"]?.stringValue)
            body.string(2, json["name"]?.stringValue)
            body.string(3, location)
            body.bool(4, json["required"]?.boolValue ?? false)
            if let schema = json["schema"] { body.message(5, self.schema(schema)) }
            parameter.message(1, body)
        } else {
            // Query and path sub-schemas number `type` and `uniqueItems` differently (path has no allowEmptyValue).
            let isPath = location == "path"
            var sub = ProtobufMessage()
            sub.bool(1, json["required"]?.boolValue ?? false)
            sub.string(2, location)
            sub.string(3, json["description"]?.stringValue)
            sub.string(4, json["name"]?.stringValue)
            sub.string(isPath ? 5 : 6, json["type"]?.stringValue)
            sub.bool(isPath ? 19 : 20, json["uniqueItems"]?.boolValue ?? false)
            var nonBody = ProtobufMessage()
            nonBody.message(isPath ? 4 : 3, sub)
            parameter.message(2, nonBody)
        }
        var item = ProtobufMessage()
        item.message(1, parameter)
        return item
    }

    static func schema(_ json: JSONValue) -> ProtobufMessage {
        var message = ProtobufMessage()
        message.string(1, json["$ref"]?.stringValue)
        message.string(2, json["format"]?.stringValue)
        message.string(4, json["description"]?.stringValue)
        if let value = json["default"] { message.message(5, any(value)) }
        if let maximum = json["maximum"]?.intValue { message.double(7, Double(maximum)) }
        if let minimum = json["minimum"]?.intValue { message.double(9, Double(minimum)) }
        for name in json["required"]?.arrayValue ?? [] { message.string(19, name.stringValue) }
        for value in json["enum"]?.arrayValue ?? [] { message.message(20, any(value)) }
        if let additional = json["additionalProperties"] {
            var item = ProtobufMessage()
            item.message(1, schema(additional))
            message.message(21, item)
        }
        if let type = json["type"]?.stringValue {
            var item = ProtobufMessage()
            item.string(1, type)
            message.message(22, item)
        }
        if let items = json["items"] {
            var item = ProtobufMessage()
            item.message(1, schema(items))
            message.message(23, item)
        }
        for part in json["allOf"]?.arrayValue ?? [] { message.message(24, schema(part)) }
        if json["properties"] != nil {
            var properties = ProtobufMessage()
            for (name, property) in sortedMembers(json["properties"]) { properties.message(1, named(name, schema(property))) }
            message.message(25, properties)
        }
        vendorExtensions(json, field: 31, into: &message)
        return message
    }

    /// `x-…` members as NamedAny with the value's YAML (JSON is YAML), as gnostic keeps extensions.
    static func vendorExtensions(_ json: JSONValue, field: Int, into message: inout ProtobufMessage) {
        for (name, value) in sortedMembers(json) where name.hasPrefix("x-") {
            message.message(field, named(name, any(value)))
        }
    }

    /// gnostic's `Any`: the value as YAML text (field 2).
    static func any(_ value: JSONValue) -> ProtobufMessage {
        var message = ProtobufMessage()
        message.string(2, value.compactJSONText + "\n")
        return message
    }

    /// The Named* pair messages: name 1, value 2.
    static func named(_ name: String, _ value: ProtobufMessage) -> ProtobufMessage {
        var message = ProtobufMessage()
        message.string(1, name)
        message.message(2, value)
        return message
    }

    static func sortedMembers(_ json: JSONValue?) -> [(String, JSONValue)] {
        (json?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// A protobuf message being written (wire format: varint keys, length-delimited strings and messages).
struct ProtobufMessage {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func key(_ field: Int, wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    /// proto3 leaves empty strings out.
    mutating func string(_ field: Int, _ value: String?) {
        guard let value, !value.isEmpty else { return }
        key(field, wireType: 2)
        varint(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    mutating func message(_ field: Int, _ value: ProtobufMessage) {
        key(field, wireType: 2)
        varint(UInt64(value.bytes.count))
        bytes.append(contentsOf: value.bytes)
    }

    /// proto3 leaves false out.
    mutating func bool(_ field: Int, _ value: Bool) {
        guard value else { return }
        key(field, wireType: 0)
        varint(1)
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, wireType: 1)
        var bits = value.bitPattern
        for _ in 0..<8 {
            bytes.append(UInt8(bits & 0xFF))
            bits >>= 8
        }
    }
}
