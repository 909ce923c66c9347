// Control layer: the etcd v3 gateway's JSON (grpc-gateway's proto3 mapping): field names as in rpc.proto (snake_case,
// except lease's `ID`/`TTL`), int64 as decimal strings, `bytes` as base64, fields at their default value left out.
import Foundation

typealias EtcdJSONObject = [String: Any]

enum EtcdJSON {
    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// etcd's range_end for "every key starting with `key`": the key with its last byte + 1, dropping trailing
    /// 0xff bytes first; an all-0xff (or empty) key gives "\0", which etcd reads as "to the end of the keyspace".
    static func prefixEnd(_ key: String) -> [UInt8] {
        var bytes = Array(key.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return [0]
    }

    static func encode(_ object: EtcdJSONObject) -> [UInt8] {
        // JSONSerialization cannot fail on dictionaries of strings, numbers, Booleans, arrays and dictionaries.
        (try? JSONSerialization.data(withJSONObject: object)).map { Array($0) } ?? Array("{}".utf8)
    }

    static func decode(_ bytes: [UInt8]) -> EtcdJSONObject? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? EtcdJSONObject
    }

    /// An int64 field: a string ("12") in proto3 JSON, though a number is accepted too; absent is 0.
    static func int64(_ value: Any?) -> Int64 {
        switch value {
        case let text as String: return Int64(text) ?? 0
        case let number as NSNumber: return number.int64Value
        default: return 0
        }
    }

    static func bytes(_ value: Any?) -> [UInt8] {
        guard let text = value as? String, let data = Data(base64Encoded: text) else { return [] }
        return Array(data)
    }

    static func keyValue(_ object: Any?) -> EtcdKeyValue {
        let kv = object as? EtcdJSONObject ?? [:]
        return EtcdKeyValue(
            key: String(decoding: bytes(kv["key"]), as: UTF8.self), value: bytes(kv["value"]),
            createRevision: int64(kv["create_revision"]), modRevision: int64(kv["mod_revision"]),
            version: int64(kv["version"]), lease: int64(kv["lease"]))
    }

    static func keyValues(_ object: EtcdJSONObject) -> [EtcdKeyValue] {
        (object["kvs"] as? [Any] ?? []).map(keyValue)
    }

    static func revision(_ object: EtcdJSONObject) -> Int64 {
        int64((object["header"] as? EtcdJSONObject)?["revision"])
    }

    static func rangeRequest(_ key: String, prefix: Bool, revision: Int64? = nil) -> EtcdJSONObject {
        var request: EtcdJSONObject = ["key": base64(key)]
        if prefix { request["range_end"] = base64(prefixEnd(key)) }
        if let revision { request["revision"] = String(revision) }
        return request
    }

    static func deleteRequest(_ key: String, prefix: Bool) -> EtcdJSONObject {
        var request: EtcdJSONObject = ["key": base64(key)]
        if prefix { request["range_end"] = base64(prefixEnd(key)) }
        return request
    }

    static func putRequest(_ key: String, _ value: [UInt8], lease: Int64) -> EtcdJSONObject {
        var request: EtcdJSONObject = ["key": base64(key), "value": base64(value)]
        if lease != 0 { request["lease"] = String(lease) }
        return request
    }

    /// rpc.proto's Compare: target MOD/CREATE/VALUE, result EQUAL, the value in the field the target names.
    static func compare(_ compare: EtcdCompare) -> EtcdJSONObject {
        switch compare {
        case .modRevision(let key, let revision):
            return ["key": base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": String(revision)]
        case .createRevision(let key, let revision):
            return ["key": base64(key), "target": "CREATE", "result": "EQUAL", "create_revision": String(revision)]
        case .value(let key, let value):
            return ["key": base64(key), "target": "VALUE", "result": "EQUAL", "value": base64(value)]
        }
    }

    /// rpc.proto's RequestOp: one of request_put / request_delete_range / request_range.
    static func operation(_ operation: EtcdOperation) -> EtcdJSONObject {
        switch operation {
        case .put(let key, let value, let lease): return ["request_put": putRequest(key, value, lease: lease)]
        case .delete(let key, let prefix): return ["request_delete_range": deleteRequest(key, prefix: prefix)]
        case .range(let key, let prefix): return ["request_range": rangeRequest(key, prefix: prefix)]
        }
    }

    static func watchEvent(_ object: Any?) -> EtcdWatchEvent {
        let event = object as? EtcdJSONObject ?? [:]
        // mvccpb.Event's type: PUT is the default (0), so the gateway leaves it out.
        let kind: EtcdWatchEvent.Kind = (event["type"] as? String) == "DELETE" ? .delete : .put
        return EtcdWatchEvent(kind: kind, keyValue: keyValue(event["kv"]))
    }
}
