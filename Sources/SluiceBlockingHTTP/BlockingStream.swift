// The byte stream under a blocking connection: the plain socket, or a layer a caller puts over it (TLS for the
// admin API), so that this module reads and writes through one interface and needs no TLS library of its own.

import Glibc

/// One accepted connection's bytes, read and written blocking.
public protocol BlockingStream: AnyObject {
    /// Up to `buffer.count` bytes; 0 at the end of the stream, nil on an error.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int?
    /// All of `bytes`, or false when the peer is gone.
    func write(_ bytes: [UInt8]) -> Bool
    /// Ends the layer over the socket (TLS: close_notify) before the server finishes and closes the socket.
    func close()
}

/// What a server puts over each accepted socket before reading requests from it.
public protocol BlockingTransport: Sendable {
    /// The stream for an accepted socket, after any handshake; nil to close the connection unanswered. The
    /// server closes the socket itself.
    func open(_ fd: Int32) -> BlockingStream?
}

/// The socket itself.
final class PlainStream: BlockingStream {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? { BlockingSocket.read(fd, into: buffer) }
    func write(_ bytes: [UInt8]) -> Bool { BlockingSocket.write(fd, bytes) }
    func close() {}
}
