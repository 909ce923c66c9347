// Control layer: one connection to one etcd endpoint (plain TCP or TLS over a blocking socket) and the HTTP/1.1
// framing the gateway needs: a POST out, then a response head and its body, whole or chunk by chunk.
import Foundation
import SluiceBlockingHTTP
import Glibc
import Synchronization
import SluiceTLS

/// One `http://host:port` or `https://host:port` from the settings.
struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    let isTLS: Bool
    let host: String
    let port: UInt16
    let text: String
    var description: String { text }

    init(parsing text: String) throws(EtcdError) {
        self.text = text
        let rest: Substring
        if text.hasPrefix("http://") {
            isTLS = false
            rest = text.dropFirst(7)
        } else if text.hasPrefix("https://") {
            isTLS = true
            rest = text.dropFirst(8)
        } else {
            throw EtcdError(.failed(status: 0), "etcd endpoint \(text): must start with http:// or https://")
        }
        let authority = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let hostPart: Substring
        let portPart: Substring
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            portPart = authority[close...].drop { $0 == "]" || $0 == ":" }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
            portPart = ""
        }
        guard !hostPart.isEmpty else { throw EtcdError(.failed(status: 0), "etcd endpoint \(text): no host") }
        if portPart.isEmpty {
            port = isTLS ? 443 : 2379
        } else {
            guard let value = UInt16(portPart), value > 0 else { throw EtcdError(.failed(status: 0), "etcd endpoint \(text): bad port") }
            port = value
        }
        host = String(hostPart)
    }
}

/// Why a connection failed; `isTransport` failures move the client to the next endpoint.
struct EtcdTransportError: Error, CustomStringConvertible {
    let description: String
}

/// A response head: status and the headers that decide the framing.
struct EtcdResponseHead {
    let status: Int
    let isChunked: Bool
    let contentLength: Int?
}

/// One TCP (or TLS) connection. Reads and writes come from one thread; `shutdown()` may come from any other (a
/// watch's cancel) and unblocks a read, which then fails.
final class EtcdConnection: @unchecked Sendable {  // fd and TLS session: one reading thread; shutdown/close under `state`
    fileprivate let state: Mutex<Int32>
    private var tls: BlockingTLSClientSession?
    private let endpoint: EtcdEndpoint
    private var buffered: [UInt8] = []
    private var bufferedStart = 0

    /// Connects within `timeoutMilliseconds`; `readTimeoutMilliseconds` bounds each later read and write (0: none).
    init(endpoint: EtcdEndpoint, tlsContext: TLSClientContext?, timeoutMilliseconds: Int, readTimeoutMilliseconds: Int) throws(EtcdTransportError) {
        self.endpoint = endpoint
        let fd = try Self.connect(endpoint, timeoutMilliseconds: timeoutMilliseconds)
        self.state = Mutex(fd)
        // A TLS handshake is bounded by the connect timeout; afterwards each read by the read timeout.
        Self.setTimeouts(fd, milliseconds: timeoutMilliseconds)
        if endpoint.isTLS {
            guard let tlsContext else {
                Glibc.close(fd)
                throw EtcdTransportError(description: "\(endpoint): https without a TLS context")
            }
            do {
                tls = try BlockingTLSClientSession(fd: fd, context: tlsContext, serverName: endpoint.host)
            } catch {
                Glibc.close(fd)
                throw EtcdTransportError(description: "\(endpoint): TLS: \(error.description)")
            }
        }
        Self.setTimeouts(fd, milliseconds: readTimeoutMilliseconds)
    }

    deinit { close() }

    /// Unblocks a read or write in progress on another thread (it fails); the fd stays open until `close()`.
    func shutdown() {
        state.withLock { fd in
            if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func close() {
        tls?.close()
        tls = nil
        state.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    private var fd: Int32 { state.withLock { $0 } }

    func write(_ bytes: [UInt8]) throws(EtcdTransportError) {
        if let tls {
            guard tls.write(bytes) else { throw EtcdTransportError(description: "\(endpoint): TLS write failed") }
            return
        }
        guard BlockingSocket.write(fd, bytes) else {
            throw EtcdTransportError(description: "\(endpoint): writing: \(String(cString: strerror(errno)))")
        }
    }

    /// Sends one POST with a JSON body; keep-alive is not used (each unary call is one connection), so the
    /// server may close after the response.
    func sendPost(path: String, body: [UInt8], token: String?) throws(EtcdTransportError) {
        let hostHeader = endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)"
        var head = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\nContent-Type: application/json\r\n"
        if let token { head += "Authorization: \(token)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        try write(Array(head.utf8) + body)
    }

    /// More bytes into the buffer; false at EOF.
    private func fill() throws(EtcdTransportError) -> Bool {
        if bufferedStart > 0 && bufferedStart == buffered.count {
            buffered.removeAll(keepingCapacity: true)
            bufferedStart = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count: Int
            if let tls {
                guard let n = chunk.withUnsafeMutableBytes({ tls.read(into: $0) }) else {
                    throw EtcdTransportError(description: "\(endpoint): TLS read failed (timed out or reset)")
                }
                count = n
            } else {
                let fd = self.fd
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw EtcdTransportError(description: errno == EAGAIN ? "\(endpoint): timed out" : "\(endpoint): reading: \(String(cString: strerror(errno)))")
                }
                count = n
            }
            if count == 0 { return false }
            buffered += chunk[0..<count]
            return true
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    private func readLine() throws(EtcdTransportError) -> [UInt8] {
        // Relative to bufferedStart: fill() may move the unread bytes to the front of the buffer.
        var searched = 0
        while true {
            var i = bufferedStart + searched
            while i + 1 < buffered.count {
                if buffered[i] == 13 && buffered[i + 1] == 10 {
                    let line = Array(buffered[bufferedStart..<i])
                    bufferedStart = i + 2
                    return line
                }
                i += 1
            }
            searched = max(0, buffered.count - 1 - bufferedStart)
            guard try fill() else { throw EtcdTransportError(description: "\(endpoint): the connection closed mid-response") }
            if buffered.count - bufferedStart > 64 * 1024 { throw EtcdTransportError(description: "\(endpoint): response line too long") }
        }
    }

    private func readExactly(_ count: Int) throws(EtcdTransportError) -> [UInt8] {
        while buffered.count - bufferedStart < count {
            guard try fill() else { throw EtcdTransportError(description: "\(endpoint): the connection closed mid-body") }
        }
        let bytes = Array(buffered[bufferedStart..<(bufferedStart + count)])
        bufferedStart += count
        return bytes
    }

    func readHead() throws(EtcdTransportError) -> EtcdResponseHead {
        let statusLine = String(decoding: try readLine(), as: UTF8.self)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw EtcdTransportError(description: "\(endpoint): not an HTTP response: \(statusLine.prefix(80))")
        }
        var isChunked = false
        var contentLength: Int?
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            let text = String(decoding: line, as: UTF8.self)
            guard let colon = text.firstIndex(of: ":") else { continue }
            let name = text[..<colon].lowercased()
            let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "transfer-encoding" && value.lowercased().contains("chunked") { isChunked = true }
            if name == "content-length" { contentLength = Int(value) }
        }
        return EtcdResponseHead(status: status, isChunked: isChunked, contentLength: contentLength)
    }

    /// The next chunk of a chunked body (RFC 9112 §7.1), nil after the last one (trailers skipped).
    func readChunk() throws(EtcdTransportError) -> [UInt8]? {
        let sizeLine = String(decoding: try readLine(), as: UTF8.self)
        let sizeText = sizeLine.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let size = Int(sizeText, radix: 16), size >= 0 else {
            throw EtcdTransportError(description: "\(endpoint): bad chunk size \(sizeLine.prefix(20))")
        }
        if size == 0 {
            // Trailers (the gateway sends Grpc-Trailer-*), up to the empty line.
            while try !readLine().isEmpty {}
            return nil
        }
        let data = try readExactly(size)
        guard try readLine().isEmpty else { throw EtcdTransportError(description: "\(endpoint): chunk without CRLF") }
        return data
    }

    /// The whole body after `head`.
    func readBody(_ head: EtcdResponseHead, limit: Int = 64 << 20) throws(EtcdTransportError) -> [UInt8] {
        if head.isChunked {
            var body: [UInt8] = []
            while let chunk = try readChunk() {
                body += chunk
                guard body.count <= limit else { throw EtcdTransportError(description: "\(endpoint): response over \(limit) bytes") }
            }
            return body
        }
        if let length = head.contentLength {
            guard length <= limit else { throw EtcdTransportError(description: "\(endpoint): response over \(limit) bytes") }
            return try readExactly(length)
        }
        while try fill() {
            guard buffered.count - bufferedStart <= limit else { throw EtcdTransportError(description: "\(endpoint): response over \(limit) bytes") }
        }
        let body = Array(buffered[bufferedStart...])
        bufferedStart = buffered.count
        return body
    }

    private static func setTimeouts(_ fd: Int32, milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A blocking socket connected within the timeout: the host is an IP literal or a name getaddrinfo resolves.
    private static func connect(_ endpoint: EtcdEndpoint, timeoutMilliseconds: Int) throws(EtcdTransportError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw EtcdTransportError(description: "\(endpoint): cannot resolve \(endpoint.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            // Non-blocking connect + poll: connect(2) itself has no timeout shorter than the kernel's SYN retries.
            var result = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result != 0 && errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&pfd, 1, Int32(clamping: timeoutMilliseconds))
                if ready == 1 {
                    var soError: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
                    result = soError == 0 ? 0 : -1
                    errno = soError
                } else {
                    result = -1
                    errno = ready == 0 ? ETIMEDOUT : errno
                }
            }
            guard result == 0 else {
                lastError = "cannot connect: \(String(cString: strerror(errno)))"
                Glibc.close(fd)
                continue
            }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags & ~Int32(O_NONBLOCK))
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw EtcdTransportError(description: "\(endpoint): \(lastError)")
    }
}

extension EtcdConnection {
    /// 0: reads wait as long as it takes (a watch between events).
    func setReadTimeout(milliseconds: Int) {
        state.withLock { fd in
            guard fd >= 0 else { return }
            var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }
}
