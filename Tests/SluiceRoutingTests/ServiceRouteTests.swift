// Tests for the routing layer's weighted pick and tag lookup on a built service.
import SluiceRouting
import XCTest

final class ServiceRouteTests: XCTestCase {
    func testNinetyTenSplitStaysWithinFiveSigma() throws {
        let service = try RouteTable(services: [RouteTableTests.iris(latestPercent: 10)], rules: HostRules()).services[0]
        var random = FastRandom(seed: 0x5eed)
        var counts = [0, 0]
        let draws = 100_000
        for _ in 0..<draws {
            counts[try XCTUnwrap(service.pick(random.next()))] += 1
        }
        // Binomial(n, p = 0.1): σ = √(n·p·(1−p)) ≈ 94.9; 5σ ≈ 474.
        let expected = Double(draws) * 0.1
        let sigma = (Double(draws) * 0.1 * 0.9).squareRoot()
        XCTAssertLessThan(abs(Double(counts[1]) - expected), 5 * sigma, "latest got \(counts[1]) of \(draws)")
        XCTAssertEqual(counts[0] + counts[1], draws)
    }

    func testZeroPercentTargetIsNeverPickedButReachableByTag() throws {
        let table = try RouteTable(services: [RouteTableTests.iris(latestPercent: 0)], rules: HostRules())
        let service = table.services[0]
        var random = FastRandom(seed: 42)
        for _ in 0..<10_000 {
            XCTAssertEqual(service.revisions[try XCTUnwrap(service.pick(random.next()))].name, RouteTableTests.previous)
        }
        // The extremes of the draw range must not land on the 0 % target either.
        XCTAssertEqual(service.pick(0), 0)
        XCTAssertEqual(service.pick(.max), 0)
        let tag = try XCTUnwrap(table.match(host: "latest-sklearn-iris-predictor-default.kserve-test.example.com")?.tag)
        XCTAssertEqual(service.revisions[tag.revisionIndex].name, RouteTableTests.latest)
        XCTAssertEqual(service.tag(named: "Latest")?.revisionIndex, tag.revisionIndex)
    }

    func testFastRandomIsReproducibleFromItsSeed() {
        var first = FastRandom(seed: 7)
        var second = FastRandom(seed: 7)
        var other = FastRandom(seed: 8)
        let a = (0..<4).map { _ in first.next() }
        XCTAssertEqual(a, (0..<4).map { _ in second.next() })
        XCTAssertNotEqual(a, (0..<4).map { _ in other.next() })
    }
}
