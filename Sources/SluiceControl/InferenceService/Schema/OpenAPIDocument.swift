// Control layer: the OpenAPI v3 (group-version document and its index) and v2 documents for InferenceServices,
// generated from the schema model the decoder validates with, so that what kubectl explains is what Sluice accepts.

/// The documents, built once (the model is static). Both spellings come from one walk of `SchemaNode`; they differ
/// only where OpenAPI 3.0 and Swagger 2.0 do (references, parameters, request bodies).
enum OpenAPIDocument {
    static let group = "serving.kserve.io"
    static let version = "v1beta1"
    /// The key of /openapi/v3's index and the path of the group-version document under /openapi/v3/.
    static let groupVersionPath = "apis/\(group)/\(version)"
    static let kindDefinition = "io.kserve.serving.v1beta1.InferenceService"
    static let listDefinition = "io.kserve.serving.v1beta1.InferenceServiceList"
    static let metaPrefix = "io.k8s.apimachinery.pkg.apis.meta.v1."

    /// What the PATCH operation takes: the patch types the admin API applies. Not strategic-merge-patch (which
    /// Kubernetes serves for built-in types only), so kubectl apply sends a JSON merge patch, as for any CRD.
    static let patchContentTypes = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]

    enum Spelling {
        case v3
        case v2

        func reference(_ name: String) -> JSONValue {
            switch self {
            case .v3: return .object(["$ref": .string("#/components/schemas/\(name)")])
            case .v2: return .object(["$ref": .string("#/definitions/\(name)")])
            }
        }
    }

    /// The group-version document kubectl reads for explain and for its fieldValidation check (OpenAPI 3.0).
    static let groupVersion: JSONValue = document(.v3)
    static let groupVersionText: String = groupVersion.jsonText
    /// The index's hash of the group-version document: clients cache the document by the URL it is part of.
    static let groupVersionHash: String = fnv1a(groupVersionText)
    /// /openapi/v3: where each group-version document is.
    static let index: JSONValue = .object(["paths": .object([
        groupVersionPath: .object(["serverRelativeURL": .string("/openapi/v3/\(groupVersionPath)?hash=\(groupVersionHash)")]),
    ])])
    /// /openapi/v2 (Swagger 2.0), as JSON.
    static let swagger: JSONValue = document(.v2)
    static let swaggerText: String = swagger.jsonText

    // MARK: Schemas

    /// The definitions both documents carry: the InferenceService and its list from the model, ObjectMeta from the
    /// model's metadata node, and the meta/v1 types the operations refer to.
    static func definitions(_ spelling: Spelling) -> [String: JSONValue] {
        var definitions: [String: JSONValue] = [:]
        var root = schema(.inferenceService, spelling, definitions: &definitions, defining: true)
        root = root.adding("x-kubernetes-group-version-kind", .array([gvk("InferenceService")]))
        definitions[kindDefinition] = root
        definitions[listDefinition] = .object([
            "description": "InferenceServiceList contains a list of InferenceService",
            "type": "object",
            "required": .array(["items"]),
            "properties": .object([
                "apiVersion": schema(SchemaNode.inferenceService["apiVersion"]!, spelling, definitions: &definitions),
                "kind": schema(SchemaNode.inferenceService["kind"]!, spelling, definitions: &definitions),
                "items": .object(["type": "array", "description": "List of InferenceServices.", "items": spelling.reference(kindDefinition)]),
                "metadata": described(spelling.reference(metaPrefix + "ListMeta"), "Standard list metadata.", spelling),
            ]),
            "x-kubernetes-group-version-kind": .array([gvk("InferenceServiceList")]),
        ])
        definitions[metaPrefix + "ListMeta"] = .object([
            "description": "ListMeta describes metadata that synthetic resources must have, including lists.",
            "type": "object",
            "properties": .object([
                "continue": .object(["type": "string", "description": "continue may be set if the user set a limit on the number of items returned; it is the value to send as the continue query parameter for the next page."]),
                "remainingItemCount": .object(["type": "integer", "format": "int64", "description": "The number of subsequent items in the list which are not included in this list response."]),
                "resourceVersion": .object(["type": "string", "description": "String that identifies the server's internal version of this object that can be used by clients to determine when objects have changed."]),
                "selfLink": .object(["type": "string", "description": "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."]),
            ]),
        ])
        var status: [String: JSONValue] = [:]
        status["apiVersion"] = property("string")
        status["kind"] = property("string")
        status["code"] = property("integer", "Suggested HTTP return code for this status, 0 if not set.")
        status["details"] = .object(["type": "object", "x-kubernetes-preserve-unknown-fields": .bool(true),
                                     "description": "Extended data associated with the reason."])
        status["message"] = property("string", "A human-readable description of the status of this operation.")
        status["metadata"] = described(spelling.reference(metaPrefix + "ListMeta"), "Standard list metadata.", spelling)
        status["reason"] = property("string", "A machine-readable description of why this operation is in the \"Failure\" status.")
        status["status"] = property("string", "Status of the operation. One of: \"Success\" or \"Failure\".")
        definitions[metaPrefix + "Status"] = .object([
            "description": "Status is a return value for calls that don't return other objects.",
            "type": "object",
            "properties": .object(status),
        ])
        definitions[metaPrefix + "Patch"] = .object([
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        ])
        definitions[metaPrefix + "DeleteOptions"] = .object([
            "description": "DeleteOptions may be provided when deleting an API object.",
            "type": "object",
            "properties": .object([
                "apiVersion": .object(["type": "string"]), "kind": .object(["type": "string"]),
                "dryRun": .object(["type": "array", "items": .object(["type": "string"]), "description": "When present, indicates that modifications should not be persisted."]),
                "gracePeriodSeconds": .object(["type": "integer", "format": "int64"]),
                "propagationPolicy": .object(["type": "string"]),
            ]),
        ])
        return definitions
    }

    /// One node as an OpenAPI schema. A node with a definition of its own (ObjectMeta) is added to `definitions`
    /// and referred to, as the API server's documents do (`allOf` in v3, so that the description may sit beside it).
    static func schema(_ node: SchemaNode, _ spelling: Spelling, definitions: inout [String: JSONValue],
                       defining: Bool = false) -> JSONValue {
        if let name = node.definition, !defining {
            if definitions[name] == nil {
                definitions[name] = .null  // taken: a definition that refers to itself stops here
                definitions[name] = schema(node, spelling, definitions: &definitions, defining: true)
            }
            return described(spelling.reference(name), node.description, spelling)
        }
        var object: [String: JSONValue] = [:]
        if !node.description.isEmpty { object["description"] = .string(node.description) }
        if let format = node.format { object["format"] = .string(format) }
        switch node.shape {
        case .object(let properties):
            object["type"] = "object"
            var members: [String: JSONValue] = [:]
            for property in properties where !property.node.isUnsupported {
                members[property.name] = schema(property.node, spelling, definitions: &definitions)
            }
            object["properties"] = .object(members)
        case .string(let allowed):
            object["type"] = "string"
            if !allowed.isEmpty { object["enum"] = .array(allowed.map(JSONValue.string)) }
        case .integer(let minimum, let maximum, _):
            object["type"] = "integer"
            if node.format == nil { object["format"] = "int64" }
            if let minimum { object["minimum"] = .int(minimum) }
            if let maximum { object["maximum"] = .int(maximum) }
        case .boolean:
            object["type"] = "boolean"
        case .stringMap:
            object["type"] = "object"
            object["additionalProperties"] = .object(["type": "string", "default": ""])
        case .array(let item):
            object["type"] = "array"
            object["items"] = schema(item, spelling, definitions: &definitions)
        case .opaque:
            object["type"] = "object"
            object["x-kubernetes-preserve-unknown-fields"] = .bool(true)
        case .unsupported:
            // Never reached for a property (left out above); a bare unsupported node is no schema.
            break
        }
        return .object(object)
    }

    private static func property(_ type: String, _ description: String = "") -> JSONValue {
        description.isEmpty ? .object(["type": .string(type)]) : .object(["type": .string(type), "description": .string(description)])
    }

    private static func described(_ reference: JSONValue, _ description: String, _ spelling: Spelling) -> JSONValue {
        switch spelling {
        case .v3: return .object(["allOf": .array([reference]), "default": .object([:]), "description": .string(description)])
        case .v2: return reference.adding("description", .string(description))
        }
    }

    private static func gvk(_ kind: String) -> JSONValue {
        .object(["group": .string(group), "kind": .string(kind), "version": .string(version)])
    }

    // MARK: Documents and operations

    static func document(_ spelling: Spelling) -> JSONValue {
        let base = "/apis/\(group)/\(version)"
        let namespaced = "\(base)/namespaces/{namespace}/inferenceservices"
        let paths: [String: JSONValue] = [
            "\(base)/inferenceservices": path(spelling, parameters: [], operations: [
                "get": operation(spelling, "list", "list objects of kind InferenceService", id: "listServingKserveIoV1beta1InferenceServiceForAllNamespaces",
                                 query: listParameters, response: listDefinition),
            ]),
            namespaced: path(spelling, parameters: ["namespace"], operations: [
                "get": operation(spelling, "list", "list objects of kind InferenceService", id: "listServingKserveIoV1beta1NamespacedInferenceService",
                                 query: listParameters, response: listDefinition),
                "post": operation(spelling, "post", "create an InferenceService", id: "createServingKserveIoV1beta1NamespacedInferenceService",
                                  query: writeParameters, body: (["application/json", "application/yaml"], kindDefinition), response: kindDefinition,
                                  codes: ["200": "OK", "201": "Created", "202": "Accepted"]),
            ]),
            "\(namespaced)/{name}": path(spelling, parameters: ["name", "namespace"], operations: [
                "get": operation(spelling, "get", "read the specified InferenceService", id: "readServingKserveIoV1beta1NamespacedInferenceService",
                                 query: [], response: kindDefinition),
                "put": operation(spelling, "put", "replace the specified InferenceService", id: "replaceServingKserveIoV1beta1NamespacedInferenceService",
                                 query: writeParameters, body: (["application/json", "application/yaml"], kindDefinition), response: kindDefinition,
                                 codes: ["200": "OK", "201": "Created"]),
                "patch": operation(spelling, "patch", "partially update the specified InferenceService", id: "patchServingKserveIoV1beta1NamespacedInferenceService",
                                   query: writeParameters + ["force"], body: (patchContentTypes, metaPrefix + "Patch"), response: kindDefinition,
                                   codes: ["200": "OK", "201": "Created"]),
                "delete": operation(spelling, "delete", "delete an InferenceService", id: "deleteServingKserveIoV1beta1NamespacedInferenceService",
                                    query: ["dryRun", "gracePeriodSeconds", "propagationPolicy"],
                                    body: (["application/json", "application/yaml"], metaPrefix + "DeleteOptions"), bodyRequired: false,
                                    response: metaPrefix + "Status", codes: ["200": "OK", "202": "Accepted"]),
            ]),
            "\(namespaced)/{name}/status": path(spelling, parameters: ["name", "namespace"], operations: [
                "get": operation(spelling, "get", "read status of the specified InferenceService", id: "readServingKserveIoV1beta1NamespacedInferenceServiceStatus",
                                 query: [], response: kindDefinition),
                "put": operation(spelling, "put", "replace status of the specified InferenceService", id: "replaceServingKserveIoV1beta1NamespacedInferenceServiceStatus",
                                 query: writeParameters, body: (["application/json", "application/yaml"], kindDefinition), response: kindDefinition,
                                 codes: ["200": "OK", "201": "Created"]),
                "patch": operation(spelling, "patch", "partially update status of the specified InferenceService", id: "patchServingKserveIoV1beta1NamespacedInferenceServiceStatus",
                                   query: writeParameters + ["force"], body: (patchContentTypes, metaPrefix + "Patch"), response: kindDefinition,
                                   codes: ["200": "OK", "201": "Created"]),
            ]),
        ]
        let info: JSONValue = .object(["title": "Sluice", "version": .string(version)])
        switch spelling {
        case .v3:
            return .object(["openapi": "3.0.0", "info": info, "paths": .object(paths),
                            "components": .object(["schemas": .object(definitions(.v3))])])
        case .v2:
            return .object(["swagger": "2.0", "info": info, "paths": .object(paths), "definitions": .object(definitions(.v2))])
        }
    }

    static let listParameters = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                                 "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch"]
    /// What create, replace and patch take. `fieldValidation` is what kubectl (1.27+: its QueryParamVerifierV3) looks
    /// for on the PATCH operation before it leaves validation to the server instead of validating on its own.
    static let writeParameters = ["dryRun", "fieldManager", "fieldValidation"]

    /// The query and path parameters, as the API server describes them.
    static let parameters: [String: (type: String, description: String)] = [
        "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag."),
        "continue": ("string", "The continue option should be set when retrieving more results from the server."),
        "fieldSelector": ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything. Sluice supports metadata.name and metadata.namespace."),
        "labelSelector": ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        "limit": ("integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata."),
        "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        "timeoutSeconds": ("integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        "watch": ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        "dryRun": ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        "fieldManager": ("string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        "fieldValidation": ("string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered. Strict is the default."),
        "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."),
        "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be deleted."),
        "propagationPolicy": ("string", "Whether and how garbage collection will be performed."),
        "name": ("string", "name of the InferenceService"),
        "namespace": ("string", "object name and auth scope, such as for teams and projects"),
        "pretty": ("string", "If 'true', then the output is pretty printed."),
    ]

    private static func parameter(_ spelling: Spelling, _ name: String, in location: String) -> JSONValue {
        let (type, description) = parameters[name] ?? ("string", "")
        var object: [String: JSONValue] = ["name": .string(name), "in": .string(location), "description": .string(description)]
        if location == "path" { object["required"] = .bool(true) }
        switch spelling {
        case .v3: object["schema"] = .object(["type": .string(type), "uniqueItems": .bool(true)])
        case .v2:
            object["type"] = .string(type)
            object["uniqueItems"] = .bool(true)
        }
        return .object(object)
    }

    private static func path(_ spelling: Spelling, parameters names: [String], operations: [String: JSONValue]) -> JSONValue {
        var object = operations
        object["parameters"] = .array(names.map { parameter(spelling, $0, in: "path") } + [parameter(spelling, "pretty", in: "query")])
        return .object(object)
    }

    private static func operation(_ spelling: Spelling, _ action: String, _ description: String, id: String, query: [String],
                                  body: (types: [String], definition: String)? = nil, bodyRequired: Bool = true,
                                  response: String, codes: [String: String] = ["200": "OK"]) -> JSONValue {
        let produces = ["application/json", "application/yaml"]
        var object: [String: JSONValue] = [
            "description": .string(description),
            "operationId": .string(id),
            "tags": .array(["servingKserveIo_v1beta1"]),
            "x-kubernetes-action": .string(action),
            "x-kubernetes-group-version-kind": gvk("InferenceService"),
        ]
        var parameters = query.map { parameter(spelling, $0, in: "query") }
        var responses: [String: JSONValue] = ["401": .object(["description": "Unauthorized"])]
        switch spelling {
        case .v3:
            if let body {
                object["requestBody"] = .object([
                    "content": .object(Dictionary(uniqueKeysWithValues: body.types.map { ($0, .object(["schema": spelling.reference(body.definition)])) })),
                    "required": .bool(bodyRequired),
                ])
            }
            for (code, text) in codes {
                responses[code] = .object(["description": .string(text), "content": .object(Dictionary(uniqueKeysWithValues: produces.map {
                    ($0, .object(["schema": spelling.reference(response)]))
                }))])
            }
        case .v2:
            if let body {
                object["consumes"] = .array(body.types.map(JSONValue.string))
                parameters.append(.object(["name": "body", "in": "body", "required": .bool(bodyRequired),
                                           "schema": spelling.reference(body.definition)]))
            }
            object["produces"] = .array(produces.map(JSONValue.string))
            object["schemes"] = .array(["https"])
            for (code, text) in codes {
                responses[code] = .object(["description": .string(text), "schema": spelling.reference(response)])
            }
        }
        object["parameters"] = .array(parameters)
        object["responses"] = .object(responses)
        return .object(object)
    }

    /// FNV-1a, 64 bits, as upper-case hex: a stable name for one version of the document, not a security measure.
    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let digits = String(hash, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

extension JSONValue {
    /// An object with one member added (or replaced); any other value unchanged.
    func adding(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members[key] = value
        return .object(members)
    }
}
