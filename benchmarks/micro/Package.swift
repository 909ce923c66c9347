// swift-tools-version: 6.1
// Sluice microbenchmarks (ordo-one/benchmark): hot-path parsing and routing, measured for time,
// instructions and allocations. A separate package so the benchmark dependency stays out of the
// root package. Run: ./run.sh (see README.md).
import PackageDescription

let package = Package(
    name: "sluice-micro",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The root package; needs the SluiceHTTP1 and SluiceRouting library products.
        .package(name: "sluice", path: "../.."),
        // Swift 6.3+: malloc statistics come from the malloc-interposer package (no jemalloc install).
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "SluiceMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceHTTP1", package: "sluice"),
                .product(name: "SluiceRouting", package: "sluice"),
            ],
            path: "Benchmarks/SluiceMicro",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
