// Control layer: TLS on the admin listener (adminTLS), so that the bearer token is not sent in clear — and
// because kubectl sends a kubeconfig's token only over https (client-go reads a user's credentials for TLS
// transports only): without it a token-guarded admin API answers kubectl 401 whatever its kubeconfig says.
import SluiceBlockingHTTP
import SluiceTLS

public struct AdminTLS: BlockingTransport {
    let context: TLSContext

    /// Loads and checks the pair now, so that a bad file stops the start with its reason.
    public init(_ files: TLSCertificateFiles) throws(TLSContextError) {
        context = try TLSContext(certificates: [files])
    }

    public func open(_ fd: Int32) -> BlockingStream? {
        BlockingTLSSession(fd: fd, context: context).map(AdminTLSStream.init)
    }
}

final class AdminTLSStream: BlockingStream {
    let session: BlockingTLSSession
    init(_ session: BlockingTLSSession) { self.session = session }
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int? { session.read(into: buffer) }
    func write(_ bytes: [UInt8]) -> Bool { session.write(bytes) }
    func close() { session.close() }
}
