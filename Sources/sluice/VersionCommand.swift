// `sluice version`: Sluice's version and those of the TLS and HTTP/2 libraries it is linked with.
import ArgumentParser
import CNGHTTP2
import COpenSSL

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the versions of Sluice, OpenSSL and nghttp2.")

    func run() {
        print("sluice \(Sluice.version)")
        print("openssl \(String(cString: OpenSSL_version(Int32(OPENSSL_VERSION))))")
        if let info = nghttp2_version(0) {
            print("nghttp2 \(String(cString: info.pointee.version_str))")
        }
    }
}
