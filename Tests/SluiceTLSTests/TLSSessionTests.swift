// Unit tests of TLSContext / TLSSession (server) and TLSClientContext (client) with no gateway: both ends of a
// non-blocking socket pair on one thread, stepped in turn; certificates made at test time.
import COpenSSL
import SluiceIO
import SluiceTLS
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class TLSSessionTests: XCTestCase {
    private var certificates: TestCertificates!
    private var a: TLSCertificateFiles!
    private var b: TLSCertificateFiles!

    override func setUpWithError() throws {
        // As the gateway does at start: OpenSSL may write an alert to a peer that has gone, and that must not kill
        // the test process (the socket BIO writes with write(2), not send(MSG_NOSIGNAL)).
        Posix.ignoreSIGPIPE()
        certificates = try TestCertificates()
        a = try certificates.make("a", dnsNames: ["a.test"])
        b = try certificates.make("b", dnsNames: ["b.test", "*.b.test"])
    }

    override func tearDown() {
        certificates = nil
    }

    // MARK: Handshake

    func testAHandshakeRunsStepByStepUntilBothSidesAreDone() throws {
        let pair = SocketPair()
        let context = try TLSContext(certificates: [a])
        let server = try XCTUnwrap(TLSSession(fd: pair.server, context: context))
        let client = try XCTUnwrap(TLSSession(fd: pair.client, clientContext: TLSClientContext(caFile: a.cert), peer: .dns("a.test")))
        XCTAssertFalse(server.isEstablished)
        XCTAssertEqual(server.handshake(), .wantRead, "nothing has arrived yet")
        XCTAssertEqual(client.handshake(), .wantRead, "ClientHello sent; waiting for the server's flight")
        XCTAssertEqual(server.handshake(), .wantRead, "ServerHello…Finished sent; waiting for the client's Finished")
        XCTAssertEqual(client.handshake(), .done(.http11))
        XCTAssertEqual(server.handshake(), .done(.http11))
        XCTAssertTrue(server.isEstablished)
        XCTAssertTrue(client.isEstablished)
        XCTAssertEqual(server.applicationProtocol, .http11)
        XCTAssertTrue(server.context === context, "a server session keeps its generation")
        XCTAssertNil(client.context)
    }

    func testAClientRefusesAServerItsCADoesNotVouchFor() throws {
        let pair = SocketPair()
        let server = try XCTUnwrap(TLSSession(fd: pair.server, context: TLSContext(certificates: [a])))
        let client = try XCTUnwrap(TLSSession(fd: pair.client, clientContext: TLSClientContext(caFile: b.cert), peer: .dns("a.test")))
        let (_, clientResult) = handshake(server, client)
        guard case .failed(let reason) = clientResult else { return XCTFail("\(clientResult)") }
        XCTAssertTrue(reason.hasPrefix("certificate verify failed"), reason)
        XCTAssertFalse(client.isEstablished)
    }

    func testTLS11IsRefusedAndTLS12Accepted() throws {
        let context = try TLSContext(certificates: [a])
        let old = SocketPair()
        let oldServer = try XCTUnwrap(TLSSession(fd: old.server, context: context))
        let oldClient = RawTLSClient(fd: old.client, maxVersion: TLS1_1_VERSION)
        let (serverResult, clientStep) = handshake(oldServer, oldClient)
        // The server saw the TLS 1.1 ClientHello (a failure, not a wait) and refused it (RFC 8996).
        guard case .failed(let reason) = serverResult else { return XCTFail("\(serverResult)") }
        XCTAssertTrue(reason.contains("unsupported protocol"), reason)
        XCTAssertNotEqual(clientStep, .done)
        XCTAssertFalse(oldServer.isEstablished)

        let tls12 = SocketPair()
        let server12 = try XCTUnwrap(TLSSession(fd: tls12.server, context: context))
        let client12 = RawTLSClient(fd: tls12.client, maxVersion: TLS1_2_VERSION)
        XCTAssertEqual(handshake(server12, client12).server, .done(.http11))
        XCTAssertEqual(client12.version, TLS1_2_VERSION)
    }

    // MARK: ALPN

    func testALPNChoosesH2OnlyWhenOfferedAndEnabled() throws {
        let h2Enabled = try TLSContext(certificates: [a], offerH2: true)
        let h1Only = try TLSContext(certificates: [a], offerH2: false)
        XCTAssertEqual(h2Enabled.protocols, [.h2, .http11])
        XCTAssertEqual(h1Only.protocols, [.http11])
        let cases: [(TLSContext, [String], ApplicationProtocol, String?)] = [
            (h2Enabled, ["h2", "http/1.1"], .h2, "h2"),
            (h2Enabled, ["http/1.1", "h2"], .h2, "h2"),          // server preference
            (h2Enabled, ["http/1.1"], .http11, "http/1.1"),
            (h1Only, ["h2", "http/1.1"], .http11, "http/1.1"),   // h2 offered but not enabled
            (h1Only, ["h2"], .http11, nil),                      // no overlap: no ALPN (RFC 7301 §3.2), HTTP/1.1
            (h2Enabled, [], .http11, nil),                       // no ALPN at all
        ]
        for (context, offer, expected, selected) in cases {
            let pair = SocketPair()
            let server = try XCTUnwrap(TLSSession(fd: pair.server, context: context))
            let client = RawTLSClient(fd: pair.client, alpn: offer)
            XCTAssertEqual(handshake(server, client).server, .done(expected), "offer \(offer)")
            XCTAssertEqual(client.selectedProtocol, selected, "offer \(offer)")
        }
    }

    func testAnH2ClientContextNegotiatesH2WithAnH2Server() throws {
        let pair = SocketPair()
        let server = try XCTUnwrap(TLSSession(fd: pair.server, context: TLSContext(certificates: [a], offerH2: true)))
        let client = try XCTUnwrap(TLSSession(fd: pair.client, clientContext: TLSClientContext(caFile: a.cert, offer: .h2), peer: .dns("a.test")))
        let (serverResult, clientResult) = handshake(server, client)
        XCTAssertEqual(serverResult, .done(.h2))
        XCTAssertEqual(clientResult, .done(.h2))
    }

    // MARK: SNI

    func testSNIPicksTheMatchingCertificateAndUnknownNamesGetTheFirst() throws {
        let context = try TLSContext(certificates: [a, b])
        let cases: [(String?, String)] = [("b.test", "b.test"), ("x.b.test", "b.test"), ("a.test", "a.test"), ("other.test", "a.test"), (nil, "a.test")]
        for (name, served) in cases {
            let pair = SocketPair()
            let server = try XCTUnwrap(TLSSession(fd: pair.server, context: context))
            let client = RawTLSClient(fd: pair.client, serverName: name)
            XCTAssertEqual(handshake(server, client).server, .done(.http11), "SNI \(name ?? "none")")
            XCTAssertEqual(client.peerCommonName, served, "SNI \(name ?? "none")")
        }
        // The verifying client sends SNI too: trusting only b, it gets through for b.test and not for a.test.
        let trustB = try TLSClientContext(caFile: b.cert)
        for (name, passes) in [("b.test", true), ("a.test", false)] {
            let pair = SocketPair()
            let server = try XCTUnwrap(TLSSession(fd: pair.server, context: context))
            let client = try XCTUnwrap(TLSSession(fd: pair.client, clientContext: trustB, peer: .dns(name)))
            let result = handshake(server, client).client
            XCTAssertEqual(result == .done(.http11), passes, "\(name): \(result)")
        }
    }

    // MARK: Application data

    func testApplicationDataFlowsBothWaysThroughByteBuffers() throws {
        let (pair, server, client) = try established()
        XCTAssertEqual(transfer(Array("POST /v1/models/m:predict".utf8), from: client, to: server), Array("POST /v1/models/m:predict".utf8))
        XCTAssertEqual(transfer(Array("HTTP/1.1 200 OK".utf8), from: server, to: client), Array("HTTP/1.1 200 OK".utf8))
        // Nothing more: both reads say so without blocking.
        let buffer = ByteBuffer(capacity: 1024)
        XCTAssertEqual(server.read(into: buffer, limit: 1024), .wouldBlock)
        XCTAssertEqual(client.read(into: buffer, limit: 1024), .wouldBlock)
        _ = pair
    }

    func testIsDrainedOnlyOnceOpenSSLAndTheSocketAreBothEmpty() throws {
        let (pair, server, client) = try established()
        let sent = (0..<40_960).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let out = ByteBuffer(capacity: sent.count)
        out.append(sent)
        for _ in 0..<20 where !out.isEmpty { _ = client.write(from: out) }
        XCTAssertTrue(out.isEmpty, "the socket pair holds 40 KB")

        let buffer = ByteBuffer(capacity: 1 << 16)
        // The first 16 KB: OpenSSL (and the socket) still hold the rest, so not drained.
        XCTAssertEqual(server.read(into: buffer, limit: 16_384), .bytes(16_384))
        XCTAssertFalse(server.isDrained)
        var results: [IOResult] = []
        for _ in 0..<10 where buffer.readableBytes < sent.count {
            results.append(server.read(into: buffer, limit: 16_384))
            if server.isDrained {
                XCTAssertEqual(buffer.readableBytes, sent.count, "drained with bytes still to come: \(results)")
                XCTAssertEqual(SocketPair.unread(pair.server), 0, "drained while the socket holds bytes")
            }
        }
        XCTAssertEqual(Array(buffer.readable), sent)
        XCTAssertLessThan(results.count, 10)
        // The last read was short and proved both empty: the caller may wait for the next edge at once.
        XCTAssertTrue(server.isDrained, "\(results)")
        XCTAssertEqual(server.read(into: buffer, limit: 16_384), .wouldBlock)
        XCTAssertFalse(server.isDrained, "a read that found nothing makes no claim")
    }

    // MARK: Closing

    func testACleanCloseSendsCloseNotifyAndThePeerReadsTheEnd() throws {
        let (pair, server, client) = try established()
        server.close(clean: true)
        pair.closeServer()
        let buffer = ByteBuffer(capacity: 1024)
        XCTAssertEqual(readEnd(client, buffer), .endOfFile)
        XCTAssertEqual(server.read(into: buffer, limit: 1024), .failed(EBADF), "a closed session reads nothing")
    }

    func testAnAbortedCloseSendsNoCloseNotify() throws {
        let (pair, server, client) = try established()
        server.close(clean: false)
        pair.closeServer()
        let buffer = ByteBuffer(capacity: 1024)
        // A TCP close without close_notify: a truncation the client can tell from a complete response.
        let end = readEnd(client, buffer)
        guard case .failed = end else { return XCTFail("\(end)") }
    }

    // MARK: Resumption

    func testASessionResumesByTicketOnASecondConnectionAndAcrossContextGenerations() throws {
        let context = try TLSContext(certificates: [a])
        for version in [TLS1_3_VERSION, TLS1_2_VERSION] {
            let first = SocketPair()
            let server1 = try XCTUnwrap(TLSSession(fd: first.server, context: context))
            let client1 = RawTLSClient(fd: first.client, maxVersion: version, serverName: "a.test")
            XCTAssertEqual(handshake(server1, client1).server, .done(.http11))
            XCTAssertFalse(client1.isResumed)
            // TLS 1.3 tickets come after the handshake: read some application data to take them in.
            let hello = ByteBuffer(capacity: 16)
            hello.append(Array("hello".utf8))
            XCTAssertEqual(server1.write(from: hello), .bytes(5))
            XCTAssertEqual(client1.read().bytes, Array("hello".utf8))
            XCTAssertTrue(client1.hasResumableSession, "no ticket arrived (version \(version))")
            let saved = try XCTUnwrap(client1.savedSession)
            defer { SSL_SESSION_free(saved) }

            // Same context, then a new generation (a reload): ticket keys are the process's, so both resume.
            for serverContext in [context, try TLSContext(certificates: [a])] {
                let again = SocketPair()
                let server = try XCTUnwrap(TLSSession(fd: again.server, context: serverContext))
                let client = RawTLSClient(fd: again.client, maxVersion: version, serverName: "a.test", session: saved)
                XCTAssertEqual(handshake(server, client).server, .done(.http11))
                XCTAssertTrue(client.isResumed, "version \(version), same context: \(serverContext === context)")
                XCTAssertEqual(client.version, version)
            }
        }
    }

    // MARK: Helpers

    /// A server and a verifying client session, handshake done, on a fresh socket pair.
    private func established() throws -> (SocketPair, TLSSession, TLSSession) {
        let pair = SocketPair()
        let server = try XCTUnwrap(TLSSession(fd: pair.server, context: TLSContext(certificates: [a])))
        let client = try XCTUnwrap(TLSSession(fd: pair.client, clientContext: TLSClientContext(caFile: a.cert), peer: .dns("a.test")))
        let results = handshake(server, client)
        XCTAssertEqual(results.server, .done(.http11))
        XCTAssertEqual(results.client, .done(.http11))
        return (pair, server, client)
    }

    private func isFinal(_ result: TLSSession.HandshakeResult) -> Bool {
        switch result {
        case .done, .failed: true
        case .wantRead, .wantWrite: false
        }
    }

    /// Steps both sides in turn until both finish or one fails (at most 20 rounds: a handshake takes 3).
    private func handshake(_ server: TLSSession, _ client: TLSSession) -> (server: TLSSession.HandshakeResult, client: TLSSession.HandshakeResult) {
        var s = TLSSession.HandshakeResult.wantRead
        var c = TLSSession.HandshakeResult.wantRead
        for _ in 0..<20 {
            if !isFinal(s) { s = server.handshake() }
            if !isFinal(c) { c = client.handshake() }
            if isFinal(s) && isFinal(c) { break }
        }
        return (s, c)
    }

    private func handshake(_ server: TLSSession, _ client: RawTLSClient) -> (server: TLSSession.HandshakeResult, client: RawTLSClient.Step) {
        var s = TLSSession.HandshakeResult.wantRead
        var c = RawTLSClient.Step.wants
        for _ in 0..<20 {
            if c == .wants { c = client.handshake() }
            if !isFinal(s) { s = server.handshake() }
            if isFinal(s) && c != .wants { break }
        }
        return (s, c)
    }

    /// Writes `bytes` from one side and reads them on the other (bounded loops, no waiting).
    private func transfer(_ bytes: [UInt8], from writer: TLSSession, to reader: TLSSession) -> [UInt8] {
        let out = ByteBuffer(capacity: bytes.count)
        out.append(bytes)
        for _ in 0..<10 where !out.isEmpty { XCTAssertNotEqual(writer.write(from: out), .endOfFile) }
        let buffer = ByteBuffer(capacity: 1 << 16)
        for _ in 0..<10 where buffer.readableBytes < bytes.count {
            if case .failed(let e) = reader.read(into: buffer, limit: 1 << 16) { XCTFail("read failed: errno \(e)"); break }
        }
        return Array(buffer.readable)
    }

    /// Reads until something other than bytes or a wait (TLS 1.3 tickets may come first).
    private func readEnd(_ session: TLSSession, _ buffer: ByteBuffer) -> IOResult {
        for _ in 0..<10 {
            buffer.clear()
            let result = session.read(into: buffer, limit: buffer.capacity)
            if case .bytes = result { continue }
            if result != .wouldBlock { return result }
        }
        return .wouldBlock
    }
}
