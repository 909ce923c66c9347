// `sluice kubeconfig`: prints a kubeconfig for the admin API (cluster with its CA when TLS, bearer token, context
// with its namespace),
// so that `KUBECONFIG=file kubectl get isvc` talks to this gateway with no flags.
import ArgumentParser
import Foundation
import SluiceProxy

struct KubeconfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kubeconfig",
        abstract: "Print a kubeconfig for kubectl and Kubernetes clients: sluice kubeconfig > sluice.kubeconfig; KUBECONFIG=sluice.kubeconfig kubectl get isvc")

    @Option(name: .long, help: "The admin API's address, IP:port (as given to serve --admin).")
    var admin: String = ProxySettings().admin.description

    @Option(name: .long, help: "A file holding the admin bearer token (the serve's adminTokenFile); without it the user has no credentials.")
    var tokenFile: String?

    @Option(name: .long, help: "The CA certificate (PEM) that signed the admin API's TLS certificate (serve's adminTLS): the server is https, the CA embedded as certificate-authority-data.")
    var certificateAuthority: String?

    @Option(name: .long, help: "The context's default namespace.")
    var namespace: String = "default"

    @Option(name: .long, help: "The name of the context (and of its cluster and user).")
    var context: String = "sluice"

    func run() throws {
        guard let address = parseAddress(admin) else { throw ValidationError("--admin: expected IP:port, got \(admin)") }
        var token: String? = nil
        if let tokenFile {
            let text: String
            do { text = try String(contentsOfFile: tokenFile, encoding: .utf8) } catch {
                throw ValidationError("--token-file \(tokenFile): \(error.localizedDescription)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token?.isEmpty == false else { throw ValidationError("--token-file \(tokenFile) is empty") }
        }
        var authority: Data? = nil
        if let certificateAuthority {
            do { authority = try Data(contentsOf: URL(fileURLWithPath: certificateAuthority)) } catch {
                throw ValidationError("--certificate-authority \(certificateAuthority): \(error.localizedDescription)")
            }
        }
        // kubectl sends the token only over https (client-go reads a user's credentials for TLS transports only).
        let scheme = authority == nil ? "http" : "https"
        print(Self.render(server: "\(scheme)://\(address)", authority: authority, token: token, namespace: namespace, context: context),
              terminator: "")
    }

    /// The kubeconfig (clientcmd's v1 Config) as YAML. Every string is written as a JSON string, which is a valid
    /// YAML double-quoted scalar: a token or name of any bytes cannot change the document's structure.
    static func render(server: String, authority: Data?, token: String?, namespace: String, context: String) -> String {
        let name = quoted(context)
        let ca = authority.map { "\n    certificate-authority-data: \(quoted($0.base64EncodedString()))" } ?? ""
        let user = token.map { "\n    token: \(quoted($0))" } ?? " {}"
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: \(name)
              cluster:
                server: \(quoted(server))\(ca)
            users:
            - name: \(name)
              user:\(user)
            contexts:
            - name: \(name)
              context:
                cluster: \(name)
                user: \(name)
                namespace: \(quoted(namespace))
            current-context: \(name)
            preferences: {}

            """
    }

    static func quoted(_ text: String) -> String {
        // YAML has no `\/` escape: slashes stay as they are. Encoding a String cannot fail.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: (try? encoder.encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
}
