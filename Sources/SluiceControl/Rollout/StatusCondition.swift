// Control layer: one status condition (`Ready`, `PredictorReady`, ...) in Knative's `apis.Condition` shape.
import Foundation

/// A condition as `kubectl get isvc -o json` shows it under `.status.conditions`.
public struct StatusCondition: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case isTrue = "True"
        case isFalse = "False"
        case unknown = "Unknown"
    }

    public var type: String
    public var status: Status
    /// CamelCase word, set when the status is not `True` (Knative clears it on `MarkTrue`).
    public var reason: String?
    public var message: String?
    /// Changes only when `status` changes, as Knative's condition manager does.
    public var lastTransitionTime: Date

    public init(type: String, status: Status, reason: String? = nil, message: String? = nil, lastTransitionTime: Date) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }
}
