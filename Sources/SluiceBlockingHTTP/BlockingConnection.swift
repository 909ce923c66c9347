// One accepted connection of the blocking server: reads HTTP/1.1 requests, calls the handler, frames the responses.
// Blocking and single-threaded per connection; pipelined requests are answered in order from the same buffer.

import Glibc

final class BlockingConnection {
    // Limits a test backend needs: big enough for any inference payload we send, small enough to fail fast.
    static let headLimit = 64 * 1024
    static let bodyLimit = 16 * 1024 * 1024
    static let chunkLineLimit = 4 * 1024
    // Responses marked chunked go out in pieces this big, so a proxy sees more than one chunk on large bodies.
    static let responseChunkSize = 16 * 1024

    /// Why reading a request stopped short.
    enum Failure: Error {
        /// The peer went away (or the server was stopped); nothing can be answered.
        case peerClosed
        /// A request we will not serve; answer with this status, then close.
        case rejected(status: Int, reason: String)
    }

    /// A request and what its framing implies for the connection.
    struct Exchange {
        let request: BlockingRequest
        let isHTTP11: Bool
        let keepsAlive: Bool
    }

    /// The socket itself (what a long response may poll for the peer's close, under TLS too).
    let fd: Int32
    /// What requests are read from and responses written to: the socket, or TLS over it.
    let channel: BlockingStream
    let handler: @Sendable (BlockingRequest) -> BlockingResponse
    let onRequest: () -> Void
    var buffer: [UInt8] = []
    // Bytes before `consumed` belong to requests already parsed; compacted lazily to avoid quadratic copying.
    var consumed = 0
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    init(fd: Int32, stream: BlockingStream, handler: @escaping @Sendable (BlockingRequest) -> BlockingResponse,
         onRequest: @escaping () -> Void) {
        self.fd = fd
        self.channel = stream
        self.handler = handler
        self.onRequest = onRequest
    }

    deinit { scratch.deallocate() }

    /// Serves requests until the peer closes, a request asks to close, or a request is malformed.
    func serve() {
        while true {
            let exchange: Exchange
            do throws(Failure) {
                exchange = try readRequest()
            } catch {
                switch error {
                case .peerClosed:
                    return
                case .rejected(let status, let reason):
                    // RFC 9112 §9.6: after a framing error the rest of the stream cannot be trusted, so close.
                    _ = write(.text(status: status, reason + "\n"), method: "", isHTTP11: true, keepsAlive: false)
                    return
                }
            }
            // Counted before the response is written, so a client that has read its response sees the count.
            onRequest()
            let response = handler(exchange.request)
            let written = write(response, method: exchange.request.method, isHTTP11: exchange.isHTTP11,
                                keepsAlive: exchange.keepsAlive)
            guard written, exchange.keepsAlive else { return }
        }
    }

    // MARK: Reading

    func readRequest() throws(Failure) -> Exchange {
        var headBudget = Self.headLimit
        // RFC 9112 §2.2: ignore empty lines before the request-line (some clients send a CRLF after a body).
        var requestLine = try readLine(budget: &headBudget)
        while requestLine.isEmpty { requestLine = try readLine(budget: &headBudget) }
        let (method, target, isHTTP11) = try parseRequestLine(requestLine)

        var headers: [(name: String, value: String)] = []
        while true {
            let line = try readLine(budget: &headBudget)
            if line.isEmpty { break }
            headers.append(try parseFieldLine(line))
        }
        var request = BlockingRequest(method: method, target: target, headers: headers)

        // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
        let hostCount = headers.count { $0.name.lowercased() == "host" }
        if isHTTP11 && hostCount != 1 || hostCount > 1 {
            throw .rejected(status: 400, reason: "exactly one Host header is required")
        }

        let connection = tokens(of: "connection", in: headers)
        let keepsAlive = isHTTP11 ? !connection.contains("close") : connection.contains("keep-alive")
        let framing = try bodyFraming(headers)

        if let expectation = request.header("expect") {
            // RFC 9110 §10.1.1: 100-continue is the only expectation defined; anything else is a 417.
            guard expectation.trimmingSpaces().lowercased() == "100-continue" else {
                throw .rejected(status: 417, reason: "unsupported expectation")
            }
            // Only a 1.1 client waits for the interim response, and only if a body is coming and not yet here.
            if isHTTP11 && framing.expectsBody && consumed == buffer.count {
                guard channel.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { throw .peerClosed }
            }
        }

        switch framing {
        case .none: break
        case .length(let count): request.body = try readExactly(count)
        case .chunked: request.body = try readChunkedBody()
        }
        return Exchange(request: request, isHTTP11: isHTTP11, keepsAlive: keepsAlive)
    }

    enum Framing {
        case none
        case length(Int)
        case chunked

        var expectsBody: Bool {
            switch self {
            case .none: false
            case .length(let count): count > 0
            case .chunked: true
            }
        }
    }

    // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, but a request carrying both is how requests are
    // smuggled past proxies, so we reject it outright (§6.1 allows that) and a proxy test can see it was forwarded.
    func bodyFraming(_ headers: [(name: String, value: String)]) throws(Failure) -> Framing {
        let codings = tokens(of: "transfer-encoding", in: headers)
        let lengths = headers.filter { $0.name.lowercased() == "content-length" }
            .flatMap { $0.value.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingSpaces() }
        if !codings.isEmpty {
            guard lengths.isEmpty else {
                throw .rejected(status: 400, reason: "both Transfer-Encoding and Content-Length")
            }
            guard codings.last == "chunked" else {
                throw .rejected(status: 400, reason: "the final transfer coding of a request must be chunked")
            }
            guard codings.count == 1 else {
                throw .rejected(status: 501, reason: "only the chunked transfer coding is implemented")
            }
            return .chunked
        }
        guard let first = lengths.first else { return .none }
        // §6.3: a list of identical lengths is one length; anything else is unrecoverable.
        guard lengths.allSatisfy({ $0 == first }), !first.isEmpty, first.utf8.allSatisfy(\.isASCIIDigit) else {
            throw .rejected(status: 400, reason: "invalid Content-Length")
        }
        guard first.count <= 9, let count = Int(first), count <= Self.bodyLimit else {
            throw .rejected(status: 413, reason: "request body larger than \(Self.bodyLimit) bytes")
        }
        return .length(count)
    }

    // RFC 9112 §7.1: chunk-size [; ext] CRLF data CRLF ... 0 CRLF trailers CRLF. Extensions and trailers are dropped.
    func readChunkedBody() throws(Failure) -> [UInt8] {
        var body: [UInt8] = []
        while true {
            var budget = Self.chunkLineLimit
            let line = try readLine(budget: &budget)
            let sizeField = line.prefix { $0 != UInt8(ascii: ";") }.trimmingSpaces()
            guard !sizeField.isEmpty, sizeField.count <= 8, sizeField.allSatisfy(\.isASCIIHexDigit),
                  let size = Int(String(decoding: sizeField, as: UTF8.self), radix: 16) else {
                throw .rejected(status: 400, reason: "invalid chunk size")
            }
            if size == 0 { break }
            guard body.count + size <= Self.bodyLimit else {
                throw .rejected(status: 413, reason: "request body larger than \(Self.bodyLimit) bytes")
            }
            body += try readExactly(size)
            guard try readLine(budget: &budget).isEmpty else {
                throw .rejected(status: 400, reason: "chunk data not followed by CRLF")
            }
        }
        var trailerBudget = Self.headLimit
        while try !readLine(budget: &trailerBudget).isEmpty {}
        return body
    }

    func parseRequestLine(_ line: [UInt8]) throws(Failure) -> (method: String, target: String, isHTTP11: Bool) {
        // RFC 9112 §3: method SP request-target SP HTTP-version, single spaces, no whitespace inside the parts.
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(\.isTokenCharacter),
              !parts[1].isEmpty, parts[1].allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            throw .rejected(status: 400, reason: "malformed request line")
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        let isHTTP11: Bool
        switch version {
        case "HTTP/1.1": isHTTP11 = true
        case "HTTP/1.0": isHTTP11 = false
        default:
            let isVersion = version.hasPrefix("HTTP/") && version.count == 8
            throw .rejected(status: isVersion ? 505 : 400, reason: "unsupported protocol version")
        }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self), isHTTP11)
    }

    func parseFieldLine(_ line: [UInt8]) throws(Failure) -> (name: String, value: String) {
        // RFC 9112 §5.1: no whitespace between name and colon; §5.2: obsolete line folding may be rejected.
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
              line[..<colon].allSatisfy(\.isTokenCharacter) else {
            throw .rejected(status: 400, reason: "malformed header field")
        }
        let value = line[(colon + 1)...].trimmingSpaces()
        // §5.5: NUL, CR and LF are never valid inside a field value.
        guard !value.contains(where: { $0 == 0 || $0 == 0x0D || $0 == 0x0A }) else {
            throw .rejected(status: 400, reason: "invalid character in header field value")
        }
        return (String(decoding: line[..<colon], as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    /// Comma-separated, lowercased tokens of every field with this name (Connection, Transfer-Encoding).
    func tokens(of name: String, in headers: [(name: String, value: String)]) -> [String] {
        headers.filter { $0.name.lowercased() == name }
            .flatMap { $0.value.split(separator: ",") }
            .map { $0.trimmingSpaces().lowercased() }
            .filter { !$0.isEmpty }
    }

    /// One line without its terminator. CRLF, or a bare LF, ends it (RFC 9112 §2.2 allows accepting LF alone).
    func readLine(budget: inout Int) throws(Failure) -> [UInt8] {
        // Relative to `consumed`, because fill() may compact the buffer and shift absolute indices.
        var scanned = 0
        while true {
            if let newline = buffer[(consumed + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                budget -= newline + 1 - consumed
                guard budget >= 0 else { throw .rejected(status: 431, reason: "request head too large") }
                var end = newline
                if end > consumed && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = Array(buffer[consumed..<end])
                consumed = newline + 1
                // §2.2: a bare CR elsewhere in the line is invalid.
                guard !line.contains(UInt8(ascii: "\r")) else {
                    throw .rejected(status: 400, reason: "bare CR in request head")
                }
                return line
            }
            guard buffer.count - consumed <= budget else {
                throw .rejected(status: 431, reason: "request head too large")
            }
            scanned = buffer.count - consumed
            // EOF between requests is the normal end of a keep-alive connection; within one, the client gave up.
            guard fill() else { throw .peerClosed }
        }
    }

    func readExactly(_ count: Int) throws(Failure) -> [UInt8] {
        while buffer.count - consumed < count {
            guard fill() else { throw .peerClosed }
        }
        let bytes = Array(buffer[consumed..<(consumed + count)])
        consumed += count
        return bytes
    }

    /// Appends whatever the socket has; false on EOF or error.
    func fill() -> Bool {
        if consumed > 0 && consumed >= buffer.count / 2 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
        // Read into a scratch buffer kept for the connection's life: zero-filling 64 KiB of the array on every
        // read cost milliseconds per request in debug builds, which the proxy tests run.
        let received = channel.read(into: scratch) ?? 0
        if received > 0 { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<received])) }
        return received > 0
    }

    // MARK: Writing

    /// Frames and sends one response; false when the peer is gone.
    func write(_ response: BlockingResponse, method: String, isHTTP11: Bool, keepsAlive: Bool) -> Bool {
        var response = response
        if response.stream != nil || response.sinkStream != nil, !isHTTP11 || method == "HEAD" {
            // Nothing to stream to: a 1.0 client cannot take chunks, and HEAD needs only the length.
            response.body = response.collectedBody
            response.stream = nil
            response.sinkStream = nil
        }
        var head = "HTTP/1.1 \(response.status) \(BlockingResponse.reason(for: response.status))\r\n"
        head += "Date: \(Self.httpDate())\r\n"
        // The server owns framing and connection management; a handler's own values could contradict the body.
        let framingFields: Set<String> = ["content-length", "transfer-encoding", "connection"]
        for (name, value) in response.headers where !framingFields.contains(name.lowercased()) {
            head += "\(name): \(value)\r\n"
        }
        // RFC 9110 §6.4.1: 1xx, 204 and 304 never carry content; a HEAD response describes it but omits it.
        let hasNoContent = (100..<200).contains(response.status) || response.status == 204 || response.status == 304
        let omitsBody = hasNoContent || method == "HEAD"
        // A 1.0 client cannot decode chunked (RFC 9112 §7), so it gets Content-Length instead.
        let isChunked = response.chunked && isHTTP11 && !hasNoContent
        if isChunked {
            head += "Transfer-Encoding: chunked\r\n"
        } else if !hasNoContent {
            head += "Content-Length: \(response.body.count)\r\n"
        }
        if !keepsAlive {
            head += "Connection: close\r\n"
        } else if !isHTTP11 {
            head += "Connection: keep-alive\r\n"
        }
        head += "\r\n"

        var bytes = Array(head.utf8)
        if let sinkStream = response.sinkStream, isChunked {
            guard channel.write(bytes) else { return false }
            let sink = ConnectionSink(fd: fd, channel: channel)
            sinkStream(sink)
            return sink.isAlive && channel.write(Array("0\r\n\r\n".utf8))
        }
        if let stream = response.stream, isChunked {
            guard channel.write(bytes) else { return false }
            var alive = true
            stream { piece in
                guard alive, piece.count > 0 else { return alive }
                var chunk = Array(String(piece.count, radix: 16).utf8) + [0x0D, 0x0A]
                chunk.append(contentsOf: piece)
                chunk += [0x0D, 0x0A]
                alive = channel.write(chunk)
                return alive
            }
            return alive && channel.write(Array("0\r\n\r\n".utf8))
        }
        if !omitsBody {
            if isChunked {
                var offset = 0
                while offset < response.body.count {
                    let end = min(offset + Self.responseChunkSize, response.body.count)
                    bytes += Array(String(end - offset, radix: 16).utf8) + [0x0D, 0x0A]
                    bytes += response.body[offset..<end]
                    bytes += [0x0D, 0x0A]
                    offset = end
                }
                bytes += Array("0\r\n\r\n".utf8)
            } else {
                bytes += response.body
            }
        }
        return channel.write(bytes)
    }

    /// IMF-fixdate (RFC 9110 §5.6.7); an origin server with a clock sends Date (§6.6.1).
    static func httpDate() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var text = [CChar](repeating: 0, count: 64)
        let count = strftime(&text, text.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: text.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A long-lived body's chunks on the connection, and its waits, which also watch the socket for the peer's end.
final class ConnectionSink: BlockingStreamSink {
    /// The socket, polled for the peer's close; the bytes go through `channel` (plain, or TLS over the socket).
    let fd: Int32
    let channel: BlockingStream
    private(set) var isAlive = true

    init(fd: Int32, channel: BlockingStream) {
        self.fd = fd
        self.channel = channel
    }

    func emit(_ piece: [UInt8]) -> Bool {
        guard isAlive, !piece.isEmpty else { return isAlive }
        var chunk = Array(String(piece.count, radix: 16).utf8) + [0x0D, 0x0A]
        chunk += piece
        chunk += [0x0D, 0x0A]
        isAlive = channel.write(chunk)
        return isAlive
    }

    /// POLLRDHUP (Linux, 0x2000; the Glibc module leaves the macro out) says the peer closed its side: a watcher
    /// that went away frees its thread now, not at the next event. POLLHUP comes from the server's stop().
    func wait(readable other: Int32, milliseconds: Int) -> BlockingWake {
        guard isAlive else { return .peerGone }
        let peerClosed = Int16(0x2000) | Int16(POLLHUP) | Int16(POLLERR)
        var entries = [pollfd(fd: fd, events: Int16(0x2000), revents: 0), pollfd(fd: other, events: Int16(POLLIN), revents: 0)]
        let count = poll(&entries, 2, Int32(clamping: milliseconds))
        if count > 0, entries[0].revents & peerClosed != 0 {
            isAlive = false
            return .peerGone
        }
        if count > 0, entries[1].revents != 0 { return .readable }
        return .timedOut
    }
}
