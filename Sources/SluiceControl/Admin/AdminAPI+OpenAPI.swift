// Control layer: the admin API's OpenAPI documents (/openapi/v2, /openapi/v3 and its group-version document), generated
// from the schema the manifest decoder validates with, so that kubectl apply validates and kubectl explain answers.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// The answer for a path under /openapi/; nil: not one of ours (404).
    func openAPI(_ request: BlockingRequest) -> BlockingResponse? {
        let path = request.path
        let known = ["/openapi/v2", "/openapi/v3", "/openapi/v3/" + OpenAPIDocument.groupVersionPath]
        guard known.contains(path) else { return nil }
        guard request.method == "GET" || request.method == "HEAD" else {
            return Self.status(405, "MethodNotAllowed", "\(request.method) is not supported here")
        }
        // client-go's OpenAPISchema asks for v2 as protobuf alone, and kubectl 1.27 and 1.28 fail apply and explain
        // without it; kubectl 1.29+ read v3 (JSON) for explain and for the fieldValidation check instead.
        let accept = request.header("Accept")
        if path == "/openapi/v2", accept?.contains(OpenAPIProtobuf.mediaType) ?? false {
            return BlockingResponse(status: 200, headers: [("Content-Type", OpenAPIProtobuf.contentType)], body: OpenAPIProtobuf.swagger)
        }
        guard Self.acceptsJSON(accept) else {
            return Self.status(406, "NotAcceptable", path == "/openapi/v2" ? "only the following media types are accepted: application/json, \(OpenAPIProtobuf.mediaType)" : "only the following media types are accepted: application/json")
        }
        switch path {
        case "/openapi/v2":
            return BlockingResponse.json(status: 200, OpenAPIDocument.swaggerText)
        case "/openapi/v3":
            return Self.json(200, OpenAPIDocument.index)
        default:
            var response = BlockingResponse.json(status: 200, OpenAPIDocument.groupVersionText)
            // The index's URL names this version of the document: a client may keep it for as long as it likes
            // (the API server's answer to a matching hash); any other request must ask again.
            let isCurrent = request.query("hash") == OpenAPIDocument.groupVersionHash
            response.headers.append(("Cache-Control", isCurrent ? "public, immutable" : "no-cache, private"))
            response.headers.append(("Etag", "\"\(OpenAPIDocument.groupVersionHash)\""))
            return response
        }
    }

    /// Whether an Accept header lets the answer be JSON: absent, `application/json` (any parameters), or a wildcard.
    static func acceptsJSON(_ accept: String?) -> Bool {
        guard let accept, !accept.trimmingCharacters(in: .whitespaces).isEmpty else { return true }
        return accept.split(separator: ",").contains { range in
            let type = range.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            return type == "application/json" || type == "*/*" || type == "application/*"
        }
    }
}
