// `sluice apply | get | describe | delete | rollout status|pause|resume|abort`: kubectl's workflow for InferenceServices, over the admin API.
import ArgumentParser
import Foundation
import SluiceBlockingHTTP
import SluiceControl
import SluiceRouting
import Yams

/// Where the admin API is and how to authenticate, shared by every admin command.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The admin API, http://IP:PORT.")
    var server: String = "http://127.0.0.1:15000"

    @Option(name: .shortAndLong, help: "The namespace.")
    var namespace: String = "default"

    @Option(name: .long, help: "A file holding the admin bearer token (or set SLUICE_TOKEN).")
    var tokenFile: String?

    func client() throws -> BlockingClient {
        var rest = Substring(server)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let address = parseAddress(String(rest)) else { throw ValidationError("--server: expected http://IP:PORT, got \(server)") }
        return BlockingClient(host: address.host, port: address.port, timeoutMilliseconds: 30_000)
    }

    func headers() throws -> [(String, String)] {
        var token = ProcessInfo.processInfo.environment["SLUICE_TOKEN"]
        if let tokenFile {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return token.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    /// One admin call; a Kubernetes Status failure becomes an error with its message, as kubectl prints it.
    /// `base`: the API group's path the resource is under (InferenceServices' unless given). The server's warnings
    /// (a stale answer while etcd is unreachable, a field validation warning) go to stderr as kubectl prints them.
    func call(_ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil,
              base: String = AdminAPI.prefix) throws -> (BlockingResponse, JSONValue?) {
        var headers = try headers()
        if let contentType { headers.append(("Content-Type", contentType)) }
        let response: BlockingResponse
        let client = try client()
        do {
            response = try client.send(method: method, path: base + path, headers: headers, body: body)
        } catch {
            throw CLIFailure("The connection to the server \(server) was refused or failed: \(error.description)")
        }
        for (name, value) in response.headers where name.lowercased() == "warning" {
            // `299 - "text"` → `Warning: text`
            var text = Substring(value)
            if text.hasPrefix("299 - \""), text.hasSuffix("\"") { text = text.dropFirst(7).dropLast() }
            FileHandle.standardError.write(Data("Warning: \(text)\n".utf8))
        }
        let json = JSONValue.parse(response.body)
        guard response.status < 300 else {
            let message = json?["message"]?.stringValue ?? String(decoding: response.body, as: UTF8.self)
            // kubectl prints validation errors bare and everything else behind "Error from server".
            if json?["reason"]?.stringValue == "Invalid" { throw CLIFailure(message, prefix: "") }
            throw CLIFailure("Error from server (\(json?["reason"]?.stringValue ?? "\(response.status)")): \(message)")
        }
        return (response, json)
    }
}

/// The one resource type the admin commands know, under kubectl's names for it.
func requireInferenceServiceKind(_ kind: String) throws {
    guard ["isvc", "inferenceservice", "inferenceservices"].contains(kind) else { throw CLIFailure("the server doesn't have a resource type \"\(kind)\"") }
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String, prefix: String = "error: ") {
        description = message.hasPrefix("Error from server") ? message : prefix + message
    }
}

/// Prints an error as kubectl does and exits 1.
func runAdmin(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let failure as CLIFailure {
        FileHandle.standardError.write(Data((failure.description + "\n").utf8))
        throw ExitCode(1)
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Create or update InferenceServices from YAML or JSON manifests.")
    @OptionGroup var admin: AdminOptions
    @Option(name: .shortAndLong, help: "The manifest file, or - for standard input.")
    var filename: String

    func run() throws {
        try runAdmin {
            let data: Data
            if filename == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                guard let read = FileManager.default.contents(atPath: filename) else { throw CLIFailure("the path \"\(filename)\" does not exist") }
                data = read
            }
            let (response, _) = try admin.call("PUT", "/namespaces/\(admin.namespace)/inferenceservices",
                                               body: Array(data), contentType: "application/yaml")
            let results = response.headers.first { $0.0.lowercased() == "sluice-apply-result" }?.1 ?? ""
            for entry in results.split(separator: ",") {
                let parts = entry.split(separator: "=")
                guard parts.count == 2 else { continue }
                let name = parts[0].split(separator: "/").last ?? parts[0]
                print("inferenceservice.serving.kserve.io/\(name) \(parts[1])")
            }
        }
    }
}

struct GetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show InferenceServices (isvc) or a service's revisions.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc | inferenceservice(s) | revisions | gateways") var kind: String
    @Argument(help: "The InferenceService's name.") var name: String?
    @Flag(name: [.customShort("A"), .long], help: "All namespaces.") var allNamespaces = false
    @Option(name: .shortAndLong, help: "Output: wide | json | yaml.") var output: String?

    func run() throws {
        try runAdmin {
            switch kind {
            case "isvc", "inferenceservice", "inferenceservices":
                try showServices()
            case "gateways", "gateway", "gw":
                let (_, json) = try admin.call("GET", "", base: AdminAPI.gatewaysPath)
                if output == "json" { print(json?.jsonText ?? "{}"); return }
                print(Self.gatewayTable(json?["items"]?.arrayValue ?? [], now: Date()), terminator: "")
            case "revisions", "revision", "rev":
                guard let name else { throw CLIFailure("get revisions needs the InferenceService's name") }
                let (_, json) = try admin.call("GET", "/namespaces/\(admin.namespace)/inferenceservices/\(name)/revisions")
                if output == "json" { print(json?.jsonText ?? "[]"); return }
                let rows = (json?.arrayValue ?? []).compactMap(RevisionRow.init(json:))
                print(RevisionRow.render(rows, now: Date()), terminator: rows.isEmpty ? "" : "\n")
            default:
                throw CLIFailure("the server doesn't have a resource type \"\(kind)\"")
            }
        }
    }

    /// The replicas as `kubectl get` would print them: the etcd revision each serves, side by side.
    static func gatewayTable(_ items: [JSONValue], now: Date) -> String {
        let rows = items.map { item -> [String] in
            let status = item["status"] ?? .null
            let age = status["startedAt"]?.stringValue.flatMap(KubectlText.date(fromTimestamp:)).map { KubectlText.age(from: $0, to: now) } ?? "<unknown>"
            return [status["name"]?.stringValue ?? "", status["listen"]?.stringValue ?? "", status["admin"]?.stringValue ?? "",
                    status["version"]?.stringValue ?? "", status["revision"].map { "\($0.intValue ?? 0)" } ?? "",
                    status["generation"].map { "\($0.intValue ?? 0)" } ?? "", status["leader"]?.boolValue == true ? "true" : "false", age]
        }
        return KubectlText.table([["NAME", "LISTEN", "ADMIN", "VERSION", "REVISION", "GENERATION", "LEADER", "AGE"]] + rows)
    }

    private func showServices() throws {
        let path: String
        if allNamespaces { path = "/inferenceservices" } else if let name { path = "/namespaces/\(admin.namespace)/inferenceservices/\(name)" } else { path = "/namespaces/\(admin.namespace)/inferenceservices" }
        let (_, json) = try admin.call("GET", path)
        guard let json else { throw CLIFailure("the server sent no JSON") }
        switch output {
        case "json":
            print(json.jsonText)
        case "yaml":
            print(try Yams.dump(object: json.plainValue, sortKeys: true), terminator: "")
        case nil, "wide":
            let items = name == nil || allNamespaces ? (json["items"]?.arrayValue ?? []) : [json]
            if items.isEmpty {
                FileHandle.standardError.write(Data((allNamespaces ? "No resources found\n" : "No resources found in \(admin.namespace) namespace.\n").utf8))
                return
            }
            print(IsvcTable.render(items, allNamespaces: allNamespaces, now: Date()))
        case let other?:
            throw CLIFailure("unable to match a printer suitable for the output format \"\(other)\", allowed formats are: json,wide,yaml")
        }
    }
}

struct DescribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show an InferenceService: its status, revisions and events.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc") var kind: String
    @Argument(help: "The InferenceService's name.") var name: String

    func run() throws {
        try runAdmin {
            try requireInferenceServiceKind(kind)
            let base = "/namespaces/\(admin.namespace)/inferenceservices/\(name)"
            let (_, resource) = try admin.call("GET", base)
            guard let resource else { throw CLIFailure("the server sent no JSON") }
            let (_, revisions) = try admin.call("GET", base + "/revisions")
            let (_, events) = try admin.call("GET", base + "/events")
            print(IsvcDescription.render(resource, revisions: (revisions?.arrayValue ?? []).compactMap(RevisionRow.init(json:)),
                                         events: (events?["items"]?.arrayValue ?? []).compactMap(StoredEvent.init(json:)), now: Date()),
                  terminator: "")
        }
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an InferenceService and its revisions.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc") var kind: String
    @Argument(help: "The InferenceService's name.") var name: String

    func run() throws {
        try runAdmin {
            try requireInferenceServiceKind(kind)
            _ = try admin.call("DELETE", "/namespaces/\(admin.namespace)/inferenceservices/\(name)")
            print("inferenceservice.serving.kserve.io \"\(name)\" deleted")
        }
    }
}

struct RolloutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollout", abstract: "Watch a rollout; pause, resume or abort its canary analysis.",
                                                    subcommands: [RolloutStatusCommand.self, RolloutPauseCommand.self, RolloutResumeCommand.self,
                                                                  RolloutAbortCommand.self])
}

/// `sluice rollout pause|resume|abort isvc NAME`: the canary analysis's manual gate, as the annotation sets it.
struct RolloutGateOptions: ParsableArguments {
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc") var kind: String
    @Argument(help: "The InferenceService's name.") var name: String

    /// POSTs the action to the service's rollout subresource and says what happened as kubectl rollout does.
    func send(_ action: String, done: String) throws {
        try runAdmin {
            try requireInferenceServiceKind(kind)
            let body = Array("{\"action\": \"\(action)\"}".utf8)
            _ = try admin.call("POST", "/namespaces/\(admin.namespace)/inferenceservices/\(name)/rollout", body: body, contentType: "application/json")
            print("inferenceservice.serving.kserve.io/\(name) \(done)")
        }
    }
}

struct RolloutPauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause the running canary analysis: no checks, no step changes; traffic stays.")
    @OptionGroup var gate: RolloutGateOptions
    func run() throws { try gate.send("pause", done: "paused") }
}

struct RolloutResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused canary analysis from its step, with a fresh interval.")
    @OptionGroup var gate: RolloutGateOptions
    func run() throws { try gate.send("resume", done: "resumed") }
}

struct RolloutAbortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "abort", abstract: "Abort the running canary analysis: roll back to the previous revision now.")
    @OptionGroup var gate: RolloutGateOptions
    func run() throws { try gate.send("abort", done: "aborted") }
}

struct RolloutStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Wait until the latest revision is ready and its traffic is in place.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "isvc") var kind: String
    @Argument(help: "The InferenceService's name.") var name: String
    @Option(name: .long, help: "Give up after this long (e.g. 60s, 2m).") var timeout: String = "60s"

    func run() throws {
        try runAdmin {
            try requireInferenceServiceKind(kind)
            guard let limit = parseSeconds(timeout) else { throw CLIFailure("--timeout: expected a duration like 60s or 2m, got \(timeout)") }
            let deadline = Date().addingTimeInterval(limit)
            var lastLine = ""
            while true {
                let (_, json) = try admin.call("GET", "/namespaces/\(admin.namespace)/inferenceservices/\(name)")
                let (done, line) = Self.progress(json, name: name)
                if line != lastLine { print(line); lastLine = line }
                if done { return }
                guard Date() < deadline else { throw CLIFailure("timed out waiting for the condition") }
                usleep(250_000)  // polling interval of a CLI watch, not synchronisation
            }
        }
    }

    /// Done when the latest created revision is ready and the `latestRevision` traffic target names it.
    static func progress(_ json: JSONValue?, name: String) -> (Bool, String) {
        let predictor = json?["status"]?["components"]?["predictor"]
        let created = predictor?["latestCreatedRevision"]?.stringValue ?? "?"
        let ready = predictor?["latestReadyRevision"]?.stringValue
        let latest = predictor?["traffic"]?.arrayValue?.first { $0["latestRevision"]?.boolValue == true }
        let conditions = json?["status"]?["conditions"]?.arrayValue ?? []
        let readyCondition = conditions.first { $0["type"]?.stringValue == "Ready" }
        if ready == created, latest?["revisionName"]?.stringValue == created, readyCondition?["status"]?.stringValue == "True" {
            return (true, "inferenceservice \"\(name)\" successfully rolled out: revision \(created) has \(latest?["percent"]?.intValue ?? 0)% of traffic")
        }
        let why = readyCondition?["message"]?.stringValue ?? readyCondition?["reason"]?.stringValue ?? "not ready"
        return (false, "Waiting for inferenceservice \"\(name)\" rollout to finish: revision \(created) is not ready yet (\(why))...")
    }
}

func parseSeconds(_ text: String) -> Double? {
    if text.hasSuffix("ms"), let v = Double(text.dropLast(2)) { return v / 1000 }
    if text.hasSuffix("s"), let v = Double(text.dropLast()) { return v }
    if text.hasSuffix("m"), let v = Double(text.dropLast()) { return v * 60 }
    return Double(text)
}

