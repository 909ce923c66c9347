// Control layer: one page of a list — `limit` and `continue` as the API server pages: every page of one list is
// read at the first page's resource version (a snapshot rebuilt from the watch history), and a token whose
// version the history no longer reaches answers 410 Expired.
import Foundation

struct ListPage {
    var items: [JSONValue]
    var resourceVersion: UInt64
    var continueToken: String?
    var remainingItemCount: Int?

    /// The opaque `continue` token: the list's version and the last object returned.
    struct ContinueToken: Equatable {
        var resourceVersion: UInt64
        var namespace: String
        var name: String

        var encoded: String {
            let json: JSONValue = .object(["v": "meta.k8s.io/v1", "rv": .int(Int(resourceVersion)), "start": .string("\(namespace)/\(name)")])
            return Data(json.compactJSONText.utf8).base64EncodedString()
        }

        init(resourceVersion: UInt64, namespace: String, name: String) {
            self.resourceVersion = resourceVersion
            self.namespace = namespace
            self.name = name
        }

        init?(decoding text: String) {
            var padded = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while padded.count % 4 != 0 { padded += "=" }
            guard let data = Data(base64Encoded: padded), let json = JSONValue.parse(Array(data)),
                  json["v"]?.stringValue == "meta.k8s.io/v1", let version = json["rv"]?.intValue, version >= 0,
                  let start = json["start"]?.stringValue, let slash = start.firstIndex(of: "/") else { return nil }
            self.init(resourceVersion: UInt64(version), namespace: String(start[..<slash]), name: String(start[start.index(after: slash)...]))
        }
    }

    static func read(_ plane: ControlPlane, namespace: String?, selection: ObjectSelection, limit: Int?,
                     continueToken: String?) throws(ControlError) -> ListPage {
        var token: ContinueToken?
        if let continueToken {
            guard let decoded = ContinueToken(decoding: continueToken) else {
                throw ControlError(status: 400, reason: "BadRequest", description: "continue key is not valid: the token is not one this server issued")
            }
            token = decoded
        }
        let snapshot: (objects: [JSONValue], version: UInt64)
        switch plane.objects(at: token?.resourceVersion) {
        case .success(let found): snapshot = found
        case .failure:
            throw ControlError(status: 410, reason: "Expired",
                               description: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        }
        var selected = snapshot.objects.filter { selection.matches($0, namespace: namespace) }
        if let token {
            selected = selected.filter { Self.key($0) > (token.namespace, token.name) }
        }
        guard let limit, limit > 0, selected.count > limit else {
            return ListPage(items: selected, resourceVersion: snapshot.version, continueToken: nil, remainingItemCount: nil)
        }
        let page = Array(selected.prefix(limit))
        let last = Self.key(page[page.count - 1])
        // As the API server: the count of what is left is given only when no selector made it uncertain.
        return ListPage(items: page, resourceVersion: snapshot.version,
                        continueToken: ContinueToken(resourceVersion: snapshot.version, namespace: last.0, name: last.1).encoded,
                        remainingItemCount: selection.isEverything ? selected.count - limit : nil)
    }

    static func key(_ object: JSONValue) -> (String, String) {
        (object["metadata"]?["namespace"]?.stringValue ?? "", object["metadata"]?["name"]?.stringValue ?? "")
    }
}

extension ControlPlane {
    /// Every object as it was at `version` (now when nil), in namespace/name order, and that version; TooOld when
    /// the history no longer reaches back to it. Rebuilt from now: an object changed since takes its value before
    /// the first such change (absent when that change created it).
    func objects(at version: UInt64?) -> Result<(objects: [JSONValue], version: UInt64), WatchHub.TooOld> {
        core.withLock { core in
            let current = core.state.resources(namespace: nil, rules: core.config.hostRules)
            let now = core.state.resourceVersions.current
            guard let version, version != now else { return .success((current, now)) }
            guard version < now else { return .failure(WatchHub.TooOld(requested: version, oldest: now)) }
            let entries: [WatchHub.Entry]
            switch watchHub.entries(after: version) {
            case .success(let found): entries = found
            case .failure(let tooOld): return .failure(tooOld)
            }
            var byKey: [String: JSONValue] = [:]
            for object in current {
                let key = ListPage.key(object)
                byKey[key.0 + "/" + key.1] = object
            }
            var rewound: Set<String> = []
            for entry in entries where !rewound.contains(entry.namespace + "/" + entry.name) {
                rewound.insert(entry.namespace + "/" + entry.name)
                byKey[entry.namespace + "/" + entry.name] = entry.previous
            }
            let objects = byKey.values.sorted { ListPage.key($0) < ListPage.key($1) }
            return .success((objects, version))
        }
    }
}
