// Control layer: meta.k8s.io/v1 Table responses (`kubectl get` asks for them in its Accept header) — KServe's printer
// columns for InferenceServices, kubectl's for pods, namespaces and events — and the Accept header's media ranges.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// One media range of an Accept header: `type/subtype` lower-cased and its parameters (names lower-cased).
    struct MediaRange {
        var type: String
        var parameters: [String: String]

        /// `application/json` (or a wildcard that covers it) with no `as=`: the plain object.
        var isPlainJSON: Bool {
            ["application/json", "application/*", "*/*"].contains(type) && parameters["as"] == nil
        }
    }

    /// The Accept header's ranges in the order sent (kubectl lists its preference first; q-values it does not send).
    static func acceptRanges(_ request: BlockingRequest) -> [MediaRange] {
        guard let accept = request.header("Accept") else { return [] }
        return accept.split(separator: ",").map { range in
            let pieces = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            var parameters: [String: String] = [:]
            for piece in pieces.dropFirst() {
                let pair = piece.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { continue }
                parameters[pair[0].lowercased()] = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return MediaRange(type: pieces.first?.lowercased() ?? "", parameters: parameters)
        }
    }

    /// Whether the Accept header asks for a Table (`application/json;as=Table;v=v1;g=meta.k8s.io`, v1beta1 too) before
    /// any plain JSON it also accepts.
    static func wantsTable(_ request: BlockingRequest) -> Bool {
        for range in acceptRanges(request) {
            if range.type == "application/json", range.parameters["as"] == "Table", range.parameters["g"] == "meta.k8s.io",
               ["v1", "v1beta1"].contains(range.parameters["v"] ?? "") {
                return true
            }
            if range.isPlainJSON { return false }
        }
        return false
    }

    /// A column of a Table (metav1.TableColumnDefinition); `priority` 1 is shown by `-o wide` only.
    struct TableColumn {
        var name: String
        var type: String
        var format: String = ""
        var description: String = ""
        var priority: Int = 0

        var json: JSONValue {
            .object(["name": .string(name), "type": .string(type), "format": .string(format),
                     "description": .string(description), "priority": .int(priority)])
        }

        /// The first column of every Table the API server makes.
        static let name = TableColumn(name: "Name", type: "string", format: "name",
                                      description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
    }

    /// A meta.k8s.io/v1 Table of `objects`, one row of `cells(object)` each. The API server always fills every
    /// column, wide ones too; kubectl hides priority > 0 unless `-o wide`. Each row carries the object as
    /// `includeObject` asks: `Metadata` (the default: a PartialObjectMetadata, which kubectl reads NAMESPACE from),
    /// `Object`, or `None`.
    static func table(columns: [TableColumn], objects: [JSONValue], resourceVersion: String?, request: BlockingRequest,
                      cells: (JSONValue) -> [JSONValue]) -> JSONValue {
        let include = request.query("includeObject") ?? "Metadata"
        let rows: [JSONValue] = objects.map { object in
            var row: [String: JSONValue] = ["cells": .array(cells(object))]
            switch include {
            case "None":
                break
            case "Object":
                row["object"] = object
            default:
                row["object"] = .object(["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                         "metadata": object["metadata"] ?? .object([:])])
            }
            return .object(row)
        }
        var metadata: [String: JSONValue] = [:]
        if let resourceVersion { metadata["resourceVersion"] = .string(resourceVersion) }
        return .object(["kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": .object(metadata),
                        "columnDefinitions": .array(columns.map(\.json)), "rows": .array(rows)])
    }

    /// InferenceService objects (as `resource(…)` gives them) as a Table with KServe's printer columns; `resourceVersion`
    /// is the list's; `now` is what AGE counts to.
    static func isvcTable(_ objects: [JSONValue], resourceVersion: String?, request: BlockingRequest, now: Date = Date()) -> JSONValue {
        let columns = [TableColumn.name] + IsvcTable.columns.map { TableColumn(name: $0.name, type: $0.type) }
        return table(columns: columns, objects: objects, resourceVersion: resourceVersion, request: request) { object in
            let row = IsvcTable.Row(object)
            return [.string(row.name)] + row.cells(now: now)
        }
    }

    /// The server's answer when a Table is asked for: the Table, with the Content-Type naming it.
    static func tableResponse(_ table: JSONValue) -> BlockingResponse {
        var response = json(200, table)
        response.headers.removeAll { $0.0.lowercased() == "content-type" }
        response.headers.append(("Content-Type", "application/json;as=Table;v=v1;g=meta.k8s.io"))
        return response
    }
}
