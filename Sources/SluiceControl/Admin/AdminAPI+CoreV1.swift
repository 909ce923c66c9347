// Control layer: the admin API's read-only core/v1 resources — namespaces, pods (each revision's endpoints, labelled
// as KServe labels them) and events — so that kubectl get pods, get events and describe answer as on a cluster.
import Foundation
import SluiceBlockingHTTP
import SluiceRouting

extension AdminAPI {
    /// `parts`: the path after `/api/v1/`, split at `/`; nil: no such resource (404).
    func coreV1(_ request: BlockingRequest, parts: [String]) -> BlockingResponse? {
        let kind: CoreKind
        let namespace: String?
        let name: String?
        switch parts.count {
        case 1, 2:
            // `namespaces`, `namespaces/NS`, and the cluster-wide lists `pods`, `events`.
            guard let found = CoreKind(rawValue: parts[0]), parts.count == 1 || found == .namespaces else { return nil }
            kind = found
            namespace = nil
            name = parts.count == 2 ? parts[1] : nil
        case 3, 4:
            guard parts[0] == "namespaces", let found = CoreKind(rawValue: parts[2]), found != .namespaces else { return nil }
            kind = found
            namespace = parts[1]
            name = parts.count == 4 ? parts[3] : nil
        default:
            return nil
        }
        if name?.isEmpty == true || namespace?.isEmpty == true { return nil }
        // Read-only: get and list, as discovery says (no watch: kubectl then does not offer it).
        guard request.method == "GET" || request.method == "HEAD", request.query("watch").map({ $0 != "true" && $0 != "1" }) ?? true else {
            return Self.status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
        let labels: LabelSelector
        let fields: FieldSelector
        do {
            labels = try LabelSelector(parsing: request.query("labelSelector") ?? "")
            fields = try FieldSelector(parsing: request.query("fieldSelector") ?? "", allowed: kind.fieldLabels)
        } catch {
            return Self.status(400, "BadRequest", error.message)
        }
        let now = Date()
        var objects: [JSONValue]
        switch kind {
        case .namespaces: objects = namespaceObjects(named: name)
        case .pods: objects = plane.endpointPods(namespace: namespace).map(Self.podObject)
        case .events: objects = eventObjects(namespace: namespace)
        }
        if let namespace { objects = objects.filter { $0["metadata"]?["namespace"]?.stringValue == namespace } }
        if let name {
            guard let object = objects.first(where: { $0["metadata"]?["name"]?.stringValue == name }) else {
                return Self.status(404, "NotFound", "\(kind.rawValue) \"\(name)\" not found",
                                   details: .object(["name": .string(name), "kind": .string(kind.rawValue)]))
            }
            objects = [object]
        } else {
            objects = objects.filter { Self.selects($0, labels: labels, fields: fields) }
        }
        if Self.wantsTable(request) {
            return Self.tableResponse(Self.table(columns: kind.columns, objects: objects, resourceVersion: nil, request: request) {
                kind.cells($0, now: now)
            })
        }
        if name != nil { return Self.json(200, objects[0]) }
        return Self.json(200, .object(["kind": .string(kind.listKind), "apiVersion": "v1", "metadata": .object([:]), "items": .array(objects)]))
    }

    // MARK: Objects

    /// Every namespace that has an InferenceService, and `default`, which a cluster always has.
    /// Namespaces in use, and `default`. Sluice's namespaces are implicit (an apply to any namespace needs none
    /// created), so one asked for by name (`named`, a valid RFC 1123 label) exists too, with no start time: kubectl
    /// asks for it after a NotFound to word its error, and the InferenceService's NotFound is the true answer.
    func namespaceObjects(named asked: String? = nil) -> [JSONValue] {
        var created: [String: Date] = [:]
        for resource in plane.resources(namespace: nil) {
            guard let namespace = resource["metadata"]?["namespace"]?.stringValue else { continue }
            let date = resource["metadata"]?["creationTimestamp"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:)) ?? Date()
            created[namespace] = min(created[namespace] ?? date, date)
        }
        var names = Set(created.keys)
        names.insert("default")
        if let asked, DNSName.isLabel1123(asked) { names.insert(asked) }
        return names.sorted().map { name in
            var metadata: [String: JSONValue] = ["name": .string(name), "labels": .object(["kubernetes.io/metadata.name": .string(name)])]
            // A namespace exists here since its first InferenceService; `default` and empty ones have no known start.
            if let date = created[name] { metadata["creationTimestamp"] = .string(RolloutState.timestamp(date)) }
            return .object(["apiVersion": "v1", "kind": "Namespace", "metadata": .object(metadata),
                            "spec": .object(["finalizers": .array(["kubernetes"])]), "status": .object(["phase": "Active"])])
        }
    }

    /// The kept events of every InferenceService in `namespace` (all when nil), least recent first, each naming its
    /// InferenceService with the uid it has (for `kubectl describe`'s `involvedObject.uid` selector).
    func eventObjects(namespace: String?) -> [JSONValue] {
        var found: [(Date, String, JSONValue)] = []
        for resource in plane.resources(namespace: namespace) {
            guard let ns = resource["metadata"]?["namespace"]?.stringValue, let name = resource["metadata"]?["name"]?.stringValue else { continue }
            let uid = resource["metadata"]?["uid"]?.stringValue
            for event in plane.events(namespace: ns, name: name) ?? [] {
                guard var object = event.json.objectValue else { continue }
                if let uid, var involved = object["involvedObject"]?.objectValue {
                    involved["uid"] = .string(uid)
                    object["involvedObject"] = .object(involved)
                }
                found.append((event.lastTimestamp, event.objectName, .object(object)))
            }
        }
        return found.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2)
    }

    /// Knative's pod for the endpoint: named `<revision>-deployment-<template hash>-<pod hash>` (stable for the same
    /// revision and endpoint), labelled as KServe and Knative label predictor pods, Running, READY from its probe (2/2, or 1/2: queue-proxy is Sluice).
    static func podObject(_ pod: EndpointPod) -> JSONValue {
        let templateHash = safeEncoded(hash: pod.revision, count: 10)
        let name = "\(pod.revision)-deployment-\(templateHash)-\(safeEncoded(hash: pod.revision + "/" + pod.endpoint.description, count: 5))"
        let labels: [String: JSONValue] = [
            "app": .string(pod.revision),
            "component": "predictor",
            "pod-template-hash": .string(templateHash),
            "serving.kserve.io/inferenceservice": .string(pod.service),
            "serving.knative.dev/configuration": .string(pod.component),
            "serving.knative.dev/configurationGeneration": .string(String(pod.generation)),
            "serving.knative.dev/revision": .string(pod.revision),
            "serving.knative.dev/service": .string(pod.component),
        ]
        let started = RolloutState.timestamp(pod.created)
        var metadata: [String: JSONValue] = [
            "name": .string(name), "namespace": .string(pod.namespace), "labels": .object(labels),
            "creationTimestamp": .string(started),
            // Where the gateway sends this pod's requests, in Sluice's endpoint notation (scheme for gRPC and TLS).
            "annotations": .object(["serving.sluice.dev/endpoint": .string(pod.endpoint.description)]),
        ]
        if let retired = pod.retiredSince {
            metadata["deletionTimestamp"] = .string(RolloutState.timestamp(max(retired, pod.created)))
        }
        let ready: JSONValue = .string(pod.isReady ? "True" : "False")
        var readyCondition: [String: JSONValue] = ["type": "Ready", "status": ready]
        if !pod.isReady {
            readyCondition["reason"] = "ContainersNotReady"
            readyCondition["message"] = .string(pod.probeError.map { "readiness probe failed: \($0)" } ?? "containers with unready status: [kserve-container]")
        }
        var containersReady = readyCondition
        containersReady["type"] = "ContainersReady"
        let port: JSONValue = .object(["containerPort": .int(Int(pod.endpoint.port)), "protocol": "TCP",
                                       "name": pod.endpoint.isHTTP2 ? "h2c" : "http1"])
        return .object([
            "apiVersion": "v1", "kind": "Pod", "metadata": .object(metadata),
            // Knative's two containers: the model server, and queue-proxy, whose work (the revision's request queue,
            // containerConcurrency, readiness gating) Sluice does itself — ready while the gateway serves.
            "spec": .object(["containers": .array([.object(["name": "kserve-container", "ports": .array([port])]),
                                                   .object(["name": "queue-proxy"])])]),
            "status": .object([
                "phase": "Running",
                "conditions": .array([.object(["type": "PodScheduled", "status": "True"]), .object(["type": "Initialized", "status": "True"]),
                                      .object(containersReady), .object(readyCondition)]),
                "hostIP": .string(pod.endpoint.host),
                "podIP": .string(pod.endpoint.host),
                "podIPs": .array([.object(["ip": .string(pod.endpoint.host)])]),
                "startTime": .string(started),
                "containerStatuses": .array([("kserve-container", pod.isReady), ("queue-proxy", true)].map { name, isReady in
                    .object(["name": .string(name), "ready": .bool(isReady), "started": .bool(true), "restartCount": .int(0),
                             "image": "", "imageID": "", "state": .object(["running": .object(["startedAt": .string(started)])])])
                }),
            ]),
        ])
    }

    /// `count` characters of Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3) from an FNV-1a hash.
    static func safeEncoded(hash text: String, count: Int) -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        var out = ""
        for _ in 0..<count {
            out.append(alphabet[Int(hash % UInt64(alphabet.count))])
            hash /= UInt64(alphabet.count)
            if hash == 0 { hash = 0x9e37_79b9_7f4a_7c15 }
        }
        return out
    }
}

/// The three read-only kinds, with their list kind, field selectors and kubectl's columns for them.
enum CoreKind: String {
    case namespaces
    case pods
    case events

    var listKind: String {
        switch self {
        case .namespaces: "NamespaceList"
        case .pods: "PodList"
        case .events: "EventList"
        }
    }

    /// The field selectors the API server takes for the kind (the ones kubectl's own commands send among them).
    var fieldLabels: Set<String> {
        switch self {
        case .namespaces: ["metadata.name", "status.phase"]
        case .pods: ["metadata.name", "metadata.namespace", "status.phase", "status.podIP", "spec.nodeName"]
        case .events: ["metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                       "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                       "reason", "reportingComponent", "source", "type"]
        }
    }

    /// The columns of Kubernetes' printers for the kind (pkg/printers/internalversion), wide ones at priority 1.
    var columns: [AdminAPI.TableColumn] {
        typealias Column = AdminAPI.TableColumn
        switch self {
        case .namespaces:
            return [Column.name, Column(name: "Status", type: "string", description: "The status of the namespace"),
                    Column(name: "Age", type: "string", description: "CreationTimestamp is a timestamp representing the server time when this object was created.")]
        case .pods:
            return [Column.name,
                    Column(name: "Ready", type: "string", description: "The aggregate readiness state of this pod for accepting traffic."),
                    Column(name: "Status", type: "string", description: "The aggregate status of the containers in this pod."),
                    Column(name: "Restarts", type: "string", description: "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                    Column(name: "Age", type: "string", description: "CreationTimestamp is a timestamp representing the server time when this object was created."),
                    Column(name: "IP", type: "string", description: "podIP address allocated to the pod.", priority: 1),
                    Column(name: "Node", type: "string", description: "NodeName is a request to schedule this pod onto a specific node.", priority: 1),
                    Column(name: "Nominated Node", type: "string", description: "nominatedNodeName is set only when this pod preempts other pods on the node.", priority: 1),
                    Column(name: "Readiness Gates", type: "string", description: "If specified, all readiness gates will be evaluated for pod readiness.", priority: 1)]
        case .events:
            return [Column(name: "Last Seen", type: "string", description: "The time at which the most recent occurrence of this event was recorded."),
                    Column(name: "Type", type: "string", description: "Type of this event (Normal, Warning), new types could be added in the future."),
                    Column(name: "Reason", type: "string", description: "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                    Column(name: "Object", type: "string", description: "The object that this event is about."),
                    Column(name: "Subobject", type: "string", description: "The field of the object the event is about.", priority: 1),
                    Column(name: "Source", type: "string", description: "The component reporting this event.", priority: 1),
                    Column(name: "Message", type: "string", description: "A human-readable description of the status of this operation."),
                    Column(name: "First Seen", type: "string", description: "The time at which the event was first recorded.", priority: 1),
                    Column(name: "Count", type: "string", description: "The number of times this event has occurred.", priority: 1),
                    Column(name: "Name", type: "string", format: "name", description: "Name must be unique within a namespace.", priority: 1)]
        }
    }

    /// A row's cells, worded as Kubernetes' printers word them (printPod, printNamespace, printEvent).
    func cells(_ object: JSONValue, now: Date) -> [JSONValue] {
        func text(_ value: JSONValue?) -> String { value?.stringValue ?? "" }
        func age(_ value: JSONValue?) -> JSONValue {
            .string(value?.stringValue.flatMap(KubectlText.date(fromTimestamp:)).map { KubectlText.age(from: $0, to: now) } ?? "<unknown>")
        }
        let metadata = object["metadata"]
        switch self {
        case .namespaces:
            return [.string(text(metadata?["name"])), .string(text(object["status"]?["phase"])), age(metadata?["creationTimestamp"])]
        case .pods:
            let statuses = object["status"]?["containerStatuses"]?.arrayValue ?? []
            let ready = statuses.filter { $0["ready"]?.boolValue == true }.count
            let total = object["spec"]?["containers"]?.arrayValue?.count ?? statuses.count
            let restarts = statuses.reduce(0) { $0 + ($1["restartCount"]?.intValue ?? 0) }
            // printPod: the phase, Terminating once a deletionTimestamp is set.
            let status = metadata?["deletionTimestamp"] != nil ? "Terminating" : text(object["status"]?["phase"])
            let ip = text(object["status"]?["podIP"])
            let node = text(object["spec"]?["nodeName"])
            return [.string(text(metadata?["name"])), .string("\(ready)/\(total)"), .string(status), .string(String(restarts)),
                    age(metadata?["creationTimestamp"]), .string(ip.isEmpty ? "<none>" : ip), .string(node.isEmpty ? "<none>" : node),
                    "<none>", "<none>"]
        case .events:
            let involved = object["involvedObject"]
            let kind = text(involved?["kind"]).lowercased()
            let name = text(involved?["name"])
            let subobject = text(involved?["fieldPath"])
            return [age(object["lastTimestamp"] ?? object["firstTimestamp"]), .string(text(object["type"])), .string(text(object["reason"])),
                    .string(name.isEmpty ? kind : "\(kind)/\(name)"), .string(subobject), .string(text(object["source"]?["component"])),
                    .string(text(object["message"]).trimmingCharacters(in: .whitespacesAndNewlines)), age(object["firstTimestamp"]),
                    .int(object["count"]?.intValue ?? 1), .string(text(metadata?["name"]))]
        }
    }
}

extension AdminAPI {
    /// Whether a core object is selected: its labels by `labels`, its fields by `fields` (`source` is the reporting
    /// component, as the API server's events field set has it; a missing field reads "").
    fileprivate static func selects(_ object: JSONValue, labels: LabelSelector, fields: FieldSelector) -> Bool {
        let labelMap = (object["metadata"]?["labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
        guard labels.matches(labelMap) else { return false }
        return fields.matches { path in
            if path == "source" { return object["source"]?["component"]?.stringValue ?? "" }
            var value: JSONValue? = object
            for key in path.split(separator: ".") { value = value?[String(key)] }
            return value?.stringValue ?? ""
        }
    }
}
