// Routing layer: the Kubernetes name rules (DNS-1035 / DNS-1123) that service, revision and tag names obey.

/// Name syntax checks. They matter for routing: every name ends up inside a host name.
public enum DNSName {
    /// DNS-1035 label (Kubernetes Service names): `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
    public static func isLabel1035(_ name: String) -> Bool {
        guard let first = name.utf8.first, isLowerLetter(first) else { return false }
        return isLabel1123(name)
    }

    /// DNS-1123 label (Kubernetes namespaces): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
    public static func isLabel1123(_ name: String) -> Bool {
        let bytes = name.utf8
        guard let first = bytes.first, let last = bytes.last, bytes.count <= 63 else { return false }
        guard first != UInt8(ascii: "-"), last != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { isLowerLetter($0) || isDigit($0) || $0 == UInt8(ascii: "-") }
    }

    /// DNS-1123 subdomain (a domain suffix): dot-separated 1123 labels, at most 253 bytes.
    public static func isSubdomain1123(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isLabel1123(String($0)) }
    }

    static func isLowerLetter(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") }
    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

extension DNSName {
    static let label1035Rule = "(lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 bytes)"
    static let label1123Rule = "(lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 bytes)"
}
