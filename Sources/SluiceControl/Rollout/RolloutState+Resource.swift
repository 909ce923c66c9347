// Control layer: an InferenceService as `kubectl get isvc -o json` shows it: spec as applied, status as KServe writes it.
import Foundation
import Glibc
import SluiceRouting

extension RolloutState {
    /// The full object, or nil when there is no such service. Hosts use `rules.domain` and
    /// `rules.serviceHostTemplate`; component names use this state's `componentSuffix` (the one the
    /// revisions were named with), so pass the gateway's rules with the same suffix.
    /// Tag URLs appear only with tag routing (annotation, else `tagRoutingDefault`): they are the
    /// hosts the gateway registers, and a URL nothing answers would mislead.
    public func resource(namespace: String, name: String, rules: HostRules = HostRules(),
                         tagRoutingDefault: Bool = false) -> JSONValue? {
        guard let record = record(namespace: namespace, name: name) else { return nil }
        return Self.resource(of: record, rules: rules, tagRoutingDefault: tagRoutingDefault)
    }

    /// Every object of `namespace` (all namespaces when nil), as `kubectl get isvc -o json` lists them.
    public func resources(namespace: String? = nil, rules: HostRules = HostRules(),
                          tagRoutingDefault: Bool = false) -> [JSONValue] {
        records(namespace: namespace).map { Self.resource(of: $0, rules: rules, tagRoutingDefault: tagRoutingDefault) }
    }

    static func resource(of record: ServiceRecord, rules: HostRules, tagRoutingDefault: Bool) -> JSONValue {
        let isvc = record.service
        let domain = rules.domain.lowercased()
        let component = record.componentName
        var metadata: [String: JSONValue] = [
            "name": .string(isvc.name),
            "namespace": .string(isvc.namespace),
            "creationTimestamp": .string(Self.timestamp(record.creationTimestamp)),
            "generation": .int(record.generation),
        ]
        if let stored = record.metadata {
            metadata["uid"] = .string(stored.uid)
            // A decimal string, opaque to clients (the API conventions), compared only for equality; none yet on a
            // dry run's would-be object (0: never stored).
            if stored.resourceVersion > 0 { metadata["resourceVersion"] = .string(String(stored.resourceVersion)) }
            if !stored.managedFields.isEmpty { metadata["managedFields"] = .array(stored.managedFields) }
        }
        if !isvc.annotations.isEmpty { metadata["annotations"] = .object(isvc.annotations.mapValues(JSONValue.string)) }
        if !isvc.labels.isEmpty { metadata["labels"] = .object(isvc.labels.mapValues(JSONValue.string)) }

        let tagRouting = record.servesTagHosts(default: tagRoutingDefault)
        let traffic: [JSONValue] = record.traffic.map { target in
            var entry: [String: JSONValue] = [
                "latestRevision": .bool(target.latestRevision),
                "percent": .int(target.percent),
                "revisionName": .string(target.revisionName ?? ""),
            ]
            if let tag = target.tag {
                entry["tag"] = .string(tag)
                // Knative's tag template `{tag}-{name}`, on the component's route.
                if tagRouting { entry["url"] = .string("http://\(tag)-\(component).\(isvc.namespace).\(domain)") }
            }
            return .object(entry)
        }
        // `ComponentStatusSpec`: fields are `omitempty`; address and url appear once the Knative
        // service has been ready (PropagateStatus copies them only then).
        var predictor: [String: JSONValue] = ["latestCreatedRevision": .string(record.latestCreatedRevision)]
        if let value = record.latestReadyRevision { predictor["latestReadyRevision"] = .string(value) }
        if let value = record.latestRolledoutRevision { predictor["latestRolledoutRevision"] = .string(value) }
        if let value = record.previousRolledoutRevision { predictor["previousRolledoutRevision"] = .string(value) }
        if !traffic.isEmpty { predictor["traffic"] = .array(traffic) }
        var status: [String: JSONValue] = [
            "components": .object(["predictor": .object(predictor)]),
            "conditions": .array(record.conditions.map(Self.conditionJSON)),
            "observedGeneration": .int(record.generation),
        ]
        if let analysis = record.analysisStatusJSON { status["canaryAnalysis"] = analysis }
        if record.latestReadyRevision != nil {
            predictor["address"] = .object(["url": .string("http://\(component).\(isvc.namespace).svc.cluster.local")])
            predictor["url"] = .string("http://\(component).\(isvc.namespace).\(domain)")
            status["components"] = .object(["predictor": .object(predictor)])
            status["url"] = .string("http://" + Self.serviceHost(name: isvc.name, namespace: isvc.namespace, rules: rules))
            status["address"] = .object(["url": .string("http://\(isvc.name).\(isvc.namespace).svc.cluster.local")])
        }
        return .object([
            "apiVersion": .string(InferenceService.apiVersion),
            "kind": .string(InferenceService.kind),
            "metadata": .object(metadata),
            "spec": isvc.manifest["spec"] ?? .object([:]),
            "status": .object(status),
        ])
    }

    static func conditionJSON(_ condition: StatusCondition) -> JSONValue {
        var entry: [String: JSONValue] = [
            "type": .string(condition.type),
            "status": .string(condition.status.rawValue),
            "lastTransitionTime": .string(timestamp(condition.lastTransitionTime)),
        ]
        if let reason = condition.reason { entry["reason"] = .string(reason) }
        if let message = condition.message { entry["message"] = .string(message) }
        return .object(entry)
    }

    /// `HostRules.serviceHostTemplate` rendered (`{name}.{namespace}.{domain}` by default), lower case
    /// as the routing layer registers it.
    static func serviceHost(name: String, namespace: String, rules: HostRules) -> String {
        rules.serviceHostTemplate
            .replacingOccurrences(of: "{name}", with: name)
            .replacingOccurrences(of: "{namespace}", with: namespace)
            .replacingOccurrences(of: "{domain}", with: rules.domain)
            .lowercased()
    }

    /// RFC 3339 in UTC with whole seconds, as Kubernetes' `metav1.Time` serializes.
    /// Formatted by gmtime_r: a new ISO8601DateFormatter per call cost most of a 1 000-object list's time.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : String(value) }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}
