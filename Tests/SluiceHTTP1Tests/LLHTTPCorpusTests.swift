// Replays the llhttp test corpus (Fixtures/llhttp-cases.json, MIT, nodejs/llhttp test/request and
// test/response) through Sluice's parsers and compares verdicts with llhttp's.
import Foundation
import XCTest
@testable import SluiceHTTP1

struct LLHTTPCase {
    var id: String
    var type: String
    var title: String
    var raw: [UInt8]
    var llhttpAccepts: Bool
    var lenient: Bool
    var error: String?

    var isResponse: Bool { type.hasPrefix("response") }

    /// llhttp reports `Pause on CONNECT/Upgrade` (HPE_PAUSED_UPGRADE) as an error code, but it means "the
    /// head was fine, the connection now speaks another protocol": a hand-off, not a rejection.
    var isUpgradeHandoff: Bool { error?.hasPrefix("Pause on") ?? false }
}

/// What Sluice made of a whole case: every message, bodies included, pipelined after `reset()`.
enum Replay: Equatable {
    case accepted(messages: Int)
    case rejected(HTTPParseError, message: Int)
    /// Input ended inside a head or body.
    case truncated(message: Int)

    static let dataAfterClose = HTTPParseError(status: 400, reason: "test.data_after_close")
}

/// `byteByByte` feeds every head one byte longer per call and the chunked decoder one byte per call,
/// the worst case of the proxy's reads; the outcome must not change.
func replay(_ c: LLHTTPCase, requireHost: Bool = true, byteByByte: Bool = false) -> Replay {
    let raw = c.raw
    var offset = 0
    var message = 0
    var requests = RequestParser(limits: HTTP1Limits())
    requests.requiresHost = requireHost
    var responses = ResponseParser(limits: HTTP1Limits())
    return raw.withUnsafeBytes { all -> Replay in
        while true {
            // Trailing empty lines after the last message are what RFC 9112 §2.2 lets a recipient ignore.
            if raw[offset...].allSatisfy({ $0 == 0x0D || $0 == 0x0A }) && message > 0 && onlyCRLF(raw[offset...]) {
                return .accepted(messages: message)
            }
            let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
            let framing: ResponseBodyFraming
            let keepAlive: Bool
            if c.isResponse {
                responses.reset()
                var status = ParseStatus.incomplete
                for end in (byteByByte ? 0 : rest.count)...rest.count where status == .incomplete {
                    status = responses.parse(UnsafeRawBufferPointer(rebasing: rest[0..<end]), requestWasHEAD: false)
                }
                switch status {
                case .incomplete: return .truncated(message: message)
                case .failed(let e): return .rejected(e, message: message)
                case .complete: break
                }
                let head = responses.head
                offset += head.headLength
                framing = head.framing
                keepAlive = head.keepAlive || head.status < 200
            } else {
                requests.reset()
                var status = ParseStatus.incomplete
                for end in (byteByByte ? 0 : rest.count)...rest.count where status == .incomplete {
                    status = requests.parse(UnsafeRawBufferPointer(rebasing: rest[0..<end]))
                }
                switch status {
                case .incomplete: return .truncated(message: message)
                case .failed(let e): return .rejected(e, message: message)
                case .complete: break
                }
                let head = requests.head
                offset += head.headLength
                switch head.framing {
                case .none: framing = .none
                case .contentLength(let n): framing = .contentLength(n)
                case .chunked: framing = .chunked
                }
                keepAlive = head.keepAlive
            }
            switch framing {
            case .none:
                break
            case .contentLength(let n):
                if raw.count - offset < n { return .truncated(message: message) }
                offset += n
            case .chunked:
                var decoder = ChunkedDecoder()
                decoding: while true {
                    let window = byteByByte ? min(offset + 1, raw.count) : raw.count
                    let (consumed, step) = decoder.next(UnsafeRawBufferPointer(rebasing: all[offset..<window]))
                    offset += consumed
                    switch step {
                    case .data: continue
                    case .needMore: if offset == raw.count { return .truncated(message: message) }
                    case .end: break decoding
                    case .failed(let e): return .rejected(e, message: message)
                    }
                }
            case .untilClose:
                return .accepted(messages: message + 1)
            }
            message += 1
            if offset == raw.count { return .accepted(messages: message) }
            // After a non-persistent message the proxy closes; more bytes are a protocol error
            // (llhttp: "Data after `Connection: close`").
            if !keepAlive {
                return onlyCRLF(raw[offset...]) ? .accepted(messages: message) : .rejected(Replay.dataAfterClose, message: message)
            }
        }
    }
}

func onlyCRLF(_ rest: ArraySlice<UInt8>) -> Bool {
    var i = rest.startIndex
    while i < rest.endIndex {
        guard rest[i] == 0x0D, i + 1 < rest.endIndex, rest[i + 1] == 0x0A else { return false }
        i += 2
    }
    return true
}

/// The lines of the first message head of each request in `raw`, roughly: used only by the rules below to
/// describe a case independently of the parser.
private func lines(_ raw: [UInt8]) -> [String] {
    String(decoding: raw, as: UTF8.self).split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        .map(String.init)
}

/// IANA HTTP Method Registry (without PRI), written out again here so the rule does not trust the parser.
let registeredMethods: Set<String> = [
    "ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET", "HEAD", "LABEL",
    "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL", "MKREDIRECTREF", "MKWORKSPACE", "MOVE",
    "OPTIONS", "ORDERPATCH", "PATCH", "POST", "PROPFIND", "PROPPATCH", "PUT", "QUERY", "REBIND", "REPORT",
    "SEARCH", "TRACE", "UNBIND", "UNCHECKOUT", "UNLINK", "UNLOCK", "UPDATE", "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
]

/// Where Sluice is deliberately stricter than llhttp. Each rule is a property of the case (its type, its
/// bytes, or that its input ends mid-message) and says why; nothing is keyed on case ids. The first
/// matching rule names the reason. Only consulted when llhttp accepted and Sluice did not.
func sluiceIsStricter(_ c: LLHTTPCase) -> String? {
    sluiceIsStricter(c, requireHost: true)
}

/// The Host rule is credited only when Sluice's rejection is the missing Host; the test then replays the
/// case without the Host requirement and checks the rest of it on its own merits.
let missingHostRule = "HTTP/1.1 request without Host: 400 (RFC 9112 §3.2 MUST)"

func sluiceIsStricter(_ c: LLHTTPCase, requireHost: Bool) -> String? {
    let raw = c.raw
    let all = String(decoding: raw, as: UTF8.self)
    let lowered = all.lowercased()
    let textLines = lines(raw)
    let startLines = textLines.filter { line in
        c.isResponse ? line.hasPrefix("HTTP/") || line.hasPrefix("RTSP/") || line.hasPrefix("ICE/")
            : line.split(separator: " ").count == 3 && line.split(separator: " ")[0].allSatisfy { $0.isUppercase || $0 == "-" }
    }
    if raw.contains(Array("```".utf8)) {
        return "fixture artifact: raw bytes contain Markdown from the next llhttp test section, llhttp's verdict is for that section"
    }
    if c.lenient {
        return "llhttp accepts this only with a leniency flag; Sluice has no lenient mode (hardening.md §3.4: strict everywhere)"
    }
    // Bare LF: a "\n" not preceded by "\r".
    if raw.indices.contains(where: { raw[$0] == 0x0A && ($0 == 0 || raw[$0 - 1] != 0x0D) }) {
        return "bare LF line terminator: rejected, never guessed (RFC 9112 §2.2 MAY accept; a gateway re-serialises)"
    }
    if startLines.contains(where: { $0.hasSuffix(" RTSP/1.0") || $0.hasSuffix(" ICE/1.0") || $0.hasPrefix("RTSP/") || $0.hasPrefix("ICE/") }) {
        return "not HTTP: RTSP/ICE start lines are other protocols llhttp also parses"
    }
    if startLines.contains(where: { $0.hasPrefix("CONNECT ") || $0.hasPrefix("PRI ") }) {
        return "CONNECT / PRI: the gateway does not tunnel (501) and does not take h2 prior knowledge on an HTTP/1 port"
    }
    if !c.isResponse, startLines.contains(where: { !registeredMethods.contains(String($0.split(separator: " ")[0])) }) {
        return "method not in the IANA HTTP Method Registry (PURGE, M-SEARCH, SOURCE…): 501 (RFC 9110 §9.1)"
    }
    let oldVersion = c.isResponse
        ? startLines.contains { !$0.hasPrefix("HTTP/1.1 ") && !$0.hasPrefix("HTTP/1.0 ") }
        : textLines.contains { line in
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1].hasPrefix("/")
        }
    if oldVersion {
        return "HTTP version other than 1.0/1.1 (HTTP/0.9 style): 505/400"
    }
    if !c.isResponse {
        let http11Requests = startLines.filter { $0.hasSuffix(" HTTP/1.1") }.count
        let hostLines = textLines.filter { $0.lowercased().hasPrefix("host:") }.count
        if requireHost, hostLines < http11Requests,
            case .rejected(let e, _) = replay(c), e.reason == HTTPParseReason.missingHost
        {
            return missingHostRule
        }
        if startLines.contains(where: { $0.hasSuffix(" HTTP/1.0") }) && lowered.contains("\ntransfer-encoding:") {
            return "Transfer-Encoding on HTTP/1.0: 400 (RFC 9112 §6.1 faulty framing)"
        }
        if startLines.contains(where: { line in line.split(separator: " ")[1].contains("@") }) {
            return "userinfo in absolute-form: 400 (RFC 9110 §4.2.4)"
        }
    }
    if case .truncated = replay(c, requireHost: requireHost) {
        return "input ends mid-message: llhttp's verdict comes from llhttp_execute without llhttp_finish, which cannot see a truncation; Sluice reports .incomplete"
    }
    return nil
}

final class LLHTTPCorpusTests: XCTestCase {
    func loadCases() throws -> [LLHTTPCase] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "llhttp-cases", withExtension: "json", subdirectory: "Fixtures"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        return try cases.map { c in
            let b64 = try XCTUnwrap(c["raw_b64"] as? String)
            return LLHTTPCase(
                id: try XCTUnwrap(c["id"] as? String),
                type: try XCTUnwrap(c["type"] as? String),
                title: c["title"] as? String ?? "",
                raw: [UInt8](try XCTUnwrap(Data(base64Encoded: b64))),
                llhttpAccepts: (c["llhttp"] as? String) == "accept",
                lenient: c["lenient"] as? Bool ?? false,
                error: c["error"] as? String)
        }
    }

    func testCorpusVerdictsAgreeOrAreStricterByRule() throws {
        let cases = try loadCases()
        XCTAssertGreaterThan(cases.count, 200)
        var agree = 0
        var stricter: [String: Int] = [:]
        var unexplained: [String] = []
        var alsoStricter: [String: Int] = [:]
        for c in cases {
            XCTAssert(c.type.hasPrefix("request") || c.type.hasPrefix("response"), c.type)
            let outcome = replay(c)
            XCTAssertEqual(replay(c, byteByByte: true), outcome, "\(c.id): byte-by-byte feeding changed the outcome")
            let sluiceAcceptsAll: Bool
            let sluiceAcceptsFirst: Bool
            switch outcome {
            case .accepted: sluiceAcceptsAll = true; sluiceAcceptsFirst = true
            case .rejected(_, let m), .truncated(let m): sluiceAcceptsAll = false; sluiceAcceptsFirst = m > 0
            }
            let llhttpAccepts = c.llhttpAccepts || c.isUpgradeHandoff
            // For an upgrade hand-off only the message before the hand-off is HTTP; the rest is not ours.
            let sluiceAccepts = c.isUpgradeHandoff ? sluiceAcceptsFirst : sluiceAcceptsAll
            if llhttpAccepts == sluiceAccepts {
                agree += 1
            } else if llhttpAccepts, let rule = sluiceIsStricter(c) {
                stricter[rule, default: 0] += 1
                if rule == missingHostRule {
                    // The rest of the case must still agree with llhttp, or fall under another rule.
                    let accepted: Bool
                    switch replay(c, requireHost: false) {
                    case .accepted: accepted = true
                    case .rejected(_, let m), .truncated(let m): accepted = c.isUpgradeHandoff && m > 0
                    }
                    if !accepted, sluiceIsStricter(c, requireHost: false) == nil {
                        unexplained.append("\(c.id) without the Host requirement: \(replay(c, requireHost: false))")
                    } else if !accepted {
                        alsoStricter[sluiceIsStricter(c, requireHost: false)!, default: 0] += 1
                    }
                }
            } else {
                unexplained.append("\(c.id) [\(c.type)] \(c.title): llhttp \(c.llhttpAccepts ? "accept" : "error: \(c.error ?? "")"), sluice \(outcome)")
            }
        }
        XCTAssertEqual(unexplained.count, 0, "disagreements without a rule:\n" + unexplained.joined(separator: "\n"))
        print("llhttp corpus: \(cases.count) cases, agree \(agree), stricter by rule \(stricter.values.reduce(0, +)), unexplained \(unexplained.count)")
        for (rule, count) in stricter.sorted(by: { $0.value > $1.value }) {
            print("  \(count) × \(rule)")
        }
        for (rule, count) in alsoStricter.sorted(by: { $0.value > $1.value }) {
            print("  of the missing-Host cases, without the Host requirement: \(count) × \(rule)")
        }
    }
}
