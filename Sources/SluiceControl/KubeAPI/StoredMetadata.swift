// Control layer: the object metadata the API server owns and keeps with each stored InferenceService — uid,
// resourceVersion, managedFields — beside the manifest the user wrote (which never carries them).
import Foundation

public struct StoredMetadata: Codable, Equatable, Sendable {
    /// Made at create, kept by every later write; a delete and create make a new one (Kubernetes' identity rule).
    public var uid: String
    /// The store's version when this object last changed (spec, metadata or status).
    public var resourceVersion: UInt64
    /// `metadata.managedFields` entries as server-side apply keeps them (ServerSideApply).
    public var managedFields: [JSONValue]

    public init(uid: String = StoredMetadata.newUID(), resourceVersion: UInt64, managedFields: [JSONValue] = []) {
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.managedFields = managedFields
    }

    /// A random (version 4) UUID in the lower-case form the API server writes.
    public static func newUID() -> String { UUID().uuidString.lowercased() }
}
