// Proxy layer: the HTTP/1.1 side of an Exchange — the request body comes from the connection's input (Content-Length
// or chunked), the response goes to its output re-serialised as HTTP/1.1 (re-chunked when the pod's body has no length).
import SluiceHTTP1
import SluiceIO

extension DownstreamConnection {
    // MARK: Request body source

    func pullRequestBody(for exchange: Exchange, into out: ByteBuffer) -> RequestBodyPull {
        while true {
            if let input, !input.isEmpty {
                switch exchange.requestBody {
                case .done:
                    return .moved
                case .contentLength(let remaining):
                    let n = min(remaining, input.readableBytes)
                    exchange.forwardRequestBody(UnsafeRawBufferPointer(rebasing: input.readable[0..<n]), into: out)
                    input.consume(n)
                    return .moved
                case .chunked:
                    let (consumed, step) = requestDecoder.next(input.readable)
                    switch step {
                    case .data(let span):
                        exchange.forwardRequestBody(UnsafeRawBufferPointer(rebasing: input.readable[span.start..<span.end]), into: out)
                        input.consume(consumed)
                        return .moved
                    case .needMore:
                        input.consume(consumed)
                    case .end:
                        exchange.forwardRequestBodyEnd(into: out)
                        input.consume(consumed)
                        return .moved
                    case .failed(let error):
                        input.consume(consumed)
                        return .failed(ErrorResponse(parseError: error))
                    }
                }
                continue
            }
            // FIN seen and the socket drained: the body can never be completed (the client abandoned its upload).
            guard mayBeReadable else { return clientFinishedSending ? .gone : .noData }
            switch readClient(limit: exchange.policy.bufferBytes) {
            case .progress: continue
            case .noData: return clientFinishedSending && !mayBeReadable ? .gone : .noData
            case .gone: return .gone
            }
        }
    }

    func upstreamTookRequestBytes() {}

    // MARK: Response sink

    private func takeOutput() -> ByteBuffer {
        if let output { return output }
        let b = worker.buffers.take()
        output = b
        return b
    }

    func writeResponseHead(_ head: ResponseHead, base: UnsafeRawPointer, for exchange: Exchange) {
        let out = takeOutput()
        @inline(__always) func bytes(_ span: ByteSpan) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + span.start, count: span.count)
        }
        // Status code and reason phrase as the pod sent them: the bytes after "HTTP/1.x " up to the CR.
        var end = 9
        while end < head.headLength && base.load(fromByteOffset: end, as: UInt8.self) != 0x0D { end += 1 }
        out.append("HTTP/1.1 ")
        out.append(UnsafeRawBufferPointer(start: base + 9, count: end - 9))
        out.append("\r\n")
        var hasRequestId = false
        let sendsTraceResponse = worker.settings.tracing.responseHeader
        var contentLength: ByteSpan? = nil
        for field in head.headers {
            if field.kind == .contentLength { contentLength = field.value }
            if field.dropOnForward { continue }
            if field.kind == .xRequestId { hasRequestId = true }
            if sendsTraceResponse && ForwardedHeaders.isTraceResponse(bytes(field.name)) { continue }  // ours replaces the pod's
            out.append(bytes(field.name))
            out.append(": ")
            out.append(bytes(field.value))
            out.append("\r\n")
        }
        switch head.framing {
        case .none:
            // HEAD and 304 keep the pod's Content-Length: it describes the representation (RFC 9110 §8.6).
            if let contentLength, exchange.requestWasHEAD || head.status == 304 {
                out.append("Content-Length: ")
                out.append(bytes(contentLength))
                out.append("\r\n")
            }
        case .contentLength(let n):
            out.append("Content-Length: ")
            out.append(decimal: n)
            out.append("\r\n")
        case .chunked, .untilClose:
            if requestIsHTTP10 {
                exchange.closeAfterResponse = true  // an HTTP/1.0 client only understands a close-delimited body
            } else {
                rechunkResponse = true
                out.append("Transfer-Encoding: chunked\r\n")
            }
        }
        if !exchange.requestBodyDone { exchange.closeAfterResponse = true }
        if exchange.closeAfterResponse || worker.isDraining {
            out.append("Connection: close\r\n")
        } else if requestIsHTTP10 {
            out.append("Connection: keep-alive\r\n")
        }
        if !hasRequestId {
            out.append("X-Request-Id: ")
            out.append(requestId)
            out.append("\r\n")
        }
        if exchange.policy.revisionHeader { out.append(exchange.revision.responseHeader) }
        if exchange.policy.attemptCountHeader {
            out.append("x-envoy-attempt-count: ")
            out.append(decimal: exchange.attemptCount)
            out.append("\r\n")
        }
        if sendsTraceResponse {
            // W3C Trace Context Level 2 `traceresponse`: the trace and the gateway's span, for the caller's logs.
            out.append("traceresponse: ")
            trace.withTraceparent { out.append($0) }
            out.append("\r\n")
        }
        out.append("\r\n")
        record.status = head.status
    }

    func writeResponseBody(_ bytes: UnsafeRawBufferPointer) {
        record.responseBodyBytes += bytes.count
        let out = takeOutput()
        if rechunkResponse {
            out.append(hex: bytes.count)
            out.append("\r\n")
            out.append(bytes)
            out.append("\r\n")
        } else {
            out.append(bytes)
        }
    }

    func endResponseBody() {
        if rechunkResponse { takeOutput().append("0\r\n\r\n") }
        rechunkResponse = false
    }

    var responseBufferedBytes: Int { output?.readableBytes ?? 0 }

    func flushResponse() { flush() }

    func abortExchange(_ flags: RequestRecord.Flags) { abort(flags) }
}
