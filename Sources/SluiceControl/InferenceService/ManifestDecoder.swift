// Control layer: YAML/JSON text (one or several documents) → validated InferenceServices.
import SluiceRouting
import Yams

/// Decodes what users `kubectl apply`: YAML or JSON (JSON is read as YAML, as kubectl does),
/// documents separated by `---`. Any problem refuses the whole input.
public enum ManifestDecoder {
    /// The API server's `fieldValidation` directive (metav1.FieldValidation*): what an unknown field does.
    public enum FieldValidation: String, Sendable {
        case strict = "Strict"
        case warn = "Warn"
        case ignore = "Ignore"
    }

    /// What a decode gives: the services, and the warnings a Warn validation found (kubectl prints each).
    public struct DecodedManifests: Sendable {
        public var services: [InferenceService]
        public var warnings: [String]
    }

    /// Predictor implementations of KServe v1beta1 `PredictorSpec`; `model` is the current form,
    /// the rest the older per-framework form (`sklearn: {storageUri: ...}`).
    static let implementations = SchemaNode.predictorImplementations

    /// `source` names the input in syntax errors, as kubectl names the file (`STDIN` for `-f -`).
    /// `componentSuffix` is the gateway's naming setting: the name plus it must still be a DNS label.
    /// Unknown fields are refused (the API server's `fieldValidation=Strict`, what kubectl sends).
    public static func decode(_ text: String, defaultNamespace: String, source: String = "STDIN",
                              componentSuffix: String = "-predictor-default") throws(ManifestError) -> [InferenceService] {
        try decode(text, defaultNamespace: defaultNamespace, source: source, componentSuffix: componentSuffix,
                   fieldValidation: .strict).services
    }

    /// As above, with the API server's `fieldValidation` query parameter: Strict refuses an unknown or duplicated
    /// field, Warn accepts it and says so in `warnings` (sent as `Warning: 299` headers), Ignore drops it silently.
    public static func decode(_ text: String, defaultNamespace: String, source: String = "STDIN",
                              componentSuffix: String = "-predictor-default",
                              fieldValidation: FieldValidation) throws(ManifestError) -> DecodedManifests {
        let documents: [ComposedDocument]
        do {
            documents = try composeDocuments(text)
        } catch let located as ManifestError.Located {
            throw ManifestError.syntax(source: source, problem: located.problem,
                                       line: located.mark?.line, column: located.mark?.column)
        } catch let error as YamlError {
            throw syntaxError(error, source: source)
        } catch {
            throw ManifestError.syntax(source: source, problem: "\(error)", line: nil, column: nil)
        }
        var services: [InferenceService] = []
        var warnings: [String] = []
        for document in documents {
            // An empty document (a stray `---`, only comments) is skipped, as kubectl skips it.
            if document.value == .null { continue }
            let service = try decodeOne(document, defaultNamespace: defaultNamespace, source: source,
                                        componentSuffix: componentSuffix, fieldValidation: fieldValidation,
                                        warnings: &warnings)
            if services.contains(where: { $0.name == service.name && $0.namespace == service.namespace }) {
                // Two documents for one object in one apply would make the result depend on order.
                throw ManifestError("the InferenceService \"\(service.name)\" in namespace \"\(service.namespace)\" appears twice in \(source)")
            }
            services.append(service)
        }
        return DecodedManifests(services: services, warnings: warnings)
    }

    private static func syntaxError(_ error: YamlError, source: String) -> ManifestError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return .syntax(source: source, problem: problem, line: mark.line, column: mark.column)
        case .duplicatedKeysInMapping(let duplicates, let context):
            // go-yaml's wording for the same mistake.
            let keys = duplicates.sorted().joined(separator: ", ")
            return .syntax(source: source, problem: "key \"\(keys)\" already set in map",
                           line: context.mark.line, column: context.mark.column)
        case .no, .memory, .reader, .writer, .emitter, .representer, .dataCouldNotBeDecoded:
            return .syntax(source: source, problem: error.description, line: nil, column: nil)
        }
    }

    private static func decodeOne(_ composed: ComposedDocument, defaultNamespace: String, source: String,
                                  componentSuffix: String, fieldValidation: FieldValidation,
                                  warnings: inout [String]) throws(ManifestError) -> InferenceService {
        let document = composed.value
        guard case .object(let given) = document else {
            throw ManifestError("error validating \"\(source)\": error validating data: expected an object, found \(document.typeName)")
        }
        var root = given
        // kubectl's client-side check before it asks for the kind's mapping.
        var missing: [String] = []
        if root["apiVersion"]?.stringValue?.isEmpty ?? true { missing.append("apiVersion not set") }
        if root["kind"]?.stringValue?.isEmpty ?? true { missing.append("kind not set") }
        if !missing.isEmpty {
            throw ManifestError("error validating \"\(source)\": error validating data: [\(missing.joined(separator: ", "))]")
        }
        let apiVersion = root["apiVersion"]?.stringValue ?? ""
        let kind = root["kind"]?.stringValue ?? ""
        guard apiVersion == InferenceService.apiVersion, kind == InferenceService.kind else {
            throw ManifestError.noMatch(kind: kind, version: apiVersion)
        }
        // The API server's strict decoding comes before any validation: duplicate fields (JSON decoders keep the
        // last), then the fields its schema does not know (pruned whatever the directive says).
        var validation = SchemaValidation()
        if case .object(let pruned) = validation.walk(document, .inferenceService, path: "") { root = pruned }
        let strictErrors = composed.duplicateFields.map { "duplicate field \"\($0)\"" }
            + validation.unknownFields.map { "unknown field \"\($0)\"" }
        if !strictErrors.isEmpty {
            switch fieldValidation {
            case .strict:
                let version = String(apiVersion.split(separator: "/").last ?? "")
                throw ManifestError.strictDecoding(kind: kind, version: version, strictErrors)
            case .warn:
                warnings += strictErrors
            case .ignore:
                break
            }
        }

        var metadata = root["metadata"]?.objectValue ?? [:]
        let nameValue = metadata["name"]
        let name = nameValue?.stringValue ?? ""
        var causes: [ManifestError.FieldError] = []
        if name.isEmpty {
            causes.append(.init(field: "metadata.name", kind: .required, detail: "name or generateName is required"))
        } else if name.utf8.count > 63 {
            causes.append(.init(field: "metadata.name", kind: .invalid(value: "\"\(name)\""), detail: "must be no more than 63 characters"))
        } else if name.utf8.count + componentSuffix.utf8.count + 6 > 63 {
            // Revisions (`<name>-predictor-default-00001`) name hosts and must be DNS-1035 labels; KServe
            // only fails later, at the Knative layer, on such names. Refuse it up front instead.
            let limit = 63 - componentSuffix.utf8.count - 6
            causes.append(.init(field: "metadata.name", kind: .invalid(value: "\"\(name)\""),
                                detail: "must be no more than \(limit) characters, so that revision names like \"\(name)\(componentSuffix)-00001\" are DNS-1035 labels of at most 63"))
        } else if !DNSName.isLabel1035(name) {
            // apimachinery `validation.IsDNS1035Label` + `RegexError`, word for word.
            causes.append(.init(field: "metadata.name", kind: .invalid(value: "\"\(name)\""),
                                detail: "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"))
        }
        let namespace = metadata["namespace"]?.stringValue ?? defaultNamespace
        if !DNSName.isLabel1123(namespace) {
            causes.append(.init(field: "metadata.namespace", kind: .invalid(value: "\"\(namespace)\""),
                                detail: "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
        }
        // Wrong types, bounds and unsupported KServe fields, after ObjectMeta's own checks as the API server orders them.
        causes += validation.causes
        let annotations = stringMap(metadata["annotations"])
        let labels = stringMap(metadata["labels"])
        if let text = annotations[InferenceService.endpointsAnnotation], case .failure(let error) = EndpointList.parse(text) {
            causes.append(.init(field: "metadata.annotations[\(InferenceService.endpointsAnnotation)]",
                                kind: .invalid(value: "\"\(text)\""),
                                detail: "\"\(error.entry)\" is not an IP:port endpoint; expected a comma-separated list like 127.0.0.1:9001,[::1]:9002"))
        }
        if let cause = InferenceService.readinessPathCause(annotations) { causes.append(cause) }
        causes += InferenceService.analysisCauses(annotations)
        if let cause = InferenceService.stickyKeyCause(annotations) { causes.append(cause) }
        if let cause = InferenceService.mirrorCause(annotations) { causes.append(cause) }

        if let text = annotations[InferenceService.retriesAnnotation],
           case .failure(let error) = GatewayConfig.decodeRetriesAnnotation(text, base: RetryPolicy()) {
            let at = error.path.isEmpty ? "" : "\(error.path): "
            causes.append(.init(field: "metadata.annotations[\(InferenceService.retriesAnnotation)]",
                                kind: .invalid(value: "\"\(text)\""), detail: at + error.reason))
        }

        let predictor = decodePredictor(root["spec"], causes: &causes)
        guard causes.isEmpty, let predictor else {
            throw ManifestError.invalid(kind: kind, name: name, causes)
        }
        metadata["namespace"] = .string(namespace)
        root["metadata"] = .object(metadata)
        return InferenceService(name: name, namespace: namespace, annotations: annotations, labels: labels,
                                predictor: predictor, manifest: .object(root))
    }

    /// The string members of annotations or labels (the schema walk refused any other value).
    private static func stringMap(_ value: JSONValue?) -> [String: String] {
        (value?.objectValue ?? [:]).compactMapValues(\.stringValue)
    }

    private static func decodePredictor(_ spec: JSONValue?,
                                        causes: inout [ManifestError.FieldError]) -> PredictorSpec? {
        guard case .object(var predictor)? = spec?["predictor"] else {
            // Another type than an object: the schema walk said so already.
            if (spec?["predictor"] ?? .null) == .null {
                causes.append(.init(field: "spec.predictor", kind: .required, detail: "a predictor with a model is required"))
            }
            return nil
        }
        // Types and bounds were checked by the schema walk; a wrong one is a cause already.
        let canary = predictor["canaryTrafficPercent"]?.intValue
        predictor["canaryTrafficPercent"] = nil

        let present = implementations.filter { predictor[$0] != nil && predictor[$0] != .null }
        guard present.count == 1, let implementation = present.first else {
            let detail = present.isEmpty
                ? "exactly one of \(implementations.joined(separator: ", ")) must be specified"
                : "exactly one of \(implementations.joined(separator: ", ")) must be specified, found \(present.joined(separator: " and "))"
            causes.append(present.isEmpty
                ? .init(field: "spec.predictor", kind: .required, detail: detail)
                : .init(field: "spec.predictor", kind: .invalid(value: "\"\(present.joined(separator: ","))\""), detail: detail))
            return nil
        }
        let field = "spec.predictor.\(implementation)"
        // Another type than an object: the schema walk said so already.
        guard case .object(let body)? = predictor[implementation] else { return nil }
        var modelFormat: String?
        if implementation == "model" {
            modelFormat = body["modelFormat"]?["name"]?.stringValue
            if modelFormat?.isEmpty ?? true {
                causes.append(.init(field: "\(field).modelFormat.name", kind: .required, detail: "the model format (sklearn, xgboost, ...) is required"))
            }
        }
        let storageUri = body["storageUri"]?.stringValue ?? ""
        if storageUri.isEmpty {
            causes.append(.init(field: "\(field).storageUri", kind: .required,
                                detail: "the model's storageUri is required; it names the model and, through the gateway config, its endpoints"))
        }
        guard causes.isEmpty else { return nil }
        return PredictorSpec(implementation: implementation, modelFormat: modelFormat, storageUri: storageUri,
                             runtime: body["runtime"]?.stringValue,
                             protocolVersion: body["protocolVersion"]?.stringValue,
                             resources: body["resources"],
                             canaryTrafficPercent: canary, template: .object(predictor))
    }
}
