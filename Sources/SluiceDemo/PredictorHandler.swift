// KServe's REST surface (V1 and the V2 Open Inference Protocol) for one iris model, as a BlockingServer handler.
// Config-time-style code on purpose: Foundation JSON reads best here and the demo is never on the hot path.

import Foundation
import SluiceBlockingHTTP

/// A handler answering like a KServe sklearn predictor serving `modelName` with the given model version.
/// Every response carries `X-Demo-Revision: <revision>` so tests and humans can see which revision answered.
/// A request with `X-Demo-Chunked: true` gets its response chunked, so proxy tests can exercise chunked upstreams.
public func predictorHandler(modelName: String, version: IrisModel.Version, revision: String)
    -> @Sendable (BlockingRequest) -> BlockingResponse {
    // Trained once here, not per request: the model is immutable and Sendable, so every connection shares it.
    let predictor = Predictor(modelName: modelName, model: IrisModel(version: version))
    return { request in
        var response = predictor.respond(to: request)
        response.headers.append(("X-Demo-Revision", revision))
        response.chunked = request.header("x-demo-chunked")?.lowercased() == "true"
        return response
    }
}

struct Predictor: Sendable {
    let modelName: String
    let model: IrisModel

    /// What the model reports as its version in V2 metadata and inference responses.
    var modelVersion: String { String(model.version.rawValue) }

    /// A failure that becomes a KServe-style `{"error": ...}` body.
    struct Failure: Error {
        let status: Int
        let message: String
        /// For a 405, the methods the resource does allow.
        var allowed: [String] = []
    }

    func respond(to request: BlockingRequest) -> BlockingResponse {
        do throws(Failure) {
            return try route(request)
        } catch {
            var response = json(status: error.status, ["error": error.message])
            if !error.allowed.isEmpty { response.headers.append(("Allow", error.allowed.joined(separator: ", "))) }
            return response
        }
    }

    func route(_ request: BlockingRequest) throws(Failure) -> BlockingResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        switch segments.first {
        case "": // "/"
            try allow(["GET"], request)
            return json(["status": "alive"])
        case "v1":
            return try routeV1(Array(segments.dropFirst()), request)
        case "v2":
            return try routeV2(Array(segments.dropFirst()), request)
        default:
            throw Failure(status: 404, message: "Not Found")
        }
    }

    // V1: /v1/models, /v1/models/{name}, /v1/models/{name}:predict.
    func routeV1(_ segments: [String], _ request: BlockingRequest) throws(Failure) -> BlockingResponse {
        guard segments.first == "models" else { throw Failure(status: 404, message: "Not Found") }
        switch segments.count {
        case 1:
            try allow(["GET"], request)
            return json(["models": [modelName]])
        case 2:
            let resource = segments[1]
            if resource.hasSuffix(":predict") {
                try allow(["POST"], request)
                try requireModel(String(resource.dropLast(":predict".count)))
                let rows = try instances(from: request.body)
                return json(["predictions": model.predict(rows)])
            }
            if resource.contains(":") { throw Failure(status: 404, message: "Not Found") }
            try allow(["GET"], request)
            try requireModel(resource)
            return json(["name": modelName, "ready": true])
        default:
            throw Failure(status: 404, message: "Not Found")
        }
    }

    // V2: /v2, /v2/health/{live,ready}, /v2/models/{name}, /v2/models/{name}/ready, /v2/models/{name}/infer.
    func routeV2(_ segments: [String], _ request: BlockingRequest) throws(Failure) -> BlockingResponse {
        switch segments.count {
        case 0:
            try allow(["GET"], request)
            return json(["name": "sluice-demo", "version": "1", "extensions": [String]()])
        case 2 where segments[0] == "health" && segments[1] == "live":
            try allow(["GET"], request)
            return json(["live": true])
        case 2 where segments[0] == "health" && segments[1] == "ready":
            try allow(["GET"], request)
            return json(["ready": true])
        case 2 where segments[0] == "models":
            try allow(["GET"], request)
            try requireModel(segments[1])
            return json([
                "name": modelName,
                "versions": [modelVersion],
                "platform": "sklearn",
                "inputs": [["name": "input-0", "datatype": "FP32", "shape": [-1, IrisModel.featureCount]]],
                "outputs": [["name": "output-0", "datatype": "INT64", "shape": [-1]]],
            ])
        case 3 where segments[0] == "models" && segments[2] == "ready":
            try allow(["GET"], request)
            try requireModel(segments[1])
            return json(["name": modelName, "ready": true])
        case 3 where segments[0] == "models" && segments[2] == "infer":
            try allow(["POST"], request)
            try requireModel(segments[1])
            return try infer(request)
        default:
            throw Failure(status: 404, message: "Not Found")
        }
    }

    // MARK: Inference

    /// V1 body: `{"instances": [[f, f, f, f], ...]}`.
    func instances(from body: [UInt8]) throws(Failure) -> [[Double]] {
        guard let object = try parseObject(body) as [String: Any]?, let instances = object["instances"] else {
            throw Failure(status: 400, message: "Expected key \"instances\" in request body")
        }
        guard let rows = instances as? [Any], !rows.isEmpty else {
            throw Failure(status: 400, message: "Expected \"instances\" to be a non-empty list")
        }
        return try rows.map { (row: Any) throws(Failure) -> [Double] in
            guard let values = row as? [Any], values.count == IrisModel.featureCount else {
                throw Failure(status: 400, message: "Each instance must be a list of \(IrisModel.featureCount) numbers")
            }
            return try values.map { (value: Any) throws(Failure) -> Double in try number(value) }
        }
    }

    /// V2 body: `{"id"?: s, "inputs": [{"name", "shape": [n, 4], "datatype", "data": [n*4 numbers]}]}`.
    func infer(_ request: BlockingRequest) throws(Failure) -> BlockingResponse {
        let object = try parseObject(request.body)
        guard let inputs = object["inputs"] as? [Any], inputs.count == 1,
              let input = inputs[0] as? [String: Any] else {
            throw Failure(status: 400, message: "Expected \"inputs\" to be a list holding exactly one tensor")
        }
        let datatypes: Set<String> = ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                                      "UINT8", "UINT16", "UINT32", "UINT64"]
        guard let datatype = input["datatype"] as? String, datatypes.contains(datatype) else {
            throw Failure(status: 400, message: "Input \"datatype\" must be a numeric tensor type such as FP32")
        }
        let shape = try (input["shape"] as? [Any] ?? []).map { (value: Any) throws(Failure) -> Double in
            try number(value)
        }
        guard shape.count == 2, shape[1] == Double(IrisModel.featureCount), shape[0] >= 1,
              shape[0] <= Double(BlockingServer.maxBodyBytes), shape[0] == shape[0].rounded() else {
            throw Failure(status: 400, message: "Input \"shape\" must be [n, \(IrisModel.featureCount)] with n >= 1")
        }
        let rowCount = Int(shape[0])
        // OIP sends data flattened in row-major order; KServe also accepts it nested, so we flatten ourselves.
        guard let data = input["data"] as? [Any] else {
            throw Failure(status: 400, message: "Expected input \"data\" to be a list")
        }
        let flat = try flatten(data)
        guard flat.count == rowCount * IrisModel.featureCount else {
            throw Failure(status: 400, message: "Input \"data\" has \(flat.count) elements but shape \(shape.map { Int($0) }) "
                + "needs \(rowCount * IrisModel.featureCount)")
        }
        let rows = (0..<rowCount).map {
            Array(flat[($0 * IrisModel.featureCount)..<(($0 + 1) * IrisModel.featureCount)])
        }
        let id = object["id"] as? String ?? request.header("x-request-id") ?? UUID().uuidString.lowercased()
        let predictions = model.predict(rows)
        return json([
            "model_name": modelName,
            "model_version": modelVersion,
            "id": id,
            "outputs": [["name": "output-0", "shape": [rowCount], "datatype": "INT64", "data": predictions]],
        ])
    }

    func flatten(_ values: [Any]) throws(Failure) -> [Double] {
        var flat: [Double] = []
        for value in values {
            if let nested = value as? [Any] {
                flat += try flatten(nested)
            } else {
                flat.append(try number(value))
            }
        }
        return flat
    }

    // MARK: JSON and checks

    func parseObject(_ body: [UInt8]) throws(Failure) -> [String: Any] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            throw Failure(status: 400, message: "Unrecognized request format: body is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else {
            throw Failure(status: 400, message: "Unrecognized request format: expected a JSON object")
        }
        return object
    }

    /// A finite JSON number. Booleans are NSNumbers too on Linux ("c" type), so they are ruled out explicitly.
    func number(_ value: Any) throws(Failure) -> Double {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c",
              number.doubleValue.isFinite else {
            throw Failure(status: 400, message: "Expected only finite numbers in the input")
        }
        return number.doubleValue
    }

    func requireModel(_ name: String) throws(Failure) {
        guard name == modelName else { throw Failure(status: 404, message: "Model with name \(name) does not exist.") }
    }

    /// RFC 9110 §9.3.2: HEAD is allowed wherever GET is; §15.5.6: a 405 lists what is allowed.
    func allow(_ methods: [String], _ request: BlockingRequest) throws(Failure) {
        let allowed = methods.contains("GET") ? methods + ["HEAD"] : methods
        guard allowed.contains(request.method) else {
            throw Failure(status: 405, message: "Method Not Allowed", allowed: allowed)
        }
    }

    func json(status: Int = 200, _ object: [String: Any]) -> BlockingResponse {
        do {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            return BlockingResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(data))
        } catch {
            // Only our own literals reach here, so this is a bug in this file, not in the request.
            preconditionFailure("unserialisable JSON response: \(error)")
        }
    }
}
