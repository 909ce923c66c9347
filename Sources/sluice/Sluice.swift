// The `sluice` command line: serve, apply, get, describe, delete, rollout, top, kubeconfig, demo, version.
import ArgumentParser
import SluiceControl

@main
struct Sluice: ParsableCommand {
    /// One release number: the admin API's /version reports the same.
    static let version = AdminAPI.sluiceVersion
    static let configuration = CommandConfiguration(
        abstract: "Sluice: an ingress gateway for ML inference traffic (KServe-style canary rollouts without Kubernetes).",
        version: version,
        subcommands: [ServeCommand.self, ApplyCommand.self, GetCommand.self, DescribeCommand.self, DeleteCommand.self, RolloutCommand.self,
                      TopCommand.self, KubeconfigCommand.self, DemoCommand.self, VersionCommand.self])
}
