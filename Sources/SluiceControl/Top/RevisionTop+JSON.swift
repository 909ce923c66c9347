// Control layer: `sluice top`'s rows as the admin API sends them and the CLI reads them back.
import Foundation

extension RevisionTopRow {
    public var json: JSONValue {
        func number(_ value: Double?) -> JSONValue { value.map(JSONValue.double) ?? .null }
        return .object([
            "namespace": .string(namespace),
            "service": .string(service),
            "revision": .string(revision),
            "share": number(share),
            "requestsPerSecond": .double(requestsPerSecond),
            "successRate": number(successRate),
            "p50Seconds": number(p50),
            "p99Seconds": number(p99),
            "requests": .int(Int(clamping: requests)),
            "windowSeconds": .double(windowSeconds),
        ])
    }

    public init?(json: JSONValue) {
        guard let namespace = json["namespace"]?.stringValue, let service = json["service"]?.stringValue,
              let revision = json["revision"]?.stringValue else { return nil }
        func number(_ key: String) -> Double? {
            switch json[key] {
            case .double(let d)?: d
            case .int(let i)?: Double(i)
            default: nil
            }
        }
        self.init(namespace: namespace, service: service, revision: revision, share: number("share"),
                  requestsPerSecond: number("requestsPerSecond") ?? 0, successRate: number("successRate"),
                  p50: number("p50Seconds"), p99: number("p99Seconds"), requests: UInt64(json["requests"]?.intValue ?? 0),
                  windowSeconds: number("windowSeconds") ?? 0)
    }
}
