// `sluice version`: Sluice's version and those of the TLS and HTTP/2 libraries it is linked with.
import ArgumentParser
import CNGHTTP2
import COpenSSL

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the versions of Sluice, OpenSSL and nghttp2.")

    func run() {
        print("sluice \(Sluice.version)")
        for (library, version) in Self.libraryVersions { print("\(library) \(version)") }
    }

    /// The TLS and HTTP/2 libraries this process runs with (also in `sluice serve`'s start event).
    static var libraryVersions: [(String, String)] {
        var versions = [("openssl", String(cString: OpenSSL_version(Int32(OPENSSL_VERSION))))]
        if let info = nghttp2_version(0) { versions.append(("nghttp2", String(cString: info.pointee.version_str))) }
        return versions
    }
}
