// Control layer: the events the control plane records — what an apply did, which revisions became ready or not,
// which endpoints stopped or resumed passing their probes — worded for `sluice describe` and the JSON log.
import Foundation
import SluiceRouting

extension ControlPlane {
    /// `isvc.applied` for a created or configured service (an unchanged one is counted, not told).
    static func appliedEvent(_ isvc: InferenceService, _ result: ApplyResult, old: RolloutState, new: RolloutState,
                             source: String) -> Event? {
        guard result != .unchanged, let record = new.record(namespace: isvc.namespace, name: isvc.name) else { return nil }
        let revisionsBefore = old.record(namespace: isvc.namespace, name: isvc.name)?.revisions.count ?? 0
        let isRevisionCreated = record.revisions.count > revisionsBefore
        let revision = record.latestCreatedRevision
        let what = isRevisionCreated ? "revision \(revision) created" : "no new revision (the revision template is unchanged)"
        return Event("isvc.applied", reason: result == .created ? "Created" : "Configured",
                     involved: Event.Involved(namespace: isvc.namespace, name: isvc.name),
                     message: "InferenceService \(result): \(what); traffic: \(trafficText(record.traffic))",
                     fields: [("result", .string(result.rawValue)), ("revision", .string(revision)),
                              ("revisionCreated", .bool(isRevisionCreated)), ("traffic", trafficJSON(record.traffic)),
                              ("source", .string(source))])
    }

    /// A revision that became ready, or stopped being ready (or failed its probes while starting).
    static func readinessEvents(old: RolloutState, new: RolloutState) -> [Event] {
        var events: [Event] = []
        for record in new.records() {
            let involved = Event.Involved(namespace: record.service.namespace, name: record.service.name)
            let before = old.record(namespace: involved.namespace, name: involved.name)
            for revision in record.revisions {
                let previous = before?.revision(named: revision.name)
                let fields: [(String, JSONValue)] = [("revision", .string(revision.name)),
                                                     ("endpoints", .array(revision.endpoints.map { .string($0.description) }))]
                if revision.isReady, previous?.isReady != true {
                    events.append(Event("revision.ready", reason: "RevisionReady", involved: involved,
                                        message: "revision \(revision.name) is ready; traffic: \(trafficText(record.traffic))",
                                        fields: fields + [("traffic", trafficJSON(record.traffic))]))
                } else if !revision.isReady,
                          previous?.isReady == true || (revision.reason == "ProbeFailed" && previous?.reason != "ProbeFailed") {
                    // A ready revision that stops being ready, or one still deploying whose probes now fail (its
                    // creation was the apply's event; waiting for a first probe is not news).
                    let why = revision.message ?? "no endpoint passes its readiness probe"
                    events.append(Event("revision.not_ready", reason: "RevisionNotReady", level: .warning, involved: involved,
                                        message: "revision \(revision.name) is not ready: \(why); traffic: \(trafficText(record.traffic))",
                                        fields: fields + [("error", .string(why)), ("traffic", trafficJSON(record.traffic))]))
                }
            }
        }
        return events
    }

    /// `endpoint.unhealthy` / `endpoint.healthy` for each service whose revisions run on a flipped endpoint.
    /// `source: probe` leaves room for other sources (outlier ejection) under the same names.
    static func endpointEvents(_ transitions: [ProbeTransition], checked: [CheckedEndpoint]) -> [Event] {
        var events: [Event] = []
        for transition in transitions {
            let endpoint = transition.target.endpoint
            // One event per service the endpoint serves with this check, naming the revisions it serves there.
            var services: [(namespace: String, name: String, isStatic: Bool, revisions: [String])] = []
            for entry in checked where entry.target == transition.target {
                if let i = services.firstIndex(where: { $0.namespace == entry.namespace && $0.name == entry.service && $0.isStatic == entry.isStatic }) {
                    if !services[i].revisions.contains(entry.revision) { services[i].revisions.append(entry.revision) }
                } else {
                    services.append((entry.namespace, entry.service, entry.isStatic, [entry.revision]))
                }
            }
            let kind = endpoint.isHTTP2 ? "gRPC health check" : "HTTP health check"
            for service in services {
                let check = service.isStatic ? "health check" : "readiness probe"
                let involved = Event.Involved(namespace: service.namespace, name: service.name)
                var fields: [(String, JSONValue)] = [("endpoint", .string(endpoint.description)), ("source", service.isStatic ? "healthCheck" : "probe"),
                                                     ("check", .string(kind)), ("revisions", .array(service.revisions.map(JSONValue.string)))]
                if transition.isReady {
                    events.append(Event("endpoint.healthy", reason: "EndpointHealthy", involved: involved,
                                        message: "endpoint \(endpoint) of \(service.revisions.joined(separator: ", ")) passes its \(check) again",
                                        fields: fields))
                } else {
                    let error = transition.error ?? "\(check) failed"
                    fields.append(("error", .string(error)))
                    events.append(Event("endpoint.unhealthy", reason: "EndpointUnhealthy", level: .warning, involved: involved,
                                        message: "endpoint \(endpoint) of \(service.revisions.joined(separator: ", ")) fails its \(check): \(error)",
                                        fields: fields))
                }
            }
        }
        return events
    }

    /// `sklearn-iris-predictor-default-00001 90% (prev), sklearn-iris-predictor-default-00002 10% (latest)`.
    static func trafficText(_ traffic: [TrafficTarget]) -> String {
        guard !traffic.isEmpty else { return "none" }
        return traffic.map { target in
            "\(target.revisionName ?? "latest") \(target.percent)%" + (target.tag.map { " (\($0))" } ?? "")
        }.joined(separator: ", ")
    }

    static func trafficJSON(_ traffic: [TrafficTarget]) -> JSONValue {
        .array(traffic.map { target in
            var entry: [String: JSONValue] = ["percent": .int(target.percent), "latestRevision": .bool(target.latestRevision)]
            if let name = target.revisionName { entry["revisionName"] = .string(name) }
            if let tag = target.tag { entry["tag"] = .string(tag) }
            return .object(entry)
        })
    }
}
