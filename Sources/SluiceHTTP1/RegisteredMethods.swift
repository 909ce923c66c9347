// RegisteredMethods: the IANA HTTP Method Registry, the methods the gateway accepts. Protocol layer (SluiceHTTP1).
// RFC 9110 §9.1: methods are case-sensitive tokens and a server SHOULD answer 501 to one it does not
// recognise. A gateway in front of inference services has no use for private methods, and accepting
// only registered ones keeps RTSP/SSDP/ICE traffic (ANNOUNCE, M-SEARCH, SOURCE) and case tricks
// (`get`) away from backends that might interpret them differently. PRI is registered only so that an
// HTTP/2 preface fails HTTP/1 parsers (RFC 9113 §3.4); it is left out on purpose.

enum RegisteredMethods {
    static func contains(_ buffer: UnsafeRawBufferPointer, _ method: ByteSpan) -> Bool {
        switch method.count {
        case 3:
            return buffer.span(method, equalsBytes: "GET") || buffer.span(method, equalsBytes: "PUT")
                || buffer.span(method, equalsBytes: "ACL")
        case 4:
            return buffer.span(method, equalsBytes: "POST") || buffer.span(method, equalsBytes: "HEAD")
                || buffer.span(method, equalsBytes: "COPY") || buffer.span(method, equalsBytes: "LOCK")
                || buffer.span(method, equalsBytes: "MOVE") || buffer.span(method, equalsBytes: "BIND")
                || buffer.span(method, equalsBytes: "LINK")
        case 5:
            return buffer.span(method, equalsBytes: "PATCH") || buffer.span(method, equalsBytes: "TRACE")
                || buffer.span(method, equalsBytes: "MKCOL") || buffer.span(method, equalsBytes: "MERGE")
                || buffer.span(method, equalsBytes: "LABEL") || buffer.span(method, equalsBytes: "QUERY")
        case 6:
            return buffer.span(method, equalsBytes: "DELETE") || buffer.span(method, equalsBytes: "REPORT")
                || buffer.span(method, equalsBytes: "SEARCH") || buffer.span(method, equalsBytes: "UNBIND")
                || buffer.span(method, equalsBytes: "REBIND") || buffer.span(method, equalsBytes: "UNLINK")
                || buffer.span(method, equalsBytes: "UNLOCK") || buffer.span(method, equalsBytes: "UPDATE")
        case 7:
            return buffer.span(method, equalsBytes: "OPTIONS") || buffer.span(method, equalsBytes: "CONNECT")
                || buffer.span(method, equalsBytes: "CHECKIN")
        case 8:
            return buffer.span(method, equalsBytes: "PROPFIND") || buffer.span(method, equalsBytes: "CHECKOUT")
        case 9:
            return buffer.span(method, equalsBytes: "PROPPATCH")
        case 10:
            return buffer.span(method, equalsBytes: "MKCALENDAR") || buffer.span(method, equalsBytes: "UNCHECKOUT")
                || buffer.span(method, equalsBytes: "MKACTIVITY") || buffer.span(method, equalsBytes: "ORDERPATCH")
        case 11:
            return buffer.span(method, equalsBytes: "MKWORKSPACE")
        case 13:
            return buffer.span(method, equalsBytes: "MKREDIRECTREF")
        case 15:
            return buffer.span(method, equalsBytes: "VERSION-CONTROL")
        case 16:
            return buffer.span(method, equalsBytes: "BASELINE-CONTROL")
        case 17:
            return buffer.span(method, equalsBytes: "UPDATEREDIRECTREF")
        default:
            return false
        }
    }
}
