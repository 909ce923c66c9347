// Control layer: the value syntaxes of the config file: durations, byte sizes and IP:port addresses.
import Foundation
import SluiceProxy
import SluiceRouting

extension ConfigNode {
    /// `250ms`, `10s`, `5m`, `1h`, or `0`, in milliseconds. Bare numbers other than 0 are refused:
    /// `timeout: 30` could mean seconds or milliseconds, and guessing wrong is silent.
    func milliseconds() throws(ConfigError) -> Int {
        let text = try string()
        if text == "0" { return 0 }
        let units: [(suffix: String, factor: Int)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
        for unit in units where text.hasSuffix(unit.suffix) {
            let digits = text.dropLast(unit.suffix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let count = Int(digits) else { break }
            let (value, overflow) = count.multipliedReportingOverflow(by: unit.factor)
            guard !overflow, value <= Int(Int32.max) else { throw error("\(text) is too long") }
            return value
        }
        throw error("expected a duration like 250ms, 10s or 5m, got \(found)")
    }

    /// A byte count: a plain integer or one with a `KiB`, `MiB` or `GiB` suffix.
    func bytes() throws(ConfigError) -> Int {
        let text = try string()
        let units: [(suffix: String, factor: Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("", 1)]
        for unit in units where text.hasSuffix(unit.suffix) {
            let digits = text.dropLast(unit.suffix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let count = Int(digits) else { break }
            let (value, overflow) = count.multipliedReportingOverflow(by: unit.factor)
            guard !overflow else { throw error("\(text) is too large") }
            return value
        }
        throw error("expected a size like 65536, 60KiB or 1GiB, got \(found)")
    }

    /// `127.0.0.1:8080` or `[::1]:8080`: an IP literal (no names: nothing resolves DNS) and a port
    /// in 1...65535. The host comes back in canonical form so equal addresses compare equal.
    func address() throws(ConfigError) -> SocketAddressSpec {
        try address(try string())
    }

    /// An upstream endpoint: `IP:port` (HTTP/1.1), `h2c://IP:port` (HTTP/2 cleartext, for gRPC), `https://IP:port`
    /// (HTTP/1.1 over TLS, verified per `upstreamTLS`) or `h2://IP:port` (HTTP/2 over TLS, ALPN h2, for gRPC).
    func endpoint() throws(ConfigError) -> Endpoint {
        let text = try string()
        guard let (upstreamProtocol, rest) = Endpoint.splitScheme(text) else {
            throw error("expected an endpoint like 127.0.0.1:8080, h2c://127.0.0.1:8081, https://127.0.0.1:8443 or h2://127.0.0.1:8443, got \(found)")
        }
        let address = try address(String(rest))
        return Endpoint(host: address.host, port: address.port, protocol: upstreamProtocol)
    }

    func address(_ text: String) throws(ConfigError) -> SocketAddressSpec {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw error("expected an IP literal and port like 127.0.0.1:8080 or [::1]:8080, got \(found)")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw error("expected an IP literal and port like 127.0.0.1:8080 or [::1]:8080, got \(found)")
            }
            host = parts[0]
            port = parts[1]
        }
        guard let canonical = Self.canonicalIP(String(host), isV6: text.hasPrefix("[")) else {
            throw error("\(host) is not an IP\(text.hasPrefix("[") ? "v6" : "v4") literal (host names are not resolved)")
        }
        guard port.allSatisfy(\.isASCIIDigit), let number = Int(port), (1...65535).contains(number) else {
            throw error("port \(port.isEmpty ? "\"\"" : String(port)) is outside 1...65535")
        }
        return SocketAddressSpec(host: canonical, port: UInt16(number))
    }

    /// `inet_pton` then `inet_ntop`: validates and canonicalises (`0:0::1` becomes `::1`).
    private static func canonicalIP(_ host: String, isV6: Bool) -> String? {
        let family = isV6 ? AF_INET6 : AF_INET
        var storage = in6_addr()
        guard inet_pton(family, host, &storage) == 1 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, &storage, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
