// Routing layer: renders the host forms of a service from `HostRules`.

/// The validated host rules, ready to render names. Hosts are produced lower case.
struct HostTemplate {
    private enum Piece {
        case literal(String)
        case name
        case namespace
        case domain
    }

    private let pieces: [Piece]
    private let domain: String
    private let componentSuffix: String

    init(rules: HostRules) throws(RouteTableError) {
        domain = rules.domain.lowercased()
        componentSuffix = rules.componentSuffix.lowercased()
        guard DNSName.isSubdomain1123(domain) else {
            throw RouteTableError(path: "rules.domain", reason: "\(quoted(rules.domain)) is not a DNS subdomain (dot-separated DNS-1123 labels)")
        }
        let isSuffixSafe = rules.componentSuffix.utf8.allSatisfy {
            DNSName.isLowerLetter($0) || DNSName.isDigit($0) || $0 == UInt8(ascii: "-")
        }
        guard isSuffixSafe else {
            throw RouteTableError(path: "rules.componentSuffix", reason: "\(quoted(rules.componentSuffix)) may hold only lower-case letters, digits and '-'")
        }
        pieces = try Self.parse(rules.serviceHostTemplate)
    }

    /// `{component}` forms, the cluster-local ones included, then the template's top-level form.
    func defaultHosts(name: String, namespace: String) -> [String] {
        let component = name + componentSuffix
        return [render(name: name, namespace: namespace)]
            + [
                "\(component).\(namespace).\(domain)",
                "\(component).\(namespace)",
                "\(component).\(namespace).svc",
                "\(component).\(namespace).svc.cluster.local",
                "\(name).\(namespace).svc.cluster.local",
            ]
    }

    /// Knative's tag template `{tag}-{name}` applied to the component, external and cluster-local.
    func tagHosts(tag: String, name: String, namespace: String) -> [String] {
        let label = "\(tag.lowercased())-\(name)\(componentSuffix)"
        return [
            "\(label).\(namespace).\(domain)",
            "\(label).\(namespace)",
            "\(label).\(namespace).svc",
            "\(label).\(namespace).svc.cluster.local",
        ]
    }

    private func render(name: String, namespace: String) -> String {
        var host = ""
        for piece in pieces {
            switch piece {
            case .literal(let text): host += text.lowercased()
            case .name: host += name
            case .namespace: host += namespace
            case .domain: host += domain
            }
        }
        return host
    }

    private static func parse(_ template: String) throws(RouteTableError) -> [Piece] {
        var pieces: [Piece] = []
        var rest = Substring(template)
        var hasName = false
        var hasNamespace = false
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { pieces.append(.literal(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw RouteTableError(path: "rules.serviceHostTemplate", reason: "unclosed '{' in \(quoted(template))")
            }
            let placeholder = rest[rest.index(after: open)..<close]
            switch placeholder {
            case "name": pieces.append(.name); hasName = true
            case "namespace": pieces.append(.namespace); hasNamespace = true
            case "domain": pieces.append(.domain)
            default:
                throw RouteTableError(path: "rules.serviceHostTemplate", reason: "unknown placeholder {\(placeholder)}, expected {name}, {namespace} or {domain}")
            }
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { pieces.append(.literal(String(rest))) }
        // Without both, two services would render the same host.
        guard hasName, hasNamespace else {
            throw RouteTableError(path: "rules.serviceHostTemplate", reason: "\(quoted(template)) must contain {name} and {namespace}")
        }
        return pieces
    }
}
