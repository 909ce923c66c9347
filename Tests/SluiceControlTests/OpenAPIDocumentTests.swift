// Tests for the OpenAPI documents: generated from the decoder's schema model (every field the decoder accepts, none
// it refuses, checked both ways), the PATCH operation kubectl inspects, and how the admin API serves them.
import Foundation
import SluiceBlockingHTTP
@testable import SluiceControl
import Yams
import XCTest

final class OpenAPIDocumentTests: XCTestCase {
    typealias F = RolloutFixtures

    static let v3 = OpenAPIDocument.groupVersion
    static var schemas: JSONValue { v3["components"]?["schemas"] ?? .null }

    /// A schema with its reference followed (`$ref`, or `allOf: [{$ref}]` as the API server writes it).
    static func resolve(_ schema: JSONValue, in definitions: JSONValue, prefix: String) -> JSONValue {
        let reference = schema["$ref"]?.stringValue ?? schema["allOf"]?.arrayValue?.first?["$ref"]?.stringValue
        guard let reference, reference.hasPrefix(prefix), let target = definitions[String(reference.dropFirst(prefix.count))] else { return schema }
        return target
    }

    /// Every field path an OpenAPI schema describes (through objects; `metadata.labels`, `spec.predictor.model`).
    static func documentedPaths(_ schema: JSONValue, definitions: JSONValue, prefix: String, path: String = "") -> [String] {
        let resolved = resolve(schema, in: definitions, prefix: prefix)
        guard let properties = resolved["properties"]?.objectValue else { return [] }
        return properties.keys.sorted().flatMap { key -> [String] in
            let field = path.isEmpty ? key : "\(path).\(key)"
            return [field] + documentedPaths(properties[key]!, definitions: definitions, prefix: prefix, path: field)
        }
    }

    /// The model's paths: supported ones, and the unsupported KServe fields (refused, never documented).
    static func modelPaths(_ node: SchemaNode, path: String = "") -> (supported: [String], unsupported: [String]) {
        var supported: [String] = []
        var unsupported: [String] = []
        for property in node.properties {
            let field = path.isEmpty ? property.name : "\(path).\(property.name)"
            if property.node.isUnsupported {
                unsupported.append(field)
                continue
            }
            supported.append(field)
            let inner = modelPaths(property.node, path: field)
            supported += inner.supported
            unsupported += inner.unsupported
        }
        return (supported, unsupported)
    }

    /// A value of the type the OpenAPI schema at `path` declares: what a user could write there.
    static func sample(_ schema: JSONValue) -> JSONValue {
        switch schema["type"]?.stringValue {
        case "string": return schema["enum"]?.arrayValue?.first ?? "x"
        case "integer": return .int(schema["minimum"]?.intValue ?? 1)
        case "boolean": return .bool(true)
        case "array": return .array([sample(schema["items"] ?? .null)])
        case "object" where schema["additionalProperties"] != nil: return .object(["k": "v"])
        default: return .object([:])
        }
    }

    /// The seed's first manifest with `value` set at `path` (intermediate objects created; an empty object where
    /// the manifest has one already keeps what it has).
    static func manifest(setting path: String, to value: JSONValue) throws -> String {
        let base = try JSONValue.fromYAML(XCTUnwrap(Yams.compose(yaml: F.create)))
        func set(_ object: JSONValue, _ keys: ArraySlice<String>) -> JSONValue {
            guard let key = keys.first else { return value == .object([:]) && object.objectValue != nil ? object : value }
            var members = object.objectValue ?? [:]
            members[key] = set(members[key] ?? .object([:]), keys.dropFirst())
            return .object(members)
        }
        return set(base, ArraySlice(path.split(separator: ".").map(String.init))).jsonText
    }

    func testEveryDocumentedFieldIsOneTheDecoderAccepts() throws {
        let prefix = "#/components/schemas/"
        let root = try XCTUnwrap(Self.schemas[OpenAPIDocument.kindDefinition])
        let paths = Self.documentedPaths(root, definitions: Self.schemas, prefix: prefix)
        XCTAssertTrue(paths.contains("spec.predictor.canaryTrafficPercent"))
        XCTAssertTrue(paths.contains("metadata.annotations"))
        for path in paths {
            // The schema at the path, to write a value of its type there.
            var schema = root
            for key in path.split(separator: ".") {
                schema = Self.resolve(schema, in: Self.schemas, prefix: prefix)["properties"]?[String(key)] ?? .null
            }
            let text = try Self.manifest(setting: path, to: Self.sample(Self.resolve(schema, in: Self.schemas, prefix: prefix)))
            do {
                _ = try ManifestDecoder.decode(text, defaultNamespace: F.namespace, fieldValidation: .strict)
            } catch {
                // Semantic refusals (two predictor implementations, say) are fine; the field itself must be known,
                // of the documented type and supported.
                XCTAssertEqual(error.strictErrors, [], path)
                XCTAssertEqual(error.causes.filter { $0.field.hasPrefix(path) }.map(\.description), [], path)
            }
        }
    }

    func testEveryFieldTheModelSupportsIsDocumentedAndNoRefusedOneIs() throws {
        let root = try XCTUnwrap(Self.schemas[OpenAPIDocument.kindDefinition])
        let documented = Set(Self.documentedPaths(root, definitions: Self.schemas, prefix: "#/components/schemas/"))
        let model = Self.modelPaths(.inferenceService)
        XCTAssertEqual(Set(model.supported), documented, "the v3 document describes exactly the model's supported fields")
        XCTAssertTrue(model.unsupported.contains("spec.transformer"))
        XCTAssertTrue(model.unsupported.contains("spec.predictor.containers"))
        for path in model.unsupported {
            XCTAssertFalse(documented.contains(path), path)
            let text = try Self.manifest(setting: path, to: .object([:]))
            XCTAssertThrowsError(try ManifestDecoder.decode(text, defaultNamespace: F.namespace, fieldValidation: .ignore), path) { error in
                let causes = (error as? ManifestError)?.causes ?? []
                XCTAssertEqual(causes.filter { $0.field == path && $0.kind == .forbidden }.count, 1, "\(path): \(causes)")
            }
        }
        // The v2 document is the same walk in Swagger 2.0's spelling.
        let definitions = try XCTUnwrap(OpenAPIDocument.swagger["definitions"])
        let v2Root = try XCTUnwrap(definitions[OpenAPIDocument.kindDefinition])
        XCTAssertEqual(Set(Self.documentedPaths(v2Root, definitions: definitions, prefix: "#/definitions/")), documented)
    }

    func testSchemasCarryKindsBoundsAndDescriptionsForExplain() throws {
        let root = try XCTUnwrap(Self.schemas[OpenAPIDocument.kindDefinition])
        XCTAssertEqual(root["x-kubernetes-group-version-kind"],
                       .array([.object(["group": "serving.kserve.io", "kind": "InferenceService", "version": "v1beta1"])]))
        XCTAssertEqual(Self.schemas[OpenAPIDocument.listDefinition]?["properties"]?["items"]?["items"]?["$ref"],
                       .string("#/components/schemas/io.kserve.serving.v1beta1.InferenceService"))
        XCTAssertNotNil(Self.schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]?["properties"]?["labels"])
        let canary = try XCTUnwrap(root["properties"]?["spec"]?["properties"]?["predictor"]?["properties"]?["canaryTrafficPercent"])
        XCTAssertEqual(canary["type"], "integer")
        XCTAssertEqual(canary["minimum"], .int(0))
        XCTAssertEqual(canary["maximum"], .int(100))
        XCTAssertTrue(canary["description"]?.stringValue?.contains("traffic split") ?? false)
        let resources = root["properties"]?["spec"]?["properties"]?["predictor"]?["properties"]?["model"]?["properties"]?["resources"]
        XCTAssertEqual(resources?["x-kubernetes-preserve-unknown-fields"], .bool(true))
    }

    func testPatchDeclaresFieldValidationAndTheMergePatchTypes() throws {
        let path = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}"
        let patch = try XCTUnwrap(Self.v3["paths"]?[path]?["patch"])
        XCTAssertEqual(patch["x-kubernetes-group-version-kind"],
                       .object(["group": "serving.kserve.io", "kind": "InferenceService", "version": "v1beta1"]))
        let query = (patch["parameters"]?.arrayValue ?? []).filter { $0["in"] == "query" }.compactMap { $0["name"]?.stringValue }
        XCTAssertTrue(query.contains("fieldValidation"), "kubectl 1.27+ then leaves validation to the server")
        XCTAssertTrue(query.contains("fieldManager"))
        XCTAssertEqual(patch["requestBody"]?["content"]?.objectValue?.keys.sorted(),
                       ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"])
        for method in ["post", "put"] {
            let parameters = Self.v3["paths"]?[method == "post" ? "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices" : path]?[method]?["parameters"]
            XCTAssertTrue((parameters?.arrayValue ?? []).contains { $0["name"] == "fieldValidation" }, method)
        }
        let v2Patch = try XCTUnwrap(OpenAPIDocument.swagger["paths"]?[path]?["patch"])
        XCTAssertTrue((v2Patch["parameters"]?.arrayValue ?? []).contains { $0["name"] == "fieldValidation" && $0["in"] == "query" })
        XCTAssertEqual(v2Patch["consumes"], .array(["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]))
    }

    func testTheAdminAPIServesTheIndexTheDocumentAndV2AsJSON() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let api = AdminAPI(plane: plane, token: nil)
        let index = api.handle(BlockingRequest(method: "GET", target: "/openapi/v3"))
        XCTAssertEqual(index.status, 200)
        let url = try XCTUnwrap(JSONValue.parse(index.body)?["paths"]?["apis/serving.kserve.io/v1beta1"]?["serverRelativeURL"]?.stringValue)
        XCTAssertEqual(url, "/openapi/v3/apis/serving.kserve.io/v1beta1?hash=\(OpenAPIDocument.groupVersionHash)")
        let document = api.handle(BlockingRequest(method: "GET", target: url, headers: [("Accept", "application/json")]))
        XCTAssertEqual(document.status, 200)
        XCTAssertEqual(JSONValue.parse(document.body), OpenAPIDocument.groupVersion)
        XCTAssertEqual(document.headers.first { $0.0 == "Cache-Control" }?.1, "public, immutable", "the hash names this version")
        let stale = api.handle(BlockingRequest(method: "GET", target: "/openapi/v3/apis/serving.kserve.io/v1beta1?hash=OLD"))
        XCTAssertEqual(stale.headers.first { $0.0 == "Cache-Control" }?.1, "no-cache, private")

        let v2 = api.handle(BlockingRequest(method: "GET", target: "/openapi/v2", headers: [("Accept", "application/json")]))
        XCTAssertEqual(v2.status, 200)
        XCTAssertEqual(JSONValue.parse(v2.body)?["swagger"], "2.0")
        XCTAssertEqual(api.handle(BlockingRequest(method: "GET", target: "/openapi/v3/apis/apps/v1")).status, 404)
        XCTAssertEqual(api.handle(BlockingRequest(method: "POST", target: "/openapi/v3")).status, 405)
    }

    /// The length-delimited and varint fields of one protobuf message, in order: enough to read gnostic's messages back.
    static func fields(_ bytes: ArraySlice<UInt8>) -> [(field: Int, bytes: ArraySlice<UInt8>)] {
        var result: [(Int, ArraySlice<UInt8>)] = []
        var index = bytes.startIndex
        func varint() -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.endIndex {
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
            }
            return value
        }
        while index < bytes.endIndex {
            let key = varint()
            switch key & 7 {
            case 0: _ = varint(); result.append((Int(key >> 3), []))
            case 1: index += 8; result.append((Int(key >> 3), []))
            case 2:
                let length = Int(varint())
                result.append((Int(key >> 3), bytes[index..<index + length]))
                index += length
            default: return result
            }
        }
        return result
    }

    static func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    func testV2AsProtobufForClientGoCarriesTheDefinitionsAndThePatchParameters() throws {
        let plane = try ControlPlane(config: GatewayConfig(services: []), store: nil) { _ in }
        let response = AdminAPI(plane: plane, token: nil).handle(BlockingRequest(
            method: "GET", target: "/openapi/v2", headers: [("Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")]))
        XCTAssertEqual(response.status, 200)
        // Go's mime parser refuses the `@` of the Accept spelling in a Content-Type (kubectl 1.27 failed on it).
        XCTAssertEqual(response.headers.first { $0.0 == "Content-Type" }?.1, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        let document = Self.fields(response.body[...])
        XCTAssertEqual(document.first { $0.field == 1 }.map { Self.text($0.bytes) }, "2.0", "Document.swagger")

        // Document.definitions(9) → NamedSchema(1){name 1, value 2} → Schema: vendor_extension(31) names the kind.
        let definitions = try XCTUnwrap(document.first { $0.field == 9 })
        let named = Self.fields(definitions.bytes).map { Self.fields($0.bytes) }
        let kind = try XCTUnwrap(named.first { pair in pair.contains { $0.field == 1 && Self.text($0.bytes) == OpenAPIDocument.kindDefinition } })
        let schema = Self.fields(try XCTUnwrap(kind.first { $0.field == 2 }).bytes)
        let extensions = schema.filter { $0.field == 31 }.map { Self.fields($0.bytes) }
        let gvk = try XCTUnwrap(extensions.first { $0.contains { $0.field == 1 && Self.text($0.bytes) == "x-kubernetes-group-version-kind" } })
        let yaml = Self.fields(try XCTUnwrap(gvk.first { $0.field == 2 }).bytes).first { $0.field == 2 }.map { Self.text($0.bytes) } ?? ""
        XCTAssertTrue(yaml.contains("\"kind\":\"InferenceService\""), yaml)
        XCTAssertEqual(named.count, OpenAPIDocument.swagger["definitions"]?.objectValue?.count)

        // Document.paths(8) → NamedPathItem(2) → PathItem.patch(8) → Operation.parameters(8): fieldValidation is one.
        let paths = Self.fields(try XCTUnwrap(document.first { $0.field == 8 }).bytes).map { Self.fields($0.bytes) }
        let item = try XCTUnwrap(paths.first { $0.contains { $0.field == 1 && Self.text($0.bytes).hasSuffix("/inferenceservices/{name}") } })
        let patch = Self.fields(try XCTUnwrap(Self.fields(try XCTUnwrap(item.first { $0.field == 2 }).bytes).first { $0.field == 8 }).bytes)
        let names = patch.filter { $0.field == 8 }.compactMap { parameter -> String? in
            // ParametersItem.parameter(1) → Parameter.non_body_parameter(2) → query_parameter_sub_schema(3) → name(4)
            guard let p = Self.fields(parameter.bytes).first(where: { $0.field == 1 }),
                  let nonBody = Self.fields(p.bytes).first(where: { $0.field == 2 }),
                  let query = Self.fields(nonBody.bytes).first(where: { $0.field == 3 }) else { return nil }
            return Self.fields(query.bytes).first { $0.field == 4 }.map { Self.text($0.bytes) }
        }
        XCTAssertEqual(names, ["dryRun", "fieldManager", "fieldValidation", "force"])
    }
}
