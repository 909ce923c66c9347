// Control layer: one revision of an InferenceService's predictor: its template, endpoints and readiness.
import Foundation
import SluiceRouting

/// A Knative revision, as Sluice keeps it: immutable template, the endpoints serving it, readiness.
public struct RevisionRecord: Codable, Equatable, Sendable {
    /// Where `endpoints` came from; only lookup-sourced ones are re-resolved when the gateway config changes.
    public enum EndpointSource: String, Codable, Sendable {
        case annotation
        case storageUri
    }

    /// Reason of a revision waiting for its first successful probe (Knative's revision reason while starting).
    public static let deployingReason = "Deploying"

    /// `<isvc><componentSuffix>-<5 digits>`, the number being the configuration generation.
    public let name: String
    public let template: JSONValue
    public let storageUri: String
    public internal(set) var endpoints: [Endpoint]
    public internal(set) var endpointSource: EndpointSource
    public internal(set) var isReady: Bool
    public internal(set) var reason: String?
    public internal(set) var message: String?
    public let creationTimestamp: Date
    public internal(set) var lastTransitionTime: Date

    init(name: String, template: JSONValue, storageUri: String, endpoints: [Endpoint], endpointSource: EndpointSource,
         isReady: Bool, reason: String?, message: String?, now: Date) {
        self.name = name
        self.template = template
        self.storageUri = storageUri
        self.endpoints = endpoints
        self.endpointSource = endpointSource
        self.isReady = isReady
        self.reason = reason
        self.message = message
        creationTimestamp = now
        lastTransitionTime = now
    }

    /// `spec.predictor.timeout` (seconds) as the revision's response timeout in ms; nil when the template has none.
    public var responseTimeoutMs: Int? { template["spec"]?["timeout"]?.intValue.map { $0 * 1000 } }

    /// `spec.predictor.containerConcurrency`: concurrent requests per pod, 0 (or absent) for no limit.
    public var containerConcurrency: Int { template["spec"]?["containerConcurrency"]?.intValue ?? 0 }

    /// Ready and with somewhere to send requests: the only revisions the data plane may give a share.
    public var isRoutable: Bool { isReady && !endpoints.isEmpty }

    private enum CodingKeys: String, CodingKey {
        case name, template, storageUri, endpoints, endpointSource, isReady, reason, message, creationTimestamp, lastTransitionTime
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        template = try container.decode(JSONValue.self, forKey: .template)
        storageUri = try container.decode(String.self, forKey: .storageUri)
        // `Endpoint` belongs to the routing layer and is not Codable: stored as `host:port` strings.
        var endpoints: [Endpoint] = []
        for text in try container.decode([String].self, forKey: .endpoints) {
            guard let endpoint = EndpointList.parseOne(text) else {
                throw DecodingError.dataCorruptedError(forKey: .endpoints, in: container,
                                                       debugDescription: "\"\(text)\" is not an IP:port endpoint")
            }
            endpoints.append(endpoint)
        }
        self.endpoints = endpoints
        endpointSource = try container.decode(EndpointSource.self, forKey: .endpointSource)
        isReady = try container.decode(Bool.self, forKey: .isReady)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        creationTimestamp = try container.decode(Date.self, forKey: .creationTimestamp)
        lastTransitionTime = try container.decode(Date.self, forKey: .lastTransitionTime)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(template, forKey: .template)
        try container.encode(storageUri, forKey: .storageUri)
        try container.encode(endpoints.map(\.description), forKey: .endpoints)
        try container.encode(endpointSource, forKey: .endpointSource)
        try container.encode(isReady, forKey: .isReady)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(message, forKey: .message)
        try container.encode(creationTimestamp, forKey: .creationTimestamp)
        try container.encode(lastTransitionTime, forKey: .lastTransitionTime)
    }
}
