// One parsed HTTP/1.1 request as the blocking server hands it to a handler (admin API, demo predictors).

import Foundation

public struct BlockingRequest: Sendable {
    public var method: String
    /// The request-target as sent, origin-form in practice (`/v1/models/x?y=z`).
    public var target: String
    /// In arrival order, names as sent; duplicates kept because a proxy test may care about them.
    public var headers: [(name: String, value: String)]
    /// De-chunked when the request came with `Transfer-Encoding: chunked`.
    public var body: [UInt8]

    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// The first value of the named field; field names are case-insensitive (RFC 9110 §5.1).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The target without its query, which is what routes match on.
    public var path: String {
        target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
    }

    /// The query's `name=value` pairs, percent-decoded (`+` is a space), in order; a name without `=` has value "".
    public var queryItems: [(name: String, value: String)] {
        guard let q = target.firstIndex(of: "?") else { return [] }
        return target[target.index(after: q)...].split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                let spaced = s.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// The first value of a query parameter, nil when absent.
    public func query(_ name: String) -> String? {
        queryItems.first { $0.name == name }?.value
    }
}
