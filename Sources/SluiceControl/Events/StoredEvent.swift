// Control layer: an event as kept for one InferenceService — repeats folded into one entry with a count and the
// first and last time, as Kubernetes aggregates Events — and its core/v1 Event object for the API.
import Foundation

public struct StoredEvent: Equatable, Sendable {
    /// `<isvc>.<16 hex digits>`, unique among the service's events (Kubernetes names Events the same way).
    public var objectName: String
    public var involved: Event.Involved
    /// `Normal` or `Warning`.
    public var type: String
    public var reason: String
    public var message: String
    public var count: Int
    public var firstTimestamp: Date
    public var lastTimestamp: Date

    /// Kubernetes folds a repeat into the earlier event when source, object, type, reason and message all match.
    func isRepeat(of event: Event) -> Bool {
        type == event.kubernetesType && reason == event.reason && message == event.message
    }

    /// A core/v1 `Event` (what `kubectl get events -o json` prints), so the kubectl issue can serve these as is.
    public var json: JSONValue {
        .object([
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": .object([
                "name": .string(objectName),
                "namespace": .string(involved.namespace),
                "creationTimestamp": .string(RolloutState.timestamp(firstTimestamp)),
            ]),
            "involvedObject": .object([
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "namespace": .string(involved.namespace),
                "name": .string(involved.name),
            ]),
            "type": .string(type),
            "reason": .string(reason),
            "message": .string(message),
            "count": .int(count),
            "firstTimestamp": .string(RolloutState.timestamp(firstTimestamp)),
            "lastTimestamp": .string(RolloutState.timestamp(lastTimestamp)),
            "source": .object(["component": "sluice"]),
            "reportingComponent": "sluice",
        ])
    }

}

extension StoredEvent {
    /// Reads an Event object back (for `sluice describe`); nil when it lacks what the Events table shows.
    public init?(json: JSONValue) {
        guard let reason = json["reason"]?.stringValue,
              let namespace = json["involvedObject"]?["namespace"]?.stringValue,
              let name = json["involvedObject"]?["name"]?.stringValue,
              let first = json["firstTimestamp"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:)) else { return nil }
        let last = json["lastTimestamp"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:)) ?? first
        self.init(objectName: json["metadata"]?["name"]?.stringValue ?? "", involved: Event.Involved(namespace: namespace, name: name),
                  type: json["type"]?.stringValue ?? "Normal", reason: reason, message: json["message"]?.stringValue ?? "",
                  count: json["count"]?.intValue ?? 1, firstTimestamp: first, lastTimestamp: last)
    }
}
