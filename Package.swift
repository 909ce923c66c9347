// swift-tools-version:6.1
// Sluice: an ingress gateway for ML inference traffic. Layers as in DESIGN.md:
// C shims → IO → protocol (HTTP1) / routing (pure) → proxy → control → `sluice` CLI.
import PackageDescription

/// Warnings fail debug builds, so the tree stays warning-free.
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"], .when(configuration: .debug))]
/// Data-plane targets: exclusivity is proven by their design (one thread per worker, no re-entrant access to a
/// buffer), and its dynamic check cost ~8 % of CPU per request in profiles (swift_beginAccess), so release builds
/// turn the runtime check off. Debug builds and tests keep it.
let dataPlane: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        // For benchmarks/micro, which depends on this package by path.
        .library(name: "SluiceHTTP1", targets: ["SluiceHTTP1"]),
        .library(name: "SluiceRouting", targets: ["SluiceRouting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C shims: epoll, eventfd, timerfd, socket options (what Glibc does not export cleanly).
        .target(name: "CSluice"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libssl", providers: [.apt(["libssl-dev"])]),
        // C shims for TLS: OpenSSL macros and callbacks (context settings, ALPN, SNI, ticket keys).
        .target(name: "CSluiceTLS", dependencies: ["COpenSSL"]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // IO layer: syscalls, event loop, timers, sockets, buffers.
        .target(name: "SluiceIO", dependencies: ["CSluice"], swiftSettings: dataPlane),
        // Protocol layer: HTTP/1.1 parsing, bytes in, events out.
        .target(name: "SluiceHTTP1", swiftSettings: dataPlane),
        // Protocol layer: TLS contexts (certificates, SNI) and sessions over a non-blocking fd (OpenSSL).
        .target(name: "SluiceTLS", dependencies: ["CSluiceTLS", "COpenSSL", "SluiceIO"], swiftSettings: dataPlane),
        // Protocol layer: HTTP/2 server session over libnghttp2, bytes in, events out.
        .target(name: "SluiceHTTP2", dependencies: ["CNGHTTP2", "SluiceIO"], swiftSettings: dataPlane),
        // Routing layer: route table, host matching, weighted pick. Pure, stdlib only.
        .target(name: "SluiceRouting", swiftSettings: dataPlane),
        // Proxy layer: workers, downstream/upstream connections, pools.
        .target(name: "SluiceProxy", dependencies: ["SluiceIO", "SluiceHTTP1", "SluiceHTTP2", "SluiceRouting", "SluiceTLS", "CSluice"], swiftSettings: dataPlane),
        // Control layer: configuration files (and later manifests) → route tables.
        .target(name: "SluiceControl", dependencies: ["SluiceRouting", "SluiceProxy", "SluiceTLS", "SluiceHTTP2", "SluiceIO", "SluiceBlockingHTTP", .product(name: "Yams", package: "Yams")], swiftSettings: strict),
        // A small blocking HTTP/1.1 server (thread per connection) for the admin API and the demo predictors;
        // never on the data plane.
        .target(name: "SluiceBlockingHTTP", swiftSettings: strict),
        // Demo predictor: a tiny iris classifier behind the blocking server (make run, tests).
        .target(name: "SluiceDemo", dependencies: ["SluiceBlockingHTTP"], swiftSettings: strict),
        .executableTarget(name: "sluice", dependencies: [
            "SluiceControl", "SluiceProxy", "SluiceRouting", "SluiceIO", "SluiceDemo", "SluiceBlockingHTTP", "COpenSSL", "CNGHTTP2",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        // Test support: a malloc interposer counting the gateway workers' allocations (the allocation test).
        .target(name: "CMallocCounter", path: "Tests/CMallocCounter"),
        // Fuzzing (Tests/Fuzz, `make fuzz`): the per-input checks, shared by the libFuzzer executables and the corpus
        // replay test. The executables are stubs unless built with -DFUZZING -sanitize=fuzzer,address, so a plain
        // build links them; they are in the package so that `make fuzz` builds them with SwiftPM, like the rest.
        .target(name: "SluiceFuzzChecks", dependencies: ["SluiceHTTP1", "SluiceHTTP2", "SluiceIO"], path: "Tests/Fuzz/Checks", swiftSettings: strict),
        .executableTarget(name: "FuzzH1Request", dependencies: ["SluiceFuzzChecks"], path: "Tests/Fuzz/Targets/FuzzH1Request", swiftSettings: strict),
        .executableTarget(name: "FuzzH1Response", dependencies: ["SluiceFuzzChecks"], path: "Tests/Fuzz/Targets/FuzzH1Response", swiftSettings: strict),
        .executableTarget(name: "FuzzChunked", dependencies: ["SluiceFuzzChecks"], path: "Tests/Fuzz/Targets/FuzzChunked", swiftSettings: strict),
        .executableTarget(name: "FuzzH2Session", dependencies: ["SluiceFuzzChecks"], path: "Tests/Fuzz/Targets/FuzzH2Session", swiftSettings: strict),
        .testTarget(name: "SluiceFuzzTests", dependencies: ["SluiceFuzzChecks"], path: "Tests/Fuzz/Replay"),
        .testTarget(name: "SluiceHTTP1Tests", dependencies: ["SluiceHTTP1"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceRoutingTests", dependencies: ["SluiceRouting"]),
        .testTarget(name: "SluiceIOTests", dependencies: ["SluiceIO"]),
        .testTarget(name: "SluiceControlTests", dependencies: ["SluiceControl", "SluiceProxy", "SluiceDemo", "SluiceBlockingHTTP", "SluiceRouting"]),
        .testTarget(name: "SluiceHTTP2Tests", dependencies: ["SluiceHTTP2", "SluiceIO", "CNGHTTP2"]),
        .testTarget(name: "SluiceTLSTests", dependencies: ["SluiceTLS", "SluiceIO", "CSluiceTLS", "COpenSSL"]),
        .testTarget(name: "SluiceProxyTests", dependencies: ["SluiceProxy", "SluiceTLS", "CSluiceTLS", "COpenSSL", "CNGHTTP2", "SluiceControl", "SluiceDemo", "SluiceBlockingHTTP", "SluiceRouting", "CMallocCounter"]),
    ],
    swiftLanguageModes: [.v6]
)
