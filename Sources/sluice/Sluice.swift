// The `sluice` command line: serve, version, demo.
import ArgumentParser

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sluice: an ingress gateway for ML inference traffic.")
}
