// Proxy layer: a connection's transport — plain TCP, or TLS over it — in one place for every connection type (the
// HTTP/1.1 and HTTP/2 client connections, the HTTP/1.1 and HTTP/2 pod connections): the handshake, reads and
// writes, the one "socket drained" rule that edge-triggered reading depends on, half-close (our FIN after TLS
// close_notify) and close. The protocol connections above never touch the fd's bytes.
import SluiceIO
import SluiceTLS

struct Transport {
    let fd: Int32
    /// The TLS session: a TLS listener's client, or an https:// or h2:// pod (nil after `shutdownWrite`: what follows
    /// is read raw and dropped).
    private(set) var tls: TLSSession?
    /// The connection runs over TLS (stays true after the session is shut down).
    let isTLS: Bool

    init(fd: Int32, tls: TLSSession?) {
        self.fd = fd
        self.tls = tls
        self.isTLS = tls != nil
    }

    /// TLS only: the next handshake step (nil on a plain connection, which has none).
    func handshake() -> TLSSession.HandshakeResult? { tls?.handshake() }

    /// Reads once into `buffer`'s free room, at most `limit` bytes.
    @inline(__always) func read(into buffer: ByteBuffer, limit: Int) -> IOResult {
        if let tls { return tls.read(into: buffer, limit: limit) }
        return buffer.read(from: fd, limit: limit)
    }

    /// Whether a read that returned `count` of the `wanted` bytes proves that nothing more is waiting, so that
    /// edge-triggered reading may stop until the next edge. A short plain read does. A short TLS read does not (the
    /// record may have ended mid-buffer): TLS stops only when neither OpenSSL nor the socket holds a byte.
    @inline(__always) func isDrained(afterReading count: Int, of wanted: Int) -> Bool {
        count < wanted && (tls == nil || tls!.isDrained)
    }

    /// A TLS read stopped because OpenSSL had to write first (KeyUpdate): room to write is also read progress.
    var readWaitsForWritable: Bool { tls?.readWantsWritable ?? false }

    /// Writes `buffer`'s unread bytes once, consuming what went out.
    @inline(__always) func write(from buffer: ByteBuffer) -> IOResult {
        if let tls { return tls.write(from: buffer) }
        return buffer.write(to: fd)
    }

    /// Ends our direction: TLS close_notify, then FIN (shutdown SHUT_WR). Reads go on, raw, for a lingering close.
    mutating func shutdownWrite() {
        tls?.close(clean: true)
        tls = nil
        try? Posix.shutdown(fd, .write)  // ENOTCONN when the peer is gone already: then there is nothing to end
    }

    /// Hands the session to another owner (the protocol hand-over); this transport must not be used afterwards.
    mutating func handOver() -> Transport {
        let moved = self
        tls = nil
        return moved
    }

    /// Closes the fd. `clean`: between responses, TLS says close_notify; an aborted response must not.
    mutating func close(clean: Bool) {
        tls?.close(clean: clean)
        tls = nil
        Posix.close(fd)
    }
}
