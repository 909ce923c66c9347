// Control layer: the persisted shape of the rollout state, versioned so a newer file is never overwritten.
import Foundation

extension RolloutState: Codable {
    private enum CodingKeys: String, CodingKey {
        case formatVersion, componentSuffix, services, resourceVersion
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let version = try container.decode(Int.self, forKey: .formatVersion)
        // Reading a newer shape with older code would drop what it does not know, then the next
        // save would destroy it: refuse, and let the caller stop start-up.
        guard version <= Self.currentFormatVersion else {
            throw RolloutStateFormatError(found: version, supported: Self.currentFormatVersion)
        }
        guard version >= 1 else {
            throw DecodingError.dataCorruptedError(forKey: .formatVersion, in: container,
                                                   debugDescription: "formatVersion \(version) is not a valid version")
        }
        componentSuffix = try container.decode(String.self, forKey: .componentSuffix)
        services = try container.decode([String: ServiceRecord].self, forKey: .services)
        // Absent from files written before resource versions: the store starts from the first one.
        resourceVersions = try container.decodeIfPresent(ResourceVersionClock.self, forKey: .resourceVersion) ?? ResourceVersionClock()
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.currentFormatVersion, forKey: .formatVersion)
        try container.encode(componentSuffix, forKey: .componentSuffix)
        try container.encode(services, forKey: .services)
        try container.encode(resourceVersions, forKey: .resourceVersion)
    }
}
