// Control layer: `?watch=true` on the InferenceService lists — newline-delimited watch events (ADDED, MODIFIED,
// DELETED, BOOKMARK, ERROR) in a chunked body, from a resource version or from the current objects, until
// `timeoutSeconds` or until the watcher goes away; Table rows when the Accept header asks for them.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// How often an idle watch that allows bookmarks gets one (the API server sends about one a minute).
    static let bookmarkInterval: Duration = .seconds(60)
    /// A watch without `timeoutSeconds` ends after this long (the API server's default request timeout).
    static let defaultWatchTimeout: Duration = .seconds(1800)

    func watch(_ request: BlockingRequest, namespace: String?, selection: ObjectSelection) -> BlockingResponse {
        let versionText = request.query("resourceVersion") ?? ""
        var fromVersion: UInt64?
        if !versionText.isEmpty && versionText != "0" {
            guard let version = UInt64(versionText) else {
                return Self.status(400, "BadRequest", "resourceVersion: Invalid value: \"\(versionText)\": must be a decimal resource version")
            }
            fromVersion = version
        }
        var timeout = Self.defaultWatchTimeout
        if let text = request.query("timeoutSeconds") {
            guard let seconds = Int(text), seconds >= 0 else {
                return Self.status(400, "BadRequest", "timeoutSeconds: Invalid value: \"\(text)\": must be a non-negative integer")
            }
            if seconds > 0 { timeout = .seconds(seconds) }
        }
        let bookmarks = request.query("allowWatchBookmarks") == "true"
        let asTable = Self.wantsTable(request)
        let plane = self.plane
        let hub = plane.watchHub

        // Subscribed (and, from "now", the current objects read) in the plane's lock: no change is missed or doubled.
        var initial: [JSONValue] = []
        let start: UInt64
        let subscription: (id: Int, fd: Int32)?
        if let fromVersion {
            (_, subscription) = plane.subscribe()
            start = fromVersion
        } else {
            (initial, start, subscription) = plane.snapshotAndSubscribe(namespace: namespace)
        }
        guard let subscription else {
            return Self.status(503, "ServiceUnavailable", "the server cannot open another watch now (out of descriptors)")
        }

        let line: @Sendable (String, JSONValue, UInt64) -> [UInt8] = { type, object, version in
            let shown = asTable && type != "BOOKMARK" && type != "ERROR"
                ? Self.isvcTable([object], resourceVersion: String(version), request: request) : object
            return Array((JSONValue.object(["type": .string(type), "object": shown]).compactJSONText + "\n").utf8)
        }
        let initialObjects = initial
        let limit = timeout
        return BlockingResponse(status: 200, headers: [("Content-Type", "application/json")]) { sink in
            defer { hub.unsubscribe(subscription.id) }
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: limit)
            var nextBookmark = clock.now.advanced(by: Self.bookmarkInterval)
            var last = start
            for object in initialObjects where selection.matches(object, namespace: namespace) {
                let version = object["metadata"]?["resourceVersion"]?.stringValue.flatMap { UInt64($0) } ?? start
                guard sink.emit(line("ADDED", object, version)) else { return }
            }
            while true {
                switch hub.entries(after: last) {
                case .failure(let tooOld):
                    // As the watch cache: a 410 Expired Status as an ERROR event; the client lists again.
                    let status: JSONValue = .object([
                        "kind": "Status", "apiVersion": "v1", "metadata": .object([:]), "status": "Failure",
                        "message": .string("too old resource version: \(tooOld.requested) (\(tooOld.oldest))"),
                        "reason": "Expired", "code": .int(410),
                    ])
                    _ = sink.emit(line("ERROR", status, last))
                    return
                case .success(let entries):
                    for entry in entries {
                        last = entry.resourceVersion
                        guard let (type, object) = Self.event(entry, selection: selection, namespace: namespace) else { continue }
                        guard sink.emit(line(type, object, entry.resourceVersion)) else { return }
                    }
                }
                let now = clock.now
                if now >= deadline {
                    if bookmarks { _ = sink.emit(line("BOOKMARK", Self.bookmark(last), last)) }
                    return
                }
                if bookmarks && now >= nextBookmark {
                    guard sink.emit(line("BOOKMARK", Self.bookmark(last), last)) else { return }
                    nextBookmark = now.advanced(by: Self.bookmarkInterval)
                }
                let wakeAt = bookmarks ? min(deadline, nextBookmark) : deadline
                let milliseconds = max(1, Int((wakeAt - now) / .milliseconds(1)) + 1)
                switch sink.wait(readable: subscription.fd, milliseconds: milliseconds) {
                case .peerGone: return
                case .readable: WatchHub.drain(subscription.fd)
                case .timedOut: break
                }
            }
        }
    }

    /// The event a watcher with this selection sees for a change: an object that starts matching is ADDED to it,
    /// one that stops matching is DELETED (its old self with the new version), as the API server's watch cache does.
    static func event(_ entry: WatchHub.Entry, selection: ObjectSelection, namespace: String?) -> (String, JSONValue)? {
        let isNow = selection.matches(entry.object, namespace: namespace)
        let wasBefore = entry.previous.map { selection.matches($0, namespace: namespace) } ?? false
        switch entry.kind {
        case .added: return isNow ? ("ADDED", entry.object) : nil
        case .deleted: return isNow ? ("DELETED", entry.object) : nil
        case .modified:
            switch (wasBefore, isNow) {
            case (true, true): return ("MODIFIED", entry.object)
            case (false, true): return ("ADDED", entry.object)
            case (true, false):
                guard case .object(var members)? = entry.previous, case .object(var metadata)? = members["metadata"] else { return nil }
                metadata["resourceVersion"] = .string(String(entry.resourceVersion))
                members["metadata"] = .object(metadata)
                return ("DELETED", .object(members))
            case (false, false): return nil
            }
        }
    }

    /// A BOOKMARK's object: only the kind and the version the watcher has seen up to.
    static func bookmark(_ version: UInt64) -> JSONValue {
        .object(["kind": .string(InferenceService.kind), "apiVersion": .string(InferenceService.apiVersion),
                 "metadata": .object(["resourceVersion": .string(String(version))])])
    }
}
