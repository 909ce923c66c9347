// Control layer: one event — something an operator must be able to see after the fact (an apply, a readiness flip,
// a reload) — with its stable name, Kubernetes-style reason, level, message, fields and the InferenceService involved.
import SluiceProxy

public struct Event: Sendable {
    /// The InferenceService an event is about (Kubernetes' `involvedObject`).
    public struct Involved: Hashable, Sendable {
        public var namespace: String
        public var name: String
        public init(namespace: String, name: String) { self.namespace = namespace; self.name = name }
    }

    /// Stable dotted name (`revision.ready`), the `event` field of the JSON line; what alerts and queries match on.
    public var name: String
    /// Kubernetes Event reason (`RevisionReady`), CamelCase as Kubernetes writes them; `sluice_events_total`'s label.
    public var reason: String
    public var level: EventLevel
    /// One sentence for a person (kubectl describe's Message column).
    public var message: String
    /// Machine-readable details, in order, after the standard fields of the line.
    public var fields: [(String, JSONValue)]
    public var involved: Involved?

    public init(_ name: String, reason: String, level: EventLevel = .info, involved: Involved? = nil,
                message: String, fields: [(String, JSONValue)] = []) {
        self.name = name
        self.reason = reason
        self.level = level
        self.involved = involved
        self.message = message
        self.fields = fields
    }

    /// Kubernetes' two event types: anything above info is a Warning.
    public var kubernetesType: String {
        switch level {
        case .info: "Normal"
        case .warning, .error: "Warning"
        }
    }

    /// The JSON line: time, level, event, reason, then the involved service, the fields and the message.
    public var line: [UInt8] {
        var line = EventLine(level: level, event: name)
        line.field("reason", reason)
        if let involved {
            line.field("namespace", involved.namespace)
            line.field("inferenceservice", involved.name)
        }
        for (key, value) in fields {
            switch value {
            case .string(let text): line.field(key, text)
            case .int(let number): line.field(key, number)
            case .bool(let flag): line.field(key, flag)
            default: line.field(key, json: Array(value.compactJSONText.utf8))
            }
        }
        line.field("message", message)
        return line.finished()
    }
}
