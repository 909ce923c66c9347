// Routing layer: an open-addressing hash table from lower-cased host bytes to a match index.

/// Host lookup without allocation: keys live in one byte array, slots hold entry numbers,
/// linear probing over a power-of-two table kept at most half full. `Dictionary<String, _>` is
/// avoided because it would need a String (an allocation) per request.
struct HostIndex: Sendable {
    private let keyBytes: [UInt8]
    /// Entry `i`'s key is `keyBytes[keyStarts[i]..<keyStarts[i + 1]]`.
    private let keyStarts: [Int]
    private let hashes: [UInt64]
    /// Entry number, or -1 for an empty slot.
    private let slots: [Int32]
    private let mask: Int

    /// `keys` must be lower case and distinct; entry `i` answers for `keys[i]`.
    init(keys: [[UInt8]]) {
        var bytes: [UInt8] = []
        var starts: [Int] = [0]
        var hashes: [UInt64] = []
        for key in keys {
            bytes += key
            starts.append(bytes.count)
            hashes.append(key.withUnsafeBytes { ASCII.hashLowercased($0) })
        }
        var capacity = 8
        while capacity < keys.count * 2 { capacity *= 2 }
        var slots = [Int32](repeating: -1, count: capacity)
        for (entry, hash) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: hash) & (capacity - 1)
            while slots[slot] >= 0 { slot = (slot + 1) & (capacity - 1) }
            slots[slot] = Int32(entry)
        }
        keyBytes = bytes
        keyStarts = starts
        self.hashes = hashes
        self.slots = slots
        mask = capacity - 1
    }

    /// The entry whose key equals `name` ignoring ASCII case.
    func find(_ name: UnsafeRawBufferPointer) -> Int? {
        let hash = ASCII.hashLowercased(name)
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = Int(slots[slot])
            if entry < 0 { return nil }
            if hashes[entry] == hash && keyEquals(entry, name) { return entry }
            slot = (slot + 1) & mask
        }
    }

    private func keyEquals(_ entry: Int, _ name: UnsafeRawBufferPointer) -> Bool {
        let start = keyStarts[entry]
        guard keyStarts[entry + 1] - start == name.count else { return false }
        for (offset, byte) in name.enumerated() where ASCII.lowercased(byte) != keyBytes[start + offset] {
            return false
        }
        return true
    }
}
