// A blocking HTTP/1.1 client for the CLI (talking to the admin API) and the readiness prober: one request per
// connection, bounded by a timeout, IPv4/IPv6 literals only.
import Glibc

public struct BlockingClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

public struct BlockingClient: Sendable {
    public let host: String
    public let port: UInt16
    /// Applies to connecting and to each read and write.
    public let timeoutMilliseconds: Int

    public init(host: String, port: UInt16, timeoutMilliseconds: Int = 10_000) {
        self.host = host
        self.port = port
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Sends one request (`Connection: close`) and reads the whole response.
    public func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws(BlockingClientError) -> BlockingResponse {
        let fd = try connect()
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nConnection: close\r\n"
        if !headers.contains(where: { $0.0.lowercased() == "host" }) {
            head += "Host: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\n"
        }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try write(fd, Array(head.utf8) + body)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { received += chunk[0..<n]; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw BlockingClientError(description: errno == EAGAIN ? "timed out waiting for \(host):\(port)" : "reading from \(host):\(port): \(String(cString: strerror(errno)))")
        }
        return try Self.parse(received)
    }

    private func connect() throws(BlockingClientError) -> Int32 {
        var storage = sockaddr_storage()
        let length: socklen_t
        let family: Int32
        if host.contains(":") {
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            let ok = withUnsafeMutableBytes(of: &storage) { raw -> Bool in
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = port.bigEndian
                return inet_pton(AF_INET6, host, &sin6.pointee.sin6_addr) == 1
            }
            guard ok else { throw BlockingClientError(description: "\(host) is not an IP address") }
        } else {
            family = AF_INET
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutableBytes(of: &storage) { raw -> Bool in
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = port.bigEndian
                return inet_pton(AF_INET, host, &sin.pointee.sin_addr) == 1
            }
            guard ok else { throw BlockingClientError(description: "\(host) is not an IP address") }
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BlockingClientError(description: "socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw BlockingClientError(description: "cannot connect to \(host):\(port): \(reason)")
        }
        return fd
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) throws(BlockingClientError) {
        guard BlockingSocket.write(fd, bytes) else {
            throw BlockingClientError(description: "writing to \(host):\(port): \(String(cString: strerror(errno)))")
        }
    }

    /// Splits a whole response (read to EOF) into status, headers and a de-chunked body.
    static func parse(_ bytes: [UInt8]) throws(BlockingClientError) -> BlockingResponse {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.dropLast(3).first(where: { Array(bytes[$0..<($0 + 4)]) == separator }) else {
            throw BlockingClientError(description: "the server closed the connection without a complete response")
        }
        let lines = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw BlockingClientError(description: "malformed status line: \(lines[0])")
        }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingWhitespace()))
        }
        var body = Array(bytes[(end + 4)...])
        if headers.contains(where: { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased().contains("chunked") }) {
            var decoded: [UInt8] = []
            var i = 0
            while let lineEnd = body[i...].indices.dropLast().first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                  let size = Int(String(decoding: body[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? "", radix: 16), size > 0,
                  lineEnd + 2 + size <= body.count {
                decoded += body[(lineEnd + 2)..<(lineEnd + 2 + size)]
                i = lineEnd + 2 + size + 2
                if i >= body.count { break }
            }
            body = decoded
        }
        return BlockingResponse(status: status, headers: headers, body: body)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
