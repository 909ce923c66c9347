// Tests for RequestParser: every accepted form and every rejection of hardening.md §1.7, with statuses.
import XCTest
@testable import SluiceHTTP1

final class RequestParserTests: XCTestCase {
    // MARK: accepted forms

    func testSimpleRequest() {
        let raw = bytes("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept:  */* \t\r\nX-Empty:\r\n\r\n")
        let (status, head) = parseRequest(raw)
        XCTAssertEqual(status, .complete)
        XCTAssertEqual(text(raw, head.method), "GET")
        XCTAssertFalse(head.isHEAD)
        XCTAssertEqual(text(raw, head.target), "/index.html?q=1")
        XCTAssertFalse(head.targetIsEmptyPath)
        XCTAssertNil(head.authority)
        XCTAssertEqual(head.version, .http11)
        XCTAssertEqual(text(raw, head.host), "example.com:8080")
        XCTAssertEqual(head.framing, .none)
        XCTAssertTrue(head.keepAlive)
        XCTAssertFalse(head.expectsContinue)
        XCTAssertEqual(head.headLength, raw.count)
        XCTAssertEqual(head.headers.count, 3)
        XCTAssertEqual(text(raw, head.headers[1].name), "Accept")
        XCTAssertEqual(text(raw, head.headers[1].value), "*/*", "OWS trimmed on both sides")
        XCTAssertEqual(text(raw, head.headers[2].value), "")
        XCTAssertEqual(head.headers[0].kind, .host)
        XCTAssertTrue(head.headers[0].dropOnForward, "the proxy writes Host itself")
        XCTAssertFalse(head.headers[1].dropOnForward)
    }

    func testHEADAndRegisteredMethods() {
        XCTAssertTrue(parseRequest("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").1.isHEAD)
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY", "PROPFIND", "VERSION-CONTROL"] {
            XCTAssertEqual(parseRequest("\(method) /x HTTP/1.1\r\nHost: a\r\n\r\n").0, .complete, method)
        }
    }

    func testAbsoluteFormRoutesByAuthority() {
        let raw = bytes("GET HtTp://Model.example:8080/v1/models/iris:predict?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        let (status, head) = parseRequest(raw)
        XCTAssertEqual(status, .complete)
        XCTAssertEqual(text(raw, head.authority), "Model.example:8080")
        XCTAssertEqual(text(raw, head.host), "Model.example:8080", "RFC 9112 §3.2.2: ignore the Host field")
        XCTAssertEqual(text(raw, head.target), "/v1/models/iris:predict?x=1")
        XCTAssertFalse(head.targetIsEmptyPath)

        let bare = bytes("GET https://h HTTP/1.1\r\nHost: h\r\n\r\n")
        let (s2, h2) = parseRequest(bare)
        XCTAssertEqual(s2, .complete)
        XCTAssertEqual(text(bare, h2.target), "")
        XCTAssertTrue(h2.targetIsEmptyPath)

        let query = bytes("GET http://[::1]:80?a=b HTTP/1.1\r\nHost: h\r\n\r\n")
        let (s3, h3) = parseRequest(query)
        XCTAssertEqual(s3, .complete)
        XCTAssertEqual(text(query, h3.authority), "[::1]:80")
        XCTAssertEqual(text(query, h3.target), "?a=b")
        XCTAssertTrue(h3.targetIsEmptyPath)
    }

    func testAsteriskFormOnlyForOPTIONS() {
        let raw = bytes("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        let (status, head) = parseRequest(raw)
        XCTAssertEqual(status, .complete)
        XCTAssertEqual(text(raw, head.target), "*")
        XCTAssertEqual(parseRequest("GET * HTTP/1.1\r\nHost: a\r\n\r\n").0.status, 400)
    }

    func testHTTP10() {
        let (status, head) = parseRequest("GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(status, .complete)
        XCTAssertEqual(head.version, .http10)
        XCTAssertNil(head.host, "Host is optional on 1.0")
        XCTAssertFalse(head.keepAlive)
        XCTAssertTrue(parseRequest("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").1.keepAlive)
        XCTAssertFalse(parseRequest("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").1.keepAlive)
    }

    func testConnectionCloseAndDropsNamedFields() {
        let raw = bytes(
            "GET / HTTP/1.1\r\nX-Secret: 1\r\nHost: a\r\nConnection: close,\t x-secret , Upgrade\r\nUpgrade: websocket\r\n"
                + "Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nX_Forwarded_For: evil\r\n"
                + "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Request-Id: abc\r\nKnative-Serving-Tag: t\r\n"
                + "Expect: 100-continue\r\nContent-Length: 0\r\nOther: y\r\n\r\n")
        let (status, head) = parseRequest(raw)
        XCTAssertEqual(status, .complete)
        XCTAssertFalse(head.keepAlive)
        XCTAssertTrue(head.expectsContinue)
        var drops: [String: Bool] = [:]
        var kinds: [String: HeaderKind] = [:]
        for h in head.headers {
            drops[text(raw, h.name)!] = h.dropOnForward
            kinds[text(raw, h.name)!] = h.kind
        }
        XCTAssertEqual(drops["X-Secret"], true, "named by Connection, before the Connection line")
        for name in ["Host", "Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "X_Forwarded_For", "Expect", "Content-Length"] {
            XCTAssertEqual(drops[name], true, name)
        }
        for name in ["X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Knative-Serving-Tag", "Other"] {
            XCTAssertEqual(drops[name], false, name)
        }
        XCTAssertEqual(kinds["X-Forwarded-For"], .xForwardedFor)
        XCTAssertEqual(kinds["X-Forwarded-Proto"], .xForwardedProto)
        XCTAssertEqual(kinds["X-Request-Id"], .xRequestId)
        XCTAssertEqual(kinds["Knative-Serving-Tag"], .knativeServingTag)
        XCTAssertEqual(kinds["Proxy-Connection"], .proxyConnection)
        XCTAssertEqual(kinds["TE"], .te)
        XCTAssertEqual(kinds["Trailer"], .trailer)
        XCTAssertEqual(kinds["Keep-Alive"], .keepAlive)
        XCTAssertEqual(kinds["X_Forwarded_For"], .other)
    }

    func testExpectContinueIgnoredOnHTTP10() {
        XCTAssertFalse(parseRequest("POST / HTTP/1.0\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").1.expectsContinue)
    }

    func testFraming() {
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n").1.framing, .contentLength(42))
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n").1.framing, .contentLength(7))
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 ,5\r\n\r\n").1.framing, .contentLength(5))
        XCTAssertEqual(
            parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").1.framing,
            .contentLength(5))
        XCTAssertEqual(
            parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n").1.framing,
            .contentLength(999_999_999_999_999_999))
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing, .chunked)
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n").1.framing, .chunked)
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").1.framing, .chunked)
        XCTAssertEqual(
            parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n").1.framing,
            .chunked)
        XCTAssertEqual(parseRequest("POST / HTTP/1.1\r\nHost: a\r\n\r\n").1.framing, .none, "a body method without framing has no body")
    }

    func testValidHosts() {
        for host in ["a", "example.com", "EXAMPLE.com:1", "[::1]", "[2001:db8::1]:8443", "127.0.0.1:80", "a-b_c~d.e", "%41b", "0.0.0.0=5000"] {
            XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n").0, .complete, host)
        }
    }

    func testLeadingEmptyLineIsSkipped() {
        let raw = bytes("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        let (status, head) = parseRequest(raw)
        XCTAssertEqual(status, .complete)
        XCTAssertEqual(text(raw, head.method), "GET")
        XCTAssertEqual(head.headLength, raw.count)
    }

    func testObsTextAllowedInValues() {
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: D\u{fc}sseldorf\t\r\n\r\n").0, .complete)
    }

    // MARK: rejections

    static let rejections: [(String, String, Int)] = [
        // request line
        ("double SP after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("double SP after target", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("trailing SP after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        ("HTAB separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("method not a token", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("leading SP", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("unregistered method", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        ("methods are case-sensitive", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        ("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        ("HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        ("lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        ("HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        ("HTTP/11", "GET / HTTP/11\r\nHost: a\r\n\r\n", 400),
        ("no version", "GET /\r\nHost: a\r\n\r\n", 400),
        ("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        ("bare CR after request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        ("bare LF before request line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // target
        ("relative target", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("unknown scheme", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("userinfo", "GET http://u:p@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("bad authority port", "GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("UTF-8 in target", "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("DEL in target", "GET /\u{7f} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("NUL in target", "GET /\u{0} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // field lines
        ("whitespace before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ("tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n", 400),
        ("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
        ("space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", 400),
        ("non-token name", "GET / HTTP/1.1\r\nHost: a\r\nX@: b\r\n\r\n", 400),
        ("no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400),
        ("obs-fold with tab", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400),
        ("whitespace line after request line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\u{0}c\r\n\r\n", 400),
        ("CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\u{1}c\r\n\r\n", 400),
        ("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\u{7f}c\r\n\r\n", 400),
        ("bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", 400),
        ("bare LF ending a field", "GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n", 400),
        ("bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
        ("CR then garbage ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
        // Host
        ("missing Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 400),
        ("duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
        ("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        ("Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("Host non-digit port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
        ("Host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
        ("Host long port", "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400),
        ("Host unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        ("Host bad pct", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400),
        // Content-Length
        ("CL letters", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
        ("CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400),
        ("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        ("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("CL underscore", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", 400),
        ("CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400),
        ("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
        ("CL 19 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n", 400),
        ("CL differing list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),
        ("CL empty list element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,\r\n\r\n", 400),
        ("CL differing lines", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        // Transfer-Encoding
        ("TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("TE then CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400),
        ("unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501),
        ("chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        ("chunked not last across lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        ("chunked twice across lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("chunkedchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedchunked\r\n\r\n", 501),
        ("empty TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
        ("chunked with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400),
        ("quoted TE parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;a=\", chunked\"\r\n\r\n", 400),
        // Connection / Expect
        ("Connection non-token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, a/b\r\n\r\n", 400),
        ("Expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", 417),
    ]

    func testRejections() {
        for (name, request, status) in Self.rejections {
            let (result, _) = parseRequest(request)
            XCTAssertEqual(result.status, status, "\(name): \(result)")
            // The same verdict byte by byte: decisions never depend on how bytes were split.
            let raw = bytes(request)
            let (split, _) = parseRequestIncrementally(raw, cuts: Array(0..<raw.count))
            XCTAssertEqual(split, result, name)
        }
    }

    func testReasonsAreEnvoyStyle() {
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost : a\r\n\r\n").0, .failed(HTTPParseError(status: 400, reason: "http1.whitespace_before_colon")))
        XCTAssertEqual(
            parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").0,
            .failed(HTTPParseError(status: 400, reason: "http1.content_length_and_chunked_not_allowed")))
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nX: a\r\n\r\n").0, .failed(HTTPParseError(status: 400, reason: "http1.missing_host_header")))
    }

    // MARK: limits

    func testTargetTooLong() {
        var limits = HTTP1Limits()
        limits.maxTargetBytes = 16
        XCTAssertEqual(parseRequest("GET /0123456789abcde HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).0, .complete)
        XCTAssertEqual(parseRequest("GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).0.status, 414)
        // Detected before the request line ends.
        XCTAssertEqual(parseRequest("GET /0123456789abcdefgh", limits: limits).0.status, 414)
    }

    func testHeadTooLarge() {
        var limits = HTTP1Limits()
        limits.maxHeadBytes = 64
        let exact = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 64 - 32) + "\r\n\r\n"
        XCTAssertEqual(bytes(exact).count, 64)
        XCTAssertEqual(parseRequest(exact, limits: limits).0, .complete)
        let over = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 33) + "\r\n\r\n"
        XCTAssertEqual(parseRequest(over, limits: limits).0.status, 431)
        // Early: an unfinished head longer than the limit fails without waiting for its end.
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 100), limits: limits).0.status, 431)
    }

    func testTooManyHeaders() {
        var limits = HTTP1Limits()
        limits.maxHeaderCount = 3
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits: limits).0, .complete)
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n", limits: limits).0.status, 431)
        XCTAssertEqual(parseRequest("GET / HTTP/1.1\r\n" + String(repeating: "A: 1\r\n", count: 101)).0.status, 431)
    }

    // MARK: early detection

    func testErrorsBeforeTheHeadIsComplete() {
        for prefix in [
            "GET / HTTP/1.9", "GET / HTXP", "CONNECT ", "GET /a b", "GET / HTTP/1.1\r\nBad Name",
            "GET / HTTP/1.1\r\nHost: a\r\n folded", "GET / HTTP/1.1\r\nHost: a\r\nHost:", "GET / HTTP/1.1\r\nX: a\u{0}",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n", "POST / HTTP/1.0\r\nTransfer-Encoding:", "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding:",
            "GET / HTTP/1.1\r\n" + String(repeating: "A: 1\r\n", count: 100) + "B:",
        ] {
            let (status, _) = parseRequest(prefix)
            XCTAssertNotEqual(status, .incomplete, prefix)
            XCTAssertNotEqual(status, .complete, prefix)
        }
    }

    // MARK: resumability

    static let samples = [
        "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
        "\r\nPOST http://h:1/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\nConnection: foo, close\r\nFoo: 1\r\n\r\n",
        "PUT /u HTTP/1.0\r\nContent-Length: 5, 5\r\nConnection: keep-alive\r\nX_A: 1\r\nExpect: 100-continue\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    ]

    func testByteByByteEqualsAllAtOnce() {
        for sample in Self.samples {
            let raw = bytes(sample)
            let (whole, wholeHead) = parseRequest(raw)
            let (split, splitHead) = parseRequestIncrementally(raw, cuts: Array(0..<raw.count))
            XCTAssertEqual(split, whole, sample)
            if whole == .complete { XCTAssertEqual(describe(splitHead, raw), describe(wholeHead, raw)) }
        }
    }

    func testRandomSplitsEqualAllAtOnce() {
        var rng = SplitMix64(seed: 0x5EED)
        for sample in Self.samples {
            let raw = bytes(sample)
            let (whole, wholeHead) = parseRequest(raw)
            for _ in 0..<200 {
                let cuts = (0..<Int.random(in: 1...6, using: &rng)).map { _ in Int.random(in: 0...raw.count, using: &rng) }.sorted()
                let (split, splitHead) = parseRequestIncrementally(raw, cuts: cuts)
                XCTAssertEqual(split, whole, "\(sample) cuts \(cuts)")
                if whole == .complete { XCTAssertEqual(describe(splitHead, raw), describe(wholeHead, raw)) }
            }
        }
    }

    func testResumesWithoutRescanning() {
        let raw = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n")
        var parser = RequestParser(limits: HTTP1Limits())
        raw.withUnsafeBytes { all in
            XCTAssertEqual(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<30])), .incomplete)
            XCTAssertEqual(parser.position, 30, "resume offset is the first unexamined byte")
            XCTAssertEqual(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<30])), .incomplete)
            XCTAssertEqual(parser.position, 30)
            XCTAssertEqual(parser.parse(all), .complete)
            XCTAssertEqual(parser.parse(all), .complete, "idempotent once complete")
        }
    }

    // MARK: pipelining

    func testPipelinedRequests() {
        let first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        let second = "GET /b HTTP/1.1\r\nHost: b\r\nX-1: 1\r\nX-2: 2\r\n\r\n"
        let raw = bytes(first + "abc" + second + "GET /c HT")
        var parser = RequestParser(limits: HTTP1Limits())
        raw.withUnsafeBytes { all in
            XCTAssertEqual(parser.parse(all), .complete)
            let head = parser.head
            XCTAssertEqual(head.headLength, bytes(first).count)
            XCTAssertEqual(head.framing, .contentLength(3))
            let capacity = parser.storage.headers.capacity
            let secondStart = head.headLength + 3
            parser.reset()
            let rest = UnsafeRawBufferPointer(rebasing: all[secondStart...])
            XCTAssertEqual(parser.parse(rest), .complete)
            let restBytes = Array(raw[secondStart...])
            XCTAssertEqual(text(restBytes, parser.head.target), "/b")
            XCTAssertEqual(text(restBytes, parser.head.host), "b")
            XCTAssertEqual(parser.head.headers.count, 3)
            XCTAssertEqual(parser.head.headLength, bytes(second).count)
            XCTAssertGreaterThanOrEqual(parser.storage.headers.capacity, capacity, "reset keeps capacity")
            let thirdStart = secondStart + parser.head.headLength
            parser.reset()
            XCTAssertEqual(parser.parse(UnsafeRawBufferPointer(rebasing: all[thirdStart...])), .incomplete)
        }
    }

    func testResetKeepsHeadersCapacity() {
        var parser = RequestParser(limits: HTTP1Limits())
        let raw = bytes("GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "X: 1\r\n", count: 90) + "\r\n")
        raw.withUnsafeBytes { XCTAssertEqual(parser.parse($0), .complete) }
        let capacity = parser.storage.headers.capacity
        XCTAssertGreaterThanOrEqual(capacity, 91)
        parser.reset()
        XCTAssertEqual(parser.storage.headers.capacity, capacity)
        XCTAssertEqual(parser.storage.headers.count, 0)
    }
}

extension ParseStatus {
    var status: Int? {
        switch self {
        case .failed(let e): return e.status
        case .incomplete, .complete: return nil
        }
    }
}

/// Deterministic generator so random-split failures are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
