// Control layer: why a manifest was refused, worded the way kubectl prints the API server's answer.
import Yams

/// A refused manifest. The whole input is refused: nothing of it is applied.
/// `description` is kubectl's text: `The InferenceService "sklearn-iris" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: 150: must be between 0 and 100`.
/// kubectl prints validation errors (the API server's 422) as they are and everything else after
/// `error: `; `isValidationError` tells the CLI which.
public struct ManifestError: Error, Equatable, Sendable, CustomStringConvertible {
    /// One field problem, as `k8s.io/apimachinery/pkg/util/validation/field.Error` words it.
    public struct FieldError: Equatable, Sendable, CustomStringConvertible {
        public enum Kind: Equatable, Sendable {
            /// `Invalid value: <value in Go %#v>: <detail>`
            case invalid(value: String)
            /// `Required value[: detail]`
            case required
            /// `Forbidden: <detail>` — a field that may not be set (here: a KServe field Sluice does not implement).
            case forbidden
        }

        public var field: String
        public var kind: Kind
        public var detail: String

        public var description: String {
            switch kind {
            case .invalid(let value): return "\(field): Invalid value: \(value): \(detail)"
            case .required: return detail.isEmpty ? "\(field): Required value" : "\(field): Required value: \(detail)"
            case .forbidden: return "\(field): Forbidden: \(detail)"
            }
        }
    }

    /// A YAML syntax problem and where it is (libyaml's 1-based mark).
    struct Located: Error {
        var problem: String
        var mark: Mark?
    }

    public let description: String
    /// Set for syntax errors: 1-based, as editors count.
    public let line: Int?
    public let column: Int?
    /// The field problems of a validation error, empty for other errors.
    public let causes: [FieldError]
    /// The strict decoding errors (`unknown field "spec.x"`, `duplicate field "spec.y"`) of a fieldValidation=Strict
    /// refusal, empty for other errors: a PATCH answers them without the create/update prefix of `description`.
    public let strictErrors: [String]

    /// The API server's "is invalid" answer (printed bare by kubectl), as opposed to a client-side error.
    public var isValidationError: Bool { !causes.isEmpty }

    init(_ description: String, line: Int? = nil, column: Int? = nil, causes: [FieldError] = [], strictErrors: [String] = []) {
        self.description = description
        self.line = line
        self.column = column
        self.causes = causes
        self.strictErrors = strictErrors
    }

    /// The API server's 400 for unknown or duplicate fields under fieldValidation=Strict, as a create or an update
    /// words it (apiserver `transformDecodeError` around `runtime.NewStrictDecodingError`).
    static func strictDecoding(kind: String, version: String, _ errors: [String]) -> ManifestError {
        ManifestError("\(kind) in version \"\(version)\" cannot be handled as a \(kind): strict decoding error: \(errors.joined(separator: ", "))",
                      strictErrors: errors)
    }

    /// Kubernetes' StatusError for 422: one cause printed bare, several in brackets joined by ", "
    /// (`apimachinery/pkg/api/errors.NewInvalid`).
    static func invalid(kind: String, name: String, _ causes: [FieldError]) -> ManifestError {
        let list = causes.count == 1 ? causes[0].description : "[" + causes.map(\.description).joined(separator: ", ") + "]"
        return ManifestError("The \(kind) \"\(name)\" is invalid: \(list)", causes: causes)
    }

    /// What kubectl says when no CRD serves the kind (`meta.NoKindMatchError`).
    static func noMatch(kind: String, version: String) -> ManifestError {
        ManifestError("no matches for kind \"\(kind)\" in version \"\(version)\"")
    }

    /// kubectl's wording for YAML it cannot convert (`error parsing STDIN: error converting YAML to JSON: yaml: line 3: …`),
    /// with the column added because go-yaml's line alone is often one line off the real mistake.
    static func syntax(source: String, problem: String, line: Int?, column: Int?) -> ManifestError {
        var location = ""
        if let line { location += "line \(line)" }
        if let column { location += location.isEmpty ? "column \(column)" : ", column \(column)" }
        let place = location.isEmpty ? "" : "\(location): "
        return ManifestError("error parsing \(source): error converting YAML to JSON: yaml: \(place)\(problem)",
                             line: line, column: column)
    }
}
