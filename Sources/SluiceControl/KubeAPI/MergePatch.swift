// Control layer: JSON merge patch (RFC 7386, `application/merge-patch+json`): what `kubectl patch --type merge` and
// kubectl's client-side apply of a custom resource send.

public enum MergePatch {
    /// RFC 7386 §2 MergePatch(Target, Patch): an object patch merges member by member, `null` removes a member,
    /// anything else (an array included) replaces the target whole.
    public static func apply(_ patch: JSONValue, to target: JSONValue?) -> JSONValue {
        guard case .object(let members) = patch else { return patch }
        var result = target?.objectValue ?? [:]
        for (key, value) in members {
            if value == .null {
                result[key] = nil
            } else {
                result[key] = apply(value, to: result[key])
            }
        }
        return .object(result)
    }
}
