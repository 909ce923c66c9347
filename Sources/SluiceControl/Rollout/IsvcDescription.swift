// Control layer: `kubectl describe isvc` as text — the object's fields as kubectl's generic describer prints a custom
// resource, then Sluice's revisions table, then the Events section — from what the admin API returns.
import Foundation

public enum IsvcDescription {
    /// The whole description. `events` least recent first, as the events API returns them.
    public static func render(_ resource: JSONValue, revisions: [RevisionRow], events: [StoredEvent], now: Date) -> String {
        let metadata = resource["metadata"]
        var text = ""
        // kubectl's header block: one tabwriter block, so the values share a column (widest label + 2 spaces).
        let header: [(String, [String])] = [
            ("Name", [metadata?["name"]?.stringValue ?? ""]),
            ("Namespace", [metadata?["namespace"]?.stringValue ?? ""]),
            ("Labels", pairs(metadata?["labels"])),
            ("Annotations", pairs(metadata?["annotations"])),
            ("API Version", [resource["apiVersion"]?.stringValue ?? ""]),
            ("Kind", [resource["kind"]?.stringValue ?? ""]),
        ]
        let width = header.map { $0.0.count + 1 }.max()! + 2
        for (label, values) in header {
            text += (label + ":").padding(toLength: width, withPad: " ", startingAt: 0) + values[0] + "\n"
            for value in values.dropFirst() { text += String(repeating: " ", count: width) + value + "\n" }
        }
        var shown: [String: JSONValue] = [:]
        for key in ["creationTimestamp", "generation"] { if let value = metadata?[key] { shown[key] = value } }
        text += "Metadata:\n" + fields(.object(shown), indent: 2)
        if let spec = resource["spec"] { text += "Spec:\n" + fields(spec, indent: 2) }
        if let status = resource["status"] { text += "Status:\n" + fields(status, indent: 2) }
        if revisions.isEmpty {
            text += "Revisions:  <none>\n"
        } else {
            text += "Revisions:\n" + indented(RevisionRow.render(revisions, now: now), by: 2)
        }
        text += eventsSection(events, now: now)
        return text
    }

    /// kubectl describe's Events table: Type, Reason, Age (`10s (x3 over 2m)` for repeats), From, Message; columns as
    /// wide as their widest cell plus 2 (its tabwriter's padding), the last one not padded.
    public static func eventsSection(_ events: [StoredEvent], now: Date) -> String {
        guard !events.isEmpty else { return "Events:  <none>\n" }
        var rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
        // By last occurrence as kubectl sorts; the given order breaks ties (timestamps are whole seconds).
        let ordered = events.enumerated().sorted { ($0.element.lastTimestamp, $0.offset) < ($1.element.lastTimestamp, $1.offset) }
        for event in ordered.map(\.element) {
            let age = event.count > 1
                ? "\(KubectlText.age(from: event.lastTimestamp, to: now)) (x\(event.count) over \(KubectlText.age(from: event.firstTimestamp, to: now)))"
                : KubectlText.age(from: event.firstTimestamp, to: now)
            rows.append([event.type, event.reason, age, "sluice", event.message.trimmingCharacters(in: .whitespacesAndNewlines)])
        }
        return "Events:\n" + KubectlText.table(rows, padding: 2, minimumWidth: 0, indent: "  ")
    }

    /// `key=value` lines of labels or annotations, sorted; `<none>` for none.
    static func pairs(_ value: JSONValue?) -> [String] {
        let entries = (value?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.stringValue ?? $0.value.compactJSONText)" }
        return entries.isEmpty ? ["<none>"] : entries
    }

    /// kubectl's `printUnstructuredContent`: keys sorted, labelled by `smartLabel`; a scalar on its label's line
    /// (consecutive scalars aligned), a mapping or list below it, 2 spaces deeper; the items of a list of mappings one
    /// after another.
    static func fields(_ value: JSONValue, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .object(let members):
            var text = ""
            var scalars: [(String, String)] = []
            func flush() {
                let width = (scalars.map { $0.0.count + 1 }.max() ?? 0) + 2
                for (label, scalar) in scalars { text += pad + (label + ":").padding(toLength: width, withPad: " ", startingAt: 0) + scalar + "\n" }
                scalars = []
            }
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                switch member {
                case .object, .array:
                    flush()
                    text += pad + smartLabel(key) + ":\n" + fields(member, indent: indent + 2)
                default:
                    scalars.append((smartLabel(key), scalarText(member)))
                }
            }
            flush()
            return text
        case .array(let items):
            return items.map { item in
                switch item {
                case .object, .array: fields(item, indent: indent)
                default: pad + scalarText(item) + "\n"
                }
            }.joined()
        default:
            return pad + scalarText(value) + "\n"
        }
    }

    static func scalarText(_ value: JSONValue) -> String {
        switch value {
        case .null: ""
        case .bool(let flag): flag ? "true" : "false"
        case .int(let number): String(number)
        case .double(let number): String(number)
        case .string(let text): text
        case .array, .object: value.compactJSONText
        }
    }

    /// kubectl's `smartLabelFor`: `latestReadyRevision` → `Latest Ready Revision`, `url` → `URL`; a key with
    /// characters other than letters and `-` is printed as it is.
    static func smartLabel(_ field: String) -> String {
        guard field.allSatisfy({ $0.isLetter || $0 == "-" }) else { return field }
        var parts: [String] = []
        var current = ""
        let characters = Array(field)
        for (index, character) in characters.enumerated() {
            let previous = index > 0 ? characters[index - 1] : nil
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            // A part starts at an upper-case letter after a lower-case one, or at the last capital of a run
            // followed by a lower-case letter (`URLPath` → `URL`, `Path`).
            let startsPart = character.isUppercase && (previous?.isLowercase == true
                                                       || (previous?.isUppercase == true && next?.isLowercase == true))
            if startsPart && !current.isEmpty { parts.append(current); current = "" }
            current.append(character)
        }
        if !current.isEmpty { parts.append(current) }
        let acronyms: Set<String> = ["API", "URL", "UID", "OSB", "GUID"]
        return parts.map { part in
            acronyms.contains(part.uppercased()) ? part.uppercased() : part.prefix(1).uppercased() + part.dropFirst()
        }.joined(separator: " ")
    }

    static func indented(_ text: String, by count: Int) -> String {
        let pad = String(repeating: " ", count: count)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : pad + $0 }.joined(separator: "\n")
    }
}
