// Proxy layer: the one forwarded-headers policy — what happens to each client field on its way to the pod, and the
// fields Sluice adds (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, traceparent, the tag and revision headers),
// and what the head tells the request record (trace context, user agent). The HTTP/1.1
// serializer (Exchange.begin) and the HTTP/2 one (H2Stream.startGRPC) both follow it; switches are exhaustive over
// HeaderKind, so a new kind of header cannot be forwarded by accident.
import SluiceHTTP1
import SluiceIO
import SluiceRouting

enum ForwardedHeaders {
    /// What becomes of one client field toward the pod.
    enum Action {
        /// Copied as it is.
        case forward
        /// Hop-by-hop, re-framed by us, or one we set ourselves: never forwarded.
        case drop
        /// One of the client's X-Forwarded-For lines: joined into ours (RFC 9110 §5.3), with the client's address last.
        case joinForwardedFor
        /// The client's X-Request-Id: kept as the request id (when short enough), and sent once as ours.
        case requestId
        /// The client's `traceparent`: ours replaces it (the same trace, our span id as the parent).
        case traceparent
        /// The client's `tracestate`: passed on unchanged when its `traceparent` was continued, dropped when the
        /// trace was restarted (it belonged to a trace the pod will never see). B3 headers are plain `.forward`.
        case tracestate
    }

    static func action(_ field: HeaderField, name: UnsafeRawBufferPointer) -> Action {
        if field.dropOnForward { return .drop }  // names with "_", and the kinds below that the parsers already mark
        switch field.kind {
        case .xForwardedFor:
            return .joinForwardedFor
        case .xRequestId:
            return .requestId
        case .xForwardedProto, .knativeServingTag:
            return .drop  // ours replace them: a client must not choose its scheme or its tag header toward the pod
        case .other:
            switch name.count {
            case 10: if equalsIgnoringCase(name, "tracestate") { return .tracestate }
            case 11: if equalsIgnoringCase(name, "traceparent") { return .traceparent }
            default: break
            }
            return isInjectedHeader(name) ? .drop : .forward
        case .host, .contentLength, .transferEncoding, .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .expect:
            return .drop  // hop-by-hop or re-framed (RFC 9110 §7.6.1, RFC 9112 §6.3)
        }
    }

    /// Headers we add toward the pod; a client's copies are dropped so they cannot be spoofed (a client request
    /// must never pass for a mirror's: a model server may skip side effects for those).
    static func isInjectedHeader(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 15: return equalsIgnoringCase(name, "x-sluice-shadow")
        case 16: return equalsIgnoringCase(name, "kserve-isvc-name")
        case 21: return equalsIgnoringCase(name, "kserve-isvc-namespace")
        case 24: return equalsIgnoringCase(name, "knative-serving-revision")
        case 25: return equalsIgnoringCase(name, "knative-serving-namespace")
        default: return false
        }
    }

    /// The longest client X-Request-Id kept; a longer one is replaced by ours.
    static let maxRequestIdBytes = 128

    /// Sets `requestId` to the client's first usable X-Request-Id, else to a new random one. `base` is where the
    /// fields' spans point.
    static func resolveRequestId(_ requestId: inout [UInt8], fields: [HeaderField], base: UnsafeRawPointer, random: inout FastRandom) {
        requestId.removeAll(keepingCapacity: true)
        for field in fields where field.kind == .xRequestId && !field.dropOnForward && field.value.count <= maxRequestIdBytes {
            requestId.append(contentsOf: UnsafeRawBufferPointer(start: base + field.value.start, count: field.value.count))
            return
        }
        generateRequestId(into: &requestId, random: &random)
    }

    /// Reads what the record keeps from the head — `User-Agent` and the trace context — in one pass
    /// over the fields: exactly one valid `traceparent` is continued (our own span id made), none or an invalid
    /// or repeated one starts a new trace, sampled with probability `sampleRate`. Allocates nothing.
    static func noteHead(_ record: inout RequestRecord, fields: [HeaderField], base: UnsafeRawPointer,
                         random: inout FastRandom, sampleRate: Double) {
        var traceparent: ByteSpan? = nil
        var traceparents = 0
        var sawUserAgent = false
        for field in fields where field.kind == .other && !field.dropOnForward {
            let name = UnsafeRawBufferPointer(start: base + field.name.start, count: field.name.count)
            if !sawUserAgent && name.count == 10 && equalsIgnoringCase(name, "user-agent") {
                record.userAgent.set(UnsafeRawBufferPointer(start: base + field.value.start, count: field.value.count))
                sawUserAgent = true
            } else if name.count == 11 && equalsIgnoringCase(name, "traceparent") {
                traceparent = field.value
                traceparents += 1
            }
        }
        if traceparents == 1, let span = traceparent,
           let continued = TraceContext.parse(traceparent: UnsafeRawBufferPointer(start: base + span.start, count: span.count)) {
            record.trace = continued
            record.trace.makeSpanId(random: &random)
        } else {
            record.trace.start(random: &random, sampleRate: sampleRate)
        }
    }

    /// `traceparent: <value>\r\n` toward an HTTP/1.1 pod.
    static func appendTraceparent(_ trace: TraceContext, into out: ByteBuffer) {
        out.append("traceparent: ")
        trace.withTraceparent { out.append($0) }
        out.append("\r\n")
    }

    /// A pod's `traceresponse`, replaced by ours when `tracing.responseHeader` is on (the one response field this
    /// policy touches: the client should see the gateway's span, the one its own span is the parent of).
    static func isTraceResponse(_ name: UnsafeRawBufferPointer) -> Bool {
        name.count == 13 && equalsIgnoringCase(name, "traceresponse")
    }

    /// X-Forwarded-For's value: the client's own list, then the client's address.
    static func appendForwardedFor(fields: [HeaderField], base: UnsafeRawPointer, peerIP: [UInt8], into out: ByteBuffer) {
        for field in fields where field.kind == .xForwardedFor && !field.dropOnForward {
            out.append(UnsafeRawBufferPointer(start: base + field.value.start, count: field.value.count))
            out.append(", ")
        }
        out.append(peerIP)
    }

    /// X-Forwarded-Proto's value.
    static func forwardedProto(isTLS: Bool) -> StaticString { isTLS ? "https" : "http" }

    /// A random (version 4 layout) UUID, written without allocating once the array has capacity.
    static func generateRequestId(into requestId: inout [UInt8], random: inout FastRandom) {
        let hex: StaticString = "0123456789abcdef"
        var a = random.next(), b = random.next()
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes of stack scratch
        withUnsafeMutableBytes(of: &text) { out in
            var o = 0
            for i in 0..<32 {
                if i == 8 || i == 12 || i == 16 || i == 20 { out[o] = 0x2D; o += 1 }
                let nibble: Int
                if i < 16 { nibble = Int(a & 0xF); a >>= 4 } else { nibble = Int(b & 0xF); b >>= 4 }
                out[o] = hex.utf8Start[i == 12 ? 4 : (i == 16 ? 8 | (nibble & 3) : nibble)]
                o += 1
            }
            requestId.append(contentsOf: UnsafeRawBufferPointer(rebasing: out[0..<36]))
        }
    }
}
