// Control layer: composing a manifest's documents when a mapping repeats a key — the API server's strict decoding
// names each `duplicate field "spec.x"` (and, under Warn or Ignore, keeps the last value, as Go's JSON decoders do).
import Yams

extension ManifestDecoder {
    /// One document and the paths of the fields it repeated (each repetition but the last).
    struct ComposedDocument {
        var value: JSONValue
        var duplicateFields: [String]
    }

    /// Marks the earlier occurrence of a repeated key while the text is composed again; never a real field.
    static let duplicateMarker = "sluice.duplicate-field."

    /// Every document of `text`. Yams refuses a mapping with a repeated key (at the first occurrence's mark): that
    /// occurrence is renamed to a marker and the text composed again, until it composes; the marked members are then
    /// taken out and their paths kept. Bounded: each round renames one key of the text, and beyond 100 repeated keys
    /// the text is refused as YAML (each round composes the whole text again).
    static func composeDocuments(_ text: String) throws -> [ComposedDocument] {
        var current = text
        var originals: [String] = []
        while true {
            do {
                var values: [JSONValue] = []
                var sequence = try Yams.compose_all(yaml: current)
                while let node = sequence.next() {
                    values.append(try JSONValue.fromYAML(node))
                }
                if let error = sequence.error { throw error }
                return values.map { value in
                    var paths: [String] = []
                    let cleaned = originals.isEmpty ? value : removeMarkers(value, path: "", originals: originals, into: &paths)
                    return ComposedDocument(value: cleaned, duplicateFields: paths)
                }
            } catch YamlError.duplicatedKeysInMapping(let duplicates, let context) {
                guard let key = duplicates.first, originals.count < 100,
                      let renamed = rename(in: current, at: context.mark, to: duplicateMarker + String(originals.count)) else {
                    throw YamlError.duplicatedKeysInMapping(duplicates: duplicates, context: context)
                }
                originals.append(key)
                current = renamed
            }
        }
    }

    /// `text` with the mapping key that starts at `mark` (plain, single- or double-quoted) replaced by `marker`;
    /// nil when no key starts there.
    static func rename(in text: String, at mark: Mark, to marker: String) -> String? {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.unicodeScalars) }
        let row = mark.line - 1
        let start = mark.column - 1
        guard lines.indices.contains(row), lines[row].indices.contains(start) else { return nil }
        let line = lines[row]
        let open = line[start]
        var end = start
        let replacement: [Unicode.Scalar]
        if open == "\"" || open == "'" {
            // The closing quote: `\"` escapes inside double quotes, `''` inside single ones.
            var index = start + 1
            while index < line.count {
                if open == "\"" && line[index] == "\\" { index += 2; continue }
                if line[index] == open {
                    if open == "'" && index + 1 < line.count && line[index + 1] == "'" { index += 2; continue }
                    break
                }
                index += 1
            }
            guard index < line.count else { return nil }
            end = index + 1
            replacement = [open] + Array(marker.unicodeScalars) + [open]
        } else {
            while end < line.count && line[end] != ":" { end += 1 }
            while end > start && (line[end - 1] == " " || line[end - 1] == "\t") { end -= 1 }
            guard end > start else { return nil }
            replacement = Array(marker.unicodeScalars)
        }
        lines[row].replaceSubrange(start..<end, with: replacement)
        var result = String.UnicodeScalarView()
        for (index, line) in lines.enumerated() {
            if index > 0 { result.append("\n") }
            result.append(contentsOf: line)
        }
        return String(result)
    }

    /// `value` without the marked members; their paths (with the original key) go to `paths`.
    private static func removeMarkers(_ value: JSONValue, path: String, originals: [String],
                                      into paths: inout [String]) -> JSONValue {
        switch value {
        case .object(let members):
            var kept: [String: JSONValue] = [:]
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                if key.hasPrefix(duplicateMarker), let index = Int(key.dropFirst(duplicateMarker.count)), originals.indices.contains(index) {
                    let field = path.isEmpty ? originals[index] : "\(path).\(originals[index])"
                    if !paths.contains(field) { paths.append(field) }
                    continue
                }
                kept[key] = removeMarkers(member, path: path.isEmpty ? key : "\(path).\(key)", originals: originals, into: &paths)
            }
            return .object(kept)
        case .array(let items):
            return .array(items.enumerated().map { removeMarkers($1, path: "\(path)[\($0)]", originals: originals, into: &paths) })
        case .null, .bool, .int, .double, .string:
            return value
        }
    }
}
