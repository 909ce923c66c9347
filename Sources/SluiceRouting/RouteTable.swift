// Routing layer: the whole routing state of one configuration generation: services, hosts, endpoints.

/// Built once per configuration (off the hot path), then shared read-only by every worker and
/// swapped whole on reload. `match(host:)` is the only per-request entry point and does not allocate.
public final class RouteTable: Sendable {
    public let rules: HostRules
    public let services: [ServiceRoute]
    /// Every endpoint once, whichever revisions share it; `Revision.endpointIndices` point here.
    public let endpoints: [Endpoint]
    private let index: HostIndex
    /// `matches[i]` answers for host entry `i` of `index`.
    private let matches: [RouteMatch]

    /// Validates and builds. Errors name the field as `services[i]…` or `rules.…`.
    public init(services specs: [ServiceSpec], rules: HostRules) throws(RouteTableError) {
        let template = try HostTemplate(rules: rules)
        var endpoints: [Endpoint] = []
        var endpointIndex: [Endpoint: Int] = [:]
        var services: [ServiceRoute] = []
        var hostKeys: [[UInt8]] = []
        var matches: [RouteMatch] = []
        /// Host → (service index, path that registered it), to report collisions with both paths.
        var owners: [String: (service: Int, path: String)] = [:]
        var serviceIndexByName: [String: Int] = [:]

        for (serviceIndex, spec) in specs.enumerated() {
            let path = "services[\(serviceIndex)]"
            try Self.validateNames(of: spec, path: path, rules: rules)
            let qualifiedName = "\(spec.name).\(spec.namespace)"
            if let first = serviceIndexByName[qualifiedName] {
                throw RouteTableError(path: path, reason: "service \(spec.name) in namespace \(spec.namespace) is already defined by services[\(first)]")
            }
            serviceIndexByName[qualifiedName] = serviceIndex

            var revisions: [Revision] = []
            var revisionIndexByName: [String: Int] = [:]
            for (revisionIndex, revisionSpec) in spec.revisions.enumerated() {
                let revisionPath = "\(path).revisions[\(revisionIndex)]"
                guard DNSName.isLabel1035(revisionSpec.name) else {
                    throw RouteTableError(path: revisionPath, reason: "\(quoted(revisionSpec.name)) is not a DNS-1035 label \(DNSName.label1035Rule)")
                }
                guard revisionIndexByName[revisionSpec.name] == nil else {
                    throw RouteTableError(path: revisionPath, reason: "duplicate revision \(revisionSpec.name)")
                }
                revisionIndexByName[revisionSpec.name] = revisionIndex
                var indices: [Int] = []
                var grpcIndices: [Int] = []
                for (endpointNumber, endpoint) in revisionSpec.endpoints.enumerated() {
                    let endpointPath = "\(revisionPath).endpoints[\(endpointNumber)]"
                    guard endpoint.port != 0, !endpoint.host.isEmpty else {
                        throw RouteTableError(path: endpointPath, reason: "\(endpoint) needs a host and a port in 1...65535")
                    }
                    let shared = endpointIndex[endpoint] ?? {
                        endpoints.append(endpoint)
                        endpointIndex[endpoint] = endpoints.count - 1
                        return endpoints.count - 1
                    }()
                    guard !indices.contains(shared) && !grpcIndices.contains(shared) else {
                        throw RouteTableError(path: endpointPath, reason: "duplicate endpoint \(endpoint)")
                    }
                    if endpoint.isHTTP2 { grpcIndices.append(shared) } else { indices.append(shared) }
                }
                revisions.append(Revision(name: revisionSpec.name, serviceName: spec.name,
                                          namespace: spec.namespace, endpointIndices: indices,
                                          grpcEndpointIndices: grpcIndices, responseTimeoutMs: revisionSpec.responseTimeoutMs,
                                          containerConcurrency: revisionSpec.containerConcurrency))
            }

            var revisionIndexOfTarget: [Int] = []
            var tags: [TagRoute] = []
            var tagTargets: [Int] = []
            var total = 0
            for (targetIndex, target) in spec.traffic.enumerated() {
                let targetPath = "\(path).traffic[\(targetIndex)]"
                guard let revisionIndex = revisionIndexByName[target.revisionName] else {
                    throw RouteTableError(path: "\(targetPath).revisionName", reason: "unknown revision \(target.revisionName), not in \(path).revisions")
                }
                guard (0...100).contains(target.percent) else {
                    throw RouteTableError(path: "\(targetPath).percent", reason: "\(target.percent) is outside 0...100")
                }
                total += target.percent
                revisionIndexOfTarget.append(revisionIndex)
                guard let tag = target.tag else { continue }
                guard DNSName.isLabel1123(tag) else {
                    throw RouteTableError(path: "\(targetPath).tag", reason: "\(quoted(tag)) is not a DNS-1123 label \(DNSName.label1123Rule)")
                }
                if let other = tags.firstIndex(where: { $0.tag == tag }) {
                    throw RouteTableError(path: "\(targetPath).tag", reason: "duplicate tag \(tag), also on \(path).traffic[\(tagTargets[other])]")
                }
                tags.append(TagRoute(tag: tag, revisionIndex: revisionIndex))
                tagTargets.append(targetIndex)
            }
            guard total == 100 else {
                throw RouteTableError(path: "\(path).traffic", reason: "percents add up to \(total), must be 100")
            }

            // Hosts: the default forms route by the split, tag forms straight to the tag's revision.
            var candidates: [(host: String, tag: Int?, path: String)] = []
            for host in template.defaultHosts(name: spec.name, namespace: spec.namespace) {
                candidates.append((host, nil, path))
            }
            // Tag hosts only when the service opts in, as KServe does; tags still serve header routing.
            if spec.tagRouting {
                for (tagNumber, tag) in tags.enumerated() {
                    let tagPath = "\(path).traffic[\(tagTargets[tagNumber])].tag"
                    let label = "\(tag.tag)-\(spec.name)\(rules.componentSuffix)"
                    guard label.utf8.count <= 63 else {
                        throw RouteTableError(path: tagPath, reason: "tag host label \(label) is longer than 63 bytes")
                    }
                    for host in template.tagHosts(tag: tag.tag, name: spec.name, namespace: spec.namespace) {
                        candidates.append((host, tagNumber, tagPath))
                    }
                }
            }
            var hosts: [String] = []
            var hostTags: [Int?] = []
            for candidate in candidates {
                if let owner = owners[candidate.host] {
                    // The same host twice in one service for the same target (e.g. a template that
                    // renders a cluster-local form) is harmless; anything else is ambiguous.
                    if owner.service == serviceIndex, let existing = hosts.firstIndex(of: candidate.host),
                       hostTags[existing] == candidate.tag {
                        continue
                    }
                    throw RouteTableError(path: candidate.path, reason: "host \(candidate.host) is already a host of \(owner.path)")
                }
                owners[candidate.host] = (serviceIndex, candidate.path)
                hosts.append(candidate.host)
                hostTags.append(candidate.tag)
            }

            let mirror = try spec.mirror.map { (m) throws(RouteTableError) in try MirrorRoute.build(m, revisionIndexByName: revisionIndexByName, path: path) }
            let service = ServiceRoute(name: spec.name, namespace: spec.namespace, revisions: revisions,
                                       tags: tags, traffic: spec.traffic,
                                       revisionIndexOfTarget: revisionIndexOfTarget, hosts: hosts, retries: spec.retries,
                                       stickyKey: spec.stickyKey, mirror: mirror)
            services.append(service)
            for (host, tag) in zip(hosts, hostTags) {
                hostKeys.append(Array(host.utf8))
                matches.append(RouteMatch(service: service, tag: tag.map { tags[$0] }))
            }
        }

        self.rules = rules
        self.services = services
        self.endpoints = endpoints
        self.matches = matches
        index = HostIndex(keys: hostKeys)
    }

    /// Routes a raw `Host` header value (or `:authority`): ASCII case is ignored, a `:port` is
    /// stripped and one trailing dot (an absolute FQDN) ignored. IP-literal hosts never match.
    /// Allocation-free.
    public func match(host raw: UnsafeRawBufferPointer) -> RouteMatch? {
        let name = Self.hostName(in: raw)
        guard !name.isEmpty, let entry = index.find(name) else { return nil }
        return matches[entry]
    }

    /// Convenience over `match(host:)` for config-time callers and tests.
    public func match(host: String) -> RouteMatch? {
        var host = host
        return host.withUTF8 { match(host: UnsafeRawBufferPointer($0)) }
    }

    /// Every host form registered for `service`: default forms first, then tag hosts.
    public func hosts(of service: ServiceRoute) -> [String] {
        service.hosts
    }

    /// The name part of a Host value: without optional whitespace, port and trailing dot.
    static func hostName(in raw: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = raw.count
        while start < end, raw[start] == UInt8(ascii: " ") || raw[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, raw[end - 1] == UInt8(ascii: " ") || raw[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        // `[v6]:port` is an IP literal (RFC 3986 §3.2.2): return it whole, it matches no route.
        if start < end, raw[start] != UInt8(ascii: "[") {
            var cursor = start
            while cursor < end, raw[cursor] != UInt8(ascii: ":") { cursor += 1 }
            end = cursor
        }
        if end > start, raw[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: raw[start..<end])
    }

    private static func validateNames(of spec: ServiceSpec, path: String, rules: HostRules) throws(RouteTableError) {
        guard DNSName.isLabel1035(spec.name) else {
            throw RouteTableError(path: "\(path).name", reason: "\(quoted(spec.name)) is not a DNS-1035 label \(DNSName.label1035Rule)")
        }
        guard DNSName.isLabel1123(spec.namespace) else {
            throw RouteTableError(path: "\(path).namespace", reason: "\(quoted(spec.namespace)) is not a DNS-1123 label \(DNSName.label1123Rule)")
        }
        let component = spec.name + rules.componentSuffix
        guard component.utf8.count <= 63 else {
            throw RouteTableError(path: "\(path).name", reason: "component name \(component) is longer than 63 bytes")
        }
    }
}

/// A name in double quotes, so empty or odd names stay visible in messages.
func quoted(_ name: String) -> String { "\"\(name)\"" }
