// Control layer: the rollout state as state.json's bytes, re-encoding only the InferenceServices that changed since the
// last save — a write to one of 1 000 services was spending most of its time encoding the 999 others.
import Foundation

/// Used under the control plane's lock only (every save is).
final class StateDocumentEncoder: @unchecked Sendable {
    /// Each service's record as last encoded, with its `"key":record` bytes.
    private var cache: [String: (record: ServiceRecord, member: [UInt8])] = [:]

    /// The same document `JSONEncoder` (sorted keys) gives for `RolloutState`, one service per line: the document's
    /// keys in order (componentSuffix, formatVersion, resourceVersion, services), each service's member reused when
    /// its record is unchanged.
    func encode(_ state: RolloutState) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var out: [UInt8] = Array("{\"componentSuffix\":".utf8)
        JSONValue.writeString(state.componentSuffix, into: &out)
        out += ",\"formatVersion\":\(RolloutState.currentFormatVersion),\"resourceVersion\":".utf8
        out += try encoder.encode(state.resourceVersions)
        out += ",\"services\":{".utf8
        var fresh: [String: (record: ServiceRecord, member: [UInt8])] = [:]
        for (index, key) in state.services.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
            let record = state.services[key]!
            let member: [UInt8]
            if let cached = cache[key], cached.record == record {
                member = cached.member
            } else {
                var bytes: [UInt8] = []
                JSONValue.writeString(key, into: &bytes)
                bytes.append(UInt8(ascii: ":"))
                bytes += try encoder.encode(record)
                member = bytes
            }
            fresh[key] = (record, member)
            out += index == 0 ? "\n".utf8 : ",\n".utf8
            out += member
        }
        out += "\n}}\n".utf8
        cache = fresh
        return Data(out)
    }
}
