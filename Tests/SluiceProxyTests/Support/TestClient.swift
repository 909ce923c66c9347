// Test support: a blocking HTTP/1.1 client on loopback with bounded waits, independent of the gateway's parser.
import SluiceBlockingHTTP
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct TestResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    func headerLines(_ name: String) -> [String] { headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1) }
}

enum TestClientError: Error { case connect(Int32), closed, timeout, malformed(String) }

final class TestClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    /// Closed once, by `close()` or at deinit: a second close(2) of the number could close whatever the process
    /// (the gateway under test, in this same process) opened under it since.
    private var isOpen = true

    /// Connects to 127.0.0.1:port; every read waits at most `timeoutSeconds`.
    init(port: UInt16, timeoutSeconds: Int = 10) throws {
        fd = try connectLoopback(port: port)
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    init(fd: Int32) {
        self.fd = fd
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    /// Closes the connection now (a backend that hangs up); deinit then closes nothing.
    func close() {
        guard isOpen else { return }
        isOpen = false
        Glibc.close(fd)
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestClientError.closed }
            off += n
        }
    }

    /// Reads more bytes; false on EOF. Throws on timeout.
    @discardableResult
    func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { buffer.append(contentsOf: chunk[0..<n]); return true }
        if n == 0 { return false }
        if errno == EAGAIN || errno == EWOULDBLOCK { throw TestClientError.timeout }
        return false
    }

    /// True when the server has closed the connection (EOF with nothing buffered).
    func isClosedByPeer() throws -> Bool {
        if !buffer.isEmpty { return false }
        return try !fill()
    }

    func line() throws -> String {
        while true {
            if let i = buffer.firstIndex(of: 0x0A), i > 0, buffer[i - 1] == 0x0D {
                let s = String(decoding: buffer[0..<(i - 1)], as: UTF8.self)
                buffer.removeFirst(i + 1)
                return s
            }
            guard try fill() else { throw TestClientError.closed }
        }
    }

    func take(_ n: Int) throws -> [UInt8] {
        while buffer.count < n { guard try fill() else { throw TestClientError.closed } }
        let out = Array(buffer[0..<n])
        buffer.removeFirst(n)
        return out
    }

    /// Reads one response; `discardBody` counts a large body without keeping it.
    func readResponse(headRequest: Bool = false, bodySink: ((ArraySlice<UInt8>) -> Void)? = nil) throws -> TestResponse {
        var status = 0
        var headers: [(String, String)] = []
        repeat {
            let statusLine = try line()
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) else { throw TestClientError.malformed(statusLine) }
            status = code
            headers = []
            while true {
                let l = try line()
                if l.isEmpty { break }
                guard let colon = l.firstIndex(of: ":") else { throw TestClientError.malformed(l) }
                headers.append((String(l[..<colon]), l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
        } while status >= 100 && status < 200
        var response = TestResponse(status: status, headers: headers, body: [])
        func deliver(_ bytes: [UInt8]) {
            if let bodySink { bodySink(bytes[...]) } else { response.body += bytes }
        }
        if headRequest || status == 204 || status == 304 { return response }
        if let te = response.header("transfer-encoding"), te.lowercased().contains("chunked") {
            while true {
                let sizeLine = try line()
                guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else { throw TestClientError.malformed(sizeLine) }
                if size == 0 { while try !line().isEmpty {}; break }
                var left = size
                while left > 0 {
                    if buffer.isEmpty { guard try fill() else { throw TestClientError.closed } }
                    let n = min(left, buffer.count)
                    deliver(Array(buffer[0..<n]))
                    buffer.removeFirst(n)
                    left -= n
                }
                _ = try take(2)
            }
        } else if let cl = response.header("content-length"), let n = Int(cl) {
            var left = n
            while left > 0 {
                if buffer.isEmpty { guard try fill() else { throw TestClientError.closed } }
                let k = min(left, buffer.count)
                deliver(Array(buffer[0..<k]))
                buffer.removeFirst(k)
                left -= k
            }
        } else {
            while true {
                if !buffer.isEmpty { deliver(buffer); buffer.removeAll() }
                guard try fill() else { break }
            }
        }
        return response
    }

    /// One request on this connection.
    func request(_ method: String = "GET", _ path: String, host: String, headers: [(String, String)] = [], body: String? = nil) throws -> TestResponse {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { text += "\r\n" }
        try send(text)
        return try readResponse(headRequest: method == "HEAD")
    }
}

/// A loopback port where connections are refused (a socket bound there that never listens answers a SYN with RST),
/// kept reserved until `close`: a port freed by stopping a listener could be handed to the next `bind(port 0)` —
/// the gateway's own listener among them, which then proxied the "dead" pod's requests to itself in a loop.
final class RefusingPort {
    let fd: Int32
    let port: UInt16

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
    }

    func close() { Glibc.close(fd) }
}

/// A raw loopback listener for backends that must stream or misbehave in ways BlockingServer will not.
final class RawBackend: @unchecked Sendable {  // fields are set before the thread starts and read-only after
    let fd: Int32
    let port: UInt16

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 128)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        self.port = UInt16(bigEndian: addr.sin_port)
    }

    private let acceptorDone = DispatchSemaphore(value: 0)
    private var started = false

    /// Accepts connections on a thread and runs `serve` for each on its own thread.
    func start(_ serve: @escaping @Sendable (TestClient) -> Void) {
        let listener = fd
        let done = acceptorDone
        started = true
        Thread.detachNewThread {
            defer { done.signal() }
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                let conn = TestClient(adopting: c)
                Thread.detachNewThread { serve(conn) }
            }
        }
    }

    /// Stops accepting. The descriptor is closed only after the accept thread has left accept(2): closing first
    /// could let it accept on a later test's listener that reused the number.
    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        if started { acceptorDone.wait() }
        close(fd)
    }
}

extension TestClient: @unchecked Sendable {}  // each instance is used by one thread at a time in the tests

extension TestClient {
    convenience init(adopting fd: Int32) { self.init(fd: fd) }

    /// Reads one request head (lines up to the blank line) and returns its lines.
    func readRequestHead() throws -> [String] {
        var lines: [String] = []
        while true {
            let l = try line()
            if l.isEmpty { return lines }
            lines.append(l)
        }
    }
}

/// A blocking TCP connection to 127.0.0.1:port (the test clients' sockets, or a raw one a test must reset).
func connectLoopback(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 { let e = errno; Glibc.close(fd); throw TestClientError.connect(e) }
    return fd
}

/// Closes with SO_LINGER 0: the peer gets a RST instead of a FIN.
func resetAndClose(_ fd: Int32) {
    var reset = linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
    Glibc.close(fd)
}
