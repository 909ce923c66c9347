// Control layer: the `host:port,host:port` lists of the endpoints annotation and of the state file.
import Foundation
import SluiceRouting

/// Parses endpoint lists. Hosts must be IP literals: the data plane does no DNS at run time.
enum EndpointList {
    /// `127.0.0.1:9001, [::1]:9002` → endpoints, in order; nil with the reason when any entry is wrong.
    static func parse(_ text: String) -> Result<[Endpoint], EndpointListError> {
        var endpoints: [Endpoint] = []
        for raw in text.split(separator: ",") {
            let entry = raw.trimmingCharacters(in: .whitespaces)
            guard let endpoint = parseOne(entry) else {
                return .failure(EndpointListError(entry: entry))
            }
            guard !endpoints.contains(endpoint) else { continue }
            endpoints.append(endpoint)
        }
        guard !endpoints.isEmpty else { return .failure(EndpointListError(entry: text)) }
        return .success(endpoints)
    }

    static func parseOne(_ text: String) -> Endpoint? {
        guard let (upstreamProtocol, rest) = Endpoint.splitScheme(text) else { return nil }
        let entry = String(rest)
        let host: Substring
        let port: Substring
        if entry.hasPrefix("[") {
            // RFC 3986 §3.2.2: an IPv6 literal is bracketed when a port follows.
            guard let close = entry.firstIndex(of: "]"), entry[entry.index(after: close)...].hasPrefix(":") else { return nil }
            host = entry[entry.index(after: entry.startIndex)..<close]
            port = entry[entry.index(close, offsetBy: 2)...]
            guard isIPv6(String(host)) else { return nil }
        } else {
            guard let colon = entry.lastIndex(of: ":") else { return nil }
            host = entry[..<colon]
            port = entry[entry.index(after: colon)...]
            guard isIPv4(String(host)) else { return nil }
        }
        guard let number = UInt16(port), number != 0 else { return nil }
        return Endpoint(host: String(host), port: number, protocol: upstreamProtocol)
    }

    private static func isIPv4(_ host: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, host, &address) == 1
    }

    private static func isIPv6(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, host, &address) == 1
    }
}

/// The entry of an endpoint list that is not `IP:port`.
struct EndpointListError: Error {
    var entry: String
}
