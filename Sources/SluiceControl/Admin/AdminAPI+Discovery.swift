// Control layer: the admin API's discovery documents — /version, /api, /api/v1, /apis and the serving.kserve.io group
// (and aggregated discovery when the Accept header asks for it) — so that kubectl finds InferenceServices.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// The Kubernetes release whose API this one follows: aggregated discovery v2 is GA there and v2beta1 still served,
    /// and kubectl 1.29-1.31 are within its skew (older and newer ones work; `kubectl version` warns about skew).
    static let kubernetesVersion = (major: "1", minor: "30")
    /// Sluice's own release, in `/version`'s gitVersion (`v1.30.0-sluice.0.1.0`): `kubectl version` shows it.
    public static let sluiceVersion = "0.1.0"

    /// A resource as discovery lists it; the plain and the aggregated documents are both made from these.
    struct DiscoveredResource {
        var name: String
        var singularName: String
        var kind: String
        var isNamespaced: Bool
        var verbs: [String]
        var shortNames: [String] = []
        var categories: [String] = []
        /// Subresource name and its verbs (`status`).
        var subresources: [(name: String, verbs: [String])] = []
    }

    /// The read-only core/v1 resources AdminAPI+CoreV1.swift serves (get and list only: no watch there).
    static let coreResources = [
        DiscoveredResource(name: "events", singularName: "event", kind: "Event", isNamespaced: true, verbs: ["get", "list"], shortNames: ["ev"]),
        DiscoveredResource(name: "namespaces", singularName: "namespace", kind: "Namespace", isNamespaced: false, verbs: ["get", "list"], shortNames: ["ns"]),
        DiscoveredResource(name: "pods", singularName: "pod", kind: "Pod", isNamespaced: true, verbs: ["get", "list"], shortNames: ["po"], categories: ["all"]),
    ]

    /// KServe's CRD (`names`: plural, singular, kind, shortNames; no categories; a status subresource) with the verbs
    /// the admin API serves on it (no deletecollection).
    static let kserveResources = [
        DiscoveredResource(name: "inferenceservices", singularName: "inferenceservice", kind: InferenceService.kind, isNamespaced: true,
                           verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["isvc"],
                           subresources: [("status", ["get", "patch", "update"])]),
    ]

    static let kserveGroup = "serving.kserve.io"
    static let kserveVersion = "v1beta1"

    /// The answer for a discovery path; nil for any other path.
    func discovery(_ request: BlockingRequest) -> BlockingResponse? {
        var path = request.path
        // The API server serves `/apis/` as `/apis`; kubectl asks for both spellings over its versions.
        if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let group = Self.kserveGroup, version = Self.kserveVersion
        let document: JSONValue
        switch path {
        case "/version":
            let (major, minor) = Self.kubernetesVersion
            document = .object(["major": .string(major), "minor": .string(minor),
                                "gitVersion": .string("v\(major).\(minor).0-sluice.\(Self.sluiceVersion)"),
                                "gitCommit": .string(""), "gitTreeState": .string(""), "buildDate": .string(""), "goVersion": .string(""), "compiler": .string(""),
                                "platform": .string("linux/\(Self.architecture)")])
        case "/api":
            if let response = Self.aggregated(request, groups: [("", "v1", Self.coreResources)]) { return response }
            document = .object(["kind": "APIVersions", "versions": .array(["v1"]),
                                "serverAddressByClientCIDRs": .array([.object(["clientCIDR": "0.0.0.0/0",
                                                                               "serverAddress": .string(request.header("Host") ?? "")])])])
        case "/api/v1":
            document = Self.resourceList(groupVersion: "v1", Self.coreResources)
        case "/apis":
            if let response = Self.aggregated(request, groups: [(group, version, Self.kserveResources)]) { return response }
            document = .object(["kind": "APIGroupList", "apiVersion": "v1", "groups": .array([.object(Self.apiGroup(group, version))])])
        case "/apis/" + group:
            document = .object(Self.apiGroup(group, version).merging(["kind": "APIGroup", "apiVersion": "v1"]) { $1 })
        case "/apis/\(group)/\(version)":
            document = Self.resourceList(groupVersion: "\(group)/\(version)", Self.kserveResources)
        default:
            return nil
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            return Self.status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
        return Self.json(200, document)
    }

    static var architecture: String {
        #if arch(arm64)
        return "arm64"
        #else
        return "amd64"
        #endif
    }

    /// An APIGroup's body (name, versions, preferredVersion), without kind: /apis lists these.
    static func apiGroup(_ group: String, _ version: String) -> [String: JSONValue] {
        let groupVersion: JSONValue = .object(["groupVersion": .string("\(group)/\(version)"), "version": .string(version)])
        return ["name": .string(group), "versions": .array([groupVersion]), "preferredVersion": groupVersion]
    }

    /// metav1.APIResourceList: each resource, then each of its subresources as `resource/subresource`.
    static func resourceList(groupVersion: String, _ resources: [DiscoveredResource]) -> JSONValue {
        var entries: [JSONValue] = []
        for resource in resources {
            var entry: [String: JSONValue] = ["name": .string(resource.name), "singularName": .string(resource.singularName),
                                              "namespaced": .bool(resource.isNamespaced), "kind": .string(resource.kind),
                                              "verbs": .array(resource.verbs.map(JSONValue.string))]
            if !resource.shortNames.isEmpty { entry["shortNames"] = .array(resource.shortNames.map(JSONValue.string)) }
            if !resource.categories.isEmpty { entry["categories"] = .array(resource.categories.map(JSONValue.string)) }
            entries.append(.object(entry))
            for sub in resource.subresources {
                entries.append(.object(["name": .string("\(resource.name)/\(sub.name)"), "singularName": "",
                                        "namespaced": .bool(resource.isNamespaced), "kind": .string(resource.kind),
                                        "verbs": .array(sub.verbs.map(JSONValue.string))]))
            }
        }
        var list: [String: JSONValue] = ["kind": "APIResourceList", "groupVersion": .string(groupVersion), "resources": .array(entries)]
        // The API server leaves apiVersion out for the legacy group's list only.
        if groupVersion.contains("/") { list["apiVersion"] = "v1" }
        return .object(list)
    }

    /// An APIGroupDiscoveryList (apidiscovery.k8s.io v2, or v2beta1 when only that is asked, as kubectl 1.27 does)
    /// when the Accept header prefers one to plain JSON; nil otherwise. The Content-Type names what was sent:
    /// client-go decides by it whether the body is aggregated.
    static func aggregated(_ request: BlockingRequest, groups: [(name: String, version: String, resources: [DiscoveredResource])]) -> BlockingResponse? {
        var chosen: String?
        for range in acceptRanges(request) {
            if range.type == "application/json", range.parameters["g"] == "apidiscovery.k8s.io",
               range.parameters["as"] == "APIGroupDiscoveryList", let v = range.parameters["v"], v == "v2" || v == "v2beta1" {
                chosen = v
                break
            }
            if range.isPlainJSON { break }
        }
        guard let version = chosen else { return nil }
        let items: [JSONValue] = groups.map { group in
            let resources: [JSONValue] = group.resources.map { resource in
                let kind: JSONValue = .object(["group": .string(group.name), "version": .string(group.version), "kind": .string(resource.kind)])
                var entry: [String: JSONValue] = [
                    "resource": .string(resource.name), "responseKind": kind, "scope": resource.isNamespaced ? "Namespaced" : "Cluster",
                    "singularResource": .string(resource.singularName), "verbs": .array(resource.verbs.map(JSONValue.string)),
                ]
                if !resource.shortNames.isEmpty { entry["shortNames"] = .array(resource.shortNames.map(JSONValue.string)) }
                if !resource.categories.isEmpty { entry["categories"] = .array(resource.categories.map(JSONValue.string)) }
                if !resource.subresources.isEmpty {
                    entry["subresources"] = .array(resource.subresources.map { sub in
                        .object(["subresource": .string(sub.name), "responseKind": kind, "verbs": .array(sub.verbs.map(JSONValue.string))])
                    })
                }
                return .object(entry)
            }
            return .object(["metadata": .object(group.name.isEmpty ? [:] : ["name": .string(group.name)]),
                            "versions": .array([.object(["version": .string(group.version), "resources": .array(resources), "freshness": "Current"])])])
        }
        let list: JSONValue = .object(["kind": "APIGroupDiscoveryList", "apiVersion": .string("apidiscovery.k8s.io/\(version)"),
                                       "metadata": .object([:]), "items": .array(items)])
        var response = json(200, list)
        response.headers.removeAll { $0.0.lowercased() == "content-type" }
        response.headers.append(("Content-Type", "application/json;g=apidiscovery.k8s.io;v=\(version);as=APIGroupDiscoveryList"))
        response.headers.append(("Vary", "Accept"))
        return response
    }
}
