// One parsed HTTP/1.1 request as the blocking server hands it to a handler (admin API, demo predictors).

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
}
