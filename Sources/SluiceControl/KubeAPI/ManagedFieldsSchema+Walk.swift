// Control layer: structured-merge-diff's walks over an object with the schema's shapes: its field set, the
// comparison of two versions, the merge of an applied configuration, and the removal of a set of fields.

extension ManagedFieldsSchema {
    /// The fields an object sets (`TypedValue.ToFieldSet`, typed/tofieldset.go): every scalar, atomic object and
    /// atomic list, every keyed or set list item, an empty object or null, and each map key.
    static func fieldSet(of value: JSONValue) -> FieldSet {
        var set = FieldSet()
        collect(value, names: [], path: [], into: &set)
        return set
    }

    private static func collect(_ value: JSONValue, names: [String], path: [FieldPathElement], into set: inout FieldSet) {
        switch value {
        case .object(let members):
            let shape = objectShape(names)
            if shape == .atomic {
                set.insert(path)
                return
            }
            for (key, member) in members {
                let childPath = path + [.field(key)]
                collect(member, names: names + [key], path: childPath, into: &set)
                let isEmptyObject = member.objectValue?.isEmpty ?? false
                if member == .null || isEmptyObject || shape == .map { set.insert(childPath) }
            }
        case .array(let items):
            guard let elements = elements(of: items, names: names) else {
                set.insert(path)
                return
            }
            var seen: Set<FieldPathElement> = []
            var duplicated: Set<FieldPathElement> = []
            for element in elements where !seen.insert(element).inserted { duplicated.insert(element) }
            for (element, item) in zip(elements, items) {
                let itemPath = path + [element]
                set.insert(itemPath)
                // A duplicated item is owned as a whole (tofieldset.go's duplicates).
                if !duplicated.contains(element) { collect(item, names: names, path: itemPath, into: &set) }
            }
        case .null, .bool, .int, .double, .string:
            set.insert(path)
        }
    }

    /// What changed from `old` to `new` (`TypedValue.Compare`, typed/compare.go): a node only in `new` is added, one
    /// only in `old` removed, both for every node below it; a leaf (scalar, atomic, or empty on both sides) whose
    /// value differs is modified.
    struct Comparison {
        var added = FieldSet()
        var modified = FieldSet()
        var removed = FieldSet()
    }

    static func compare(_ old: JSONValue, _ new: JSONValue) -> Comparison {
        var comparison = Comparison()
        compare(old, new, names: [], path: [], into: &comparison)
        return comparison
    }

    private static func compare(_ old: JSONValue?, _ new: JSONValue?, names: [String], path: [FieldPathElement],
                                into comparison: inout Comparison) {
        guard old != nil || new != nil else { return }
        switch (old, new) {
        case (.object(let left)?, .object(let right)?) where objectShape(names) != .atomic && !(left.isEmpty && right.isEmpty):
            for key in Set(left.keys).union(right.keys) {
                compare(left[key], right[key], names: names + [key], path: path + [.field(key)], into: &comparison)
            }
        case (.object(let members)?, nil) where objectShape(names) != .atomic && !members.isEmpty,
             (nil, .object(let members)?) where objectShape(names) != .atomic && !members.isEmpty:
            for (key, member) in members {
                let (left, right) = old == nil ? (nil, member) : (member, nil)
                compare(left, right, names: names + [key], path: path + [.field(key)], into: &comparison)
            }
        case (.array(let left)?, .array(let right)?) where !(left.isEmpty && right.isEmpty):
            guard let leftElements = elements(of: left, names: names),
                  let rightElements = elements(of: right, names: names) else { return leaf(old, new, path, &comparison) }
            let leftItems = Dictionary(zip(leftElements, left), uniquingKeysWith: { first, _ in first })
            let rightItems = Dictionary(zip(rightElements, right), uniquingKeysWith: { first, _ in first })
            for element in Set(leftElements).union(rightElements) {
                compare(leftItems[element], rightItems[element], names: names, path: path + [element], into: &comparison)
            }
        case (.array(let items)?, nil) where !items.isEmpty, (nil, .array(let items)?) where !items.isEmpty:
            guard let elements = elements(of: items, names: names) else { return leaf(old, new, path, &comparison) }
            for (element, item) in zip(elements, items) {
                let (left, right) = old == nil ? (nil, item) : (item, nil)
                compare(left, right, names: names, path: path + [element], into: &comparison)
            }
        default:
            return leaf(old, new, path, &comparison)
        }
        // A node walked into: present on one side only is added or removed itself too (compare.go's `!inLeaf`).
        if old == nil { comparison.added.insert(path) } else if new == nil { comparison.removed.insert(path) }
    }

    private static func leaf(_ old: JSONValue?, _ new: JSONValue?, _ path: [FieldPathElement], _ comparison: inout Comparison) {
        if old == nil {
            comparison.added.insert(path)
        } else if new == nil {
            comparison.removed.insert(path)
        } else if old != new {
            comparison.modified.insert(path)
        }
    }

    /// `live` with `applied` merged in (`TypedValue.Merge`, typed/merge.go): objects member by member, keyed and set
    /// lists item by item, anything else (scalars, atomic objects and lists) replaced by the applied value.
    static func merge(_ live: JSONValue?, _ applied: JSONValue) -> JSONValue {
        merge(live, applied, names: [])
    }

    private static func merge(_ live: JSONValue?, _ applied: JSONValue, names: [String]) -> JSONValue {
        switch (live, applied) {
        case (.object(var result)?, .object(let members)) where objectShape(names) != .atomic:
            for (key, member) in members { result[key] = merge(result[key], member, names: names + [key]) }
            return .object(result)
        case (.array(let left)?, .array(let right)):
            guard let leftElements = elements(of: left, names: names),
                  let rightElements = elements(of: right, names: names) else { return applied }
            return .array(mergeItems(left, leftElements, right, rightElements, names: names))
        default:
            return applied
        }
    }

    /// merge.go's list order: items both sides share come in the applied order, live-only items stay where they were
    /// relative to them, applied-only items come where the applied list has them.
    private static func mergeItems(_ left: [JSONValue], _ leftElements: [FieldPathElement], _ right: [JSONValue],
                                   _ rightElements: [FieldPathElement], names: [String]) -> [JSONValue] {
        let leftItems = Dictionary(zip(leftElements, left), uniquingKeysWith: { first, _ in first })
        let rightItems = Dictionary(zip(rightElements, right), uniquingKeysWith: { first, _ in first })
        var shared = rightElements.filter { leftItems[$0] != nil }[...]
        var nextShared = shared.popFirst()
        var merged: Set<FieldPathElement> = []
        var out: [JSONValue] = []
        var l = 0, r = 0
        while l < leftElements.count || r < rightElements.count {
            if l < leftElements.count && r < rightElements.count {
                let element = leftElements[l]
                if element == rightElements[r] {
                    merged.insert(element)
                    out.append(merge(leftItems[element], rightItems[element]!, names: names))
                    l += 1
                    r += 1
                    nextShared = shared.popFirst()
                    continue
                }
                if rightItems[element] != nil, let next = nextShared, next != element {
                    l += 1
                    continue
                }
            }
            if l < leftElements.count {
                let element = leftElements[l]
                if rightItems[element] == nil {
                    out.append(left[l])
                    l += 1
                    continue
                } else if merged.contains(element) {
                    l += 1
                }
            }
            if r < rightElements.count {
                let element = rightElements[r]
                merged.insert(element)
                out.append(merge(leftItems[element], rightItems[element]!, names: names))
                r += 1
                if nextShared == element { nextShared = shared.popFirst() }
            }
        }
        return out
    }

    /// `value` without the paths in `set` (`TypedValue.RemoveItems`, typed/remove.go). An object or list emptied by
    /// the removal goes too: the API server stores that null as absent (ObjectMeta's nil map, a CRD's pruned null).
    static func removing(_ set: FieldSet, from value: JSONValue) -> JSONValue {
        removing(set, from: value, names: []) ?? .object([:])
    }

    private static func removing(_ set: FieldSet, from value: JSONValue, names: [String]) -> JSONValue? {
        switch value {
        case .object(let members) where objectShape(names) != .atomic && !members.isEmpty:
            var out: [String: JSONValue] = [:]
            for (key, member) in members {
                let element = FieldPathElement.field(key)
                if set.members.contains(element) { continue }
                let below = set.below(element)
                if below.isEmpty {
                    out[key] = member
                } else if let kept = removing(below, from: member, names: names + [key]) {
                    out[key] = kept
                }
            }
            return out.isEmpty ? nil : .object(out)
        case .array(let items) where !items.isEmpty:
            guard let elements = elements(of: items, names: names) else { return value }
            var out: [JSONValue] = []
            for (element, item) in zip(elements, items) {
                if set.members.contains(element) { continue }
                let below = set.below(element)
                if below.isEmpty {
                    out.append(item)
                } else if let kept = removing(below, from: item, names: names) {
                    out.append(kept)
                }
            }
            return out.isEmpty ? nil : .array(out)
        default:
            return value
        }
    }

    /// `set` with every named field on the way to its paths a member too (`Set.EnsureNamedFieldsAreMembers`): so that
    /// pruning a struct nobody owns anything under removes the struct, while a map's own path stays unowned.
    static func ensuringNamedFields(_ set: FieldSet) -> FieldSet {
        ensuringNamedFields(set, names: [])
    }

    private static func ensuringNamedFields(_ set: FieldSet, names: [String]) -> FieldSet {
        var result = FieldSet(members: set.members)
        let isStruct = objectShape(names) == .fields
        for (element, child) in set.children {
            var childNames = names
            if case .field(let name) = element {
                if isStruct { result.members.insert(element) }
                childNames.append(name)
            }
            result.children[element] = ensuringNamedFields(child, names: childNames)
        }
        return result
    }
}
