// Tests for the routing layer's route table: host forms, near-misses, templates and build errors.
import SluiceRouting
import XCTest

final class RouteTableTests: XCTestCase {
    static let latest = "sklearn-iris-predictor-default-00002"
    static let previous = "sklearn-iris-predictor-default-00001"

    static func iris(tagRouting: Bool = true, name: String = "sklearn-iris", namespace: String = "kserve-test",
                     latestPercent: Int = 10) -> ServiceSpec {
        ServiceSpec(
            name: name, namespace: namespace, tagRouting: tagRouting,
            revisions: [
                RevisionSpec(name: previous, endpoints: [Endpoint(host: "127.0.0.1", port: 9001)]),
                RevisionSpec(name: latest, endpoints: [Endpoint(host: "127.0.0.1", port: 9002)]),
            ],
            traffic: [
                TrafficTargetSpec(revisionName: latest, percent: latestPercent, tag: "latest", latestRevision: true),
                TrafficTargetSpec(revisionName: previous, percent: 100 - latestPercent, tag: "prev"),
            ])
    }

    func table(_ services: [ServiceSpec] = [iris()], rules: HostRules = HostRules()) throws -> RouteTable {
        try RouteTable(services: services, rules: rules)
    }

    func buildError(_ services: [ServiceSpec], rules: HostRules = HostRules()) -> String? {
        do {
            _ = try RouteTable(services: services, rules: rules)
            return nil
        } catch {
            return error.description
        }
    }

    func testEveryDefaultHostFormReachesTheSplit() throws {
        let table = try table()
        let hosts = [
            "sklearn-iris.kserve-test.example.com",
            "sklearn-iris-predictor-default.kserve-test.example.com",
            "sklearn-iris-predictor-default.kserve-test",
            "sklearn-iris-predictor-default.kserve-test.svc",
            "sklearn-iris-predictor-default.kserve-test.svc.cluster.local",
            "sklearn-iris.kserve-test.svc.cluster.local",
        ]
        for host in hosts {
            let match = table.match(host: host)
            XCTAssertEqual(match?.service.name, "sklearn-iris", host)
            XCTAssertNil(match?.tag, host)
        }
        XCTAssertEqual(Set(table.hosts(of: table.services[0])).isSuperset(of: hosts), true)
    }

    func testHostIsCaseInsensitivePortlessAndIgnoresTrailingDot() throws {
        let table = try table()
        for host in [
            "SKLEARN-IRIS.Kserve-Test.EXAMPLE.COM",
            "sklearn-iris.kserve-test.example.com:8080",
            "sklearn-iris.kserve-test.example.com.",
            "Sklearn-Iris.kserve-test.example.com.:8080",
            " sklearn-iris.kserve-test.example.com ",
        ] {
            XCTAssertEqual(table.match(host: host)?.service.namespace, "kserve-test", host)
        }
    }

    func testTagHostsGoToTheirRevisionInEveryForm() throws {
        let table = try table()
        let service = table.services[0]
        for (tag, revision) in [("latest", Self.latest), ("prev", Self.previous)] {
            for suffix in [".kserve-test.example.com", ".kserve-test", ".kserve-test.svc",
                           ".kserve-test.svc.cluster.local", ".kserve-test.example.com:80"] {
                let host = "\(tag)-sklearn-iris-predictor-default\(suffix)"
                let match = try XCTUnwrap(table.match(host: host), host)
                let tagRoute = try XCTUnwrap(match.tag, host)
                XCTAssertEqual(tagRoute.tag, tag)
                XCTAssertEqual(service.revisions[tagRoute.revisionIndex].name, revision, host)
                XCTAssertEqual(String(decoding: tagRoute.upstreamHeader, as: UTF8.self), "Knative-Serving-Tag: \(tag)\r\n")
            }
        }
        XCTAssertEqual(table.hosts(of: service).count, 6 + 2 * 4)
    }

    func testHostsOfAServiceListsEveryFormForDocs() throws {
        let table = try table()
        XCTAssertEqual(table.hosts(of: table.services[0]), [
            "sklearn-iris.kserve-test.example.com",
            "sklearn-iris-predictor-default.kserve-test.example.com",
            "sklearn-iris-predictor-default.kserve-test",
            "sklearn-iris-predictor-default.kserve-test.svc",
            "sklearn-iris-predictor-default.kserve-test.svc.cluster.local",
            "sklearn-iris.kserve-test.svc.cluster.local",
            "latest-sklearn-iris-predictor-default.kserve-test.example.com",
            "latest-sklearn-iris-predictor-default.kserve-test",
            "latest-sklearn-iris-predictor-default.kserve-test.svc",
            "latest-sklearn-iris-predictor-default.kserve-test.svc.cluster.local",
            "prev-sklearn-iris-predictor-default.kserve-test.example.com",
            "prev-sklearn-iris-predictor-default.kserve-test",
            "prev-sklearn-iris-predictor-default.kserve-test.svc",
            "prev-sklearn-iris-predictor-default.kserve-test.svc.cluster.local",
        ])
        // A template that renders a cluster-local form registers it once, not as a collision.
        let local = try self.table(rules: HostRules(domain: "svc.cluster.local"))
        XCTAssertEqual(local.hosts(of: local.services[0]).filter { $0 == "sklearn-iris.kserve-test.svc.cluster.local" }.count, 1)
    }

    func testUnknownHostsAndNearMissesDoNotMatch() throws {
        let table = try table([Self.iris(tagRouting: false)])
        for host in [
            "",
            ":8080",
            "example.com",
            "prev-sklearn-iris-predictor-default.kserve-test.example.com",  // no tag routing
            "latest-sklearn-iris-predictor-default.kserve-test",
            "sklearn-iris.default.example.com",  // wrong namespace
            "sklearn-iris.kserve-test.example.org",  // other domain
            "sklearn-iris-predictor-default.kserve-test.svc.cluster",
            "sklearn-iris-predictor.kserve-test.example.com",  // other suffix
            "sklearn-iris.kserve-test",  // the service name has no short cluster-local form
            "sklearn-iris.kserve-test.example.com..",
            "[::1]:8080",
            "127.0.0.1",
        ] {
            XCTAssertNil(table.match(host: host), host)
        }
    }

    func testWithoutTagRoutingTagsStillServeHeaderRouting() throws {
        let service = try table([Self.iris(tagRouting: false)]).services[0]
        let prev = try XCTUnwrap(service.tag(named: "PREV"))
        XCTAssertEqual(service.revisions[prev.revisionIndex].name, Self.previous)
        XCTAssertNil(service.tag(named: "canary"))
        XCTAssertNil(service.tag(named: "pre"))
    }

    func testTemplateSettingsChangeTheHosts() throws {
        let rules = HostRules(domain: "models.internal", serviceHostTemplate: "{name}-{namespace}.{domain}",
                              componentSuffix: "-predictor")
        let table = try table(rules: rules)
        XCTAssertNotNil(table.match(host: "sklearn-iris-kserve-test.models.internal"))
        XCTAssertNotNil(table.match(host: "sklearn-iris-predictor.kserve-test.models.internal"))
        XCTAssertNotNil(table.match(host: "latest-sklearn-iris-predictor.kserve-test.models.internal")?.tag)
        XCTAssertNil(table.match(host: "sklearn-iris.kserve-test.models.internal"))
        XCTAssertNil(table.match(host: "sklearn-iris-predictor-default.kserve-test.models.internal"))
        XCTAssertNil(table.match(host: "sklearn-iris.kserve-test.example.com"))
    }

    func testH2CEndpointsAreGRPCEndpointsAndDistinctFromHTTP1OnesOnTheSameAddress() throws {
        var spec = Self.iris()
        spec.revisions[1].endpoints = [Endpoint(host: "127.0.0.1", port: 9001), Endpoint(host: "127.0.0.1", port: 9001, protocol: .h2c),
                                       Endpoint(host: "127.0.0.1", port: 9081, protocol: .h2c)]
        let table = try table([spec])
        let revision = table.services[0].revisions[1]
        XCTAssertEqual(revision.endpointIndices.map { table.endpoints[$0].description }, ["127.0.0.1:9001"])
        XCTAssertEqual(revision.grpcEndpointIndices.map { table.endpoints[$0].description }, ["h2c://127.0.0.1:9001", "h2c://127.0.0.1:9081"])
        XCTAssertEqual(Set(table.endpoints).count, table.endpoints.count)
    }

    func testRevisionsCarryKnativeHeadersAndSharedEndpointsAreStoredOnce() throws {
        var spec = Self.iris()
        spec.revisions[1].endpoints.append(Endpoint(host: "127.0.0.1", port: 9001))
        spec.revisions[1].endpoints.append(Endpoint(host: "::1", port: 9003))
        let table = try table([spec])
        XCTAssertEqual(table.endpoints.map(\.description), ["127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"])
        let revision = table.services[0].revisions[1]
        XCTAssertEqual(revision.endpointIndices, [1, 0, 2])
        XCTAssertEqual(String(decoding: revision.upstreamHeaders, as: UTF8.self),
                       "Knative-Serving-Revision: \(Self.latest)\r\nKnative-Serving-Namespace: kserve-test\r\n"
                           + "KServe-Isvc-Name: sklearn-iris\r\nKServe-Isvc-Namespace: kserve-test\r\n")
        XCTAssertEqual(String(decoding: revision.responseHeader, as: UTF8.self), "Sluice-Revision: \(Self.latest)\r\n")
    }

    func testBuildErrorsNameTheField() {
        var unknown = Self.iris()
        unknown.traffic[1].revisionName = "sklearn-iris-predictor-default-00009"
        XCTAssertEqual(buildError([unknown]),
                       "services[0].traffic[1].revisionName: unknown revision sklearn-iris-predictor-default-00009, not in services[0].revisions")

        var overfull = Self.iris()
        overfull.traffic[0].percent = 20
        XCTAssertEqual(buildError([overfull]), "services[0].traffic: percents add up to 110, must be 100")

        var duplicateTag = Self.iris()
        duplicateTag.traffic[1].tag = "latest"
        XCTAssertEqual(buildError([duplicateTag]), "services[0].traffic[1].tag: duplicate tag latest, also on services[0].traffic[0]")

        XCTAssertEqual(buildError([Self.iris(), Self.iris()]),
                       "services[1]: service sklearn-iris in namespace kserve-test is already defined by services[0]")

        XCTAssertEqual(buildError([Self.iris(name: "Sklearn")]),
                       "services[0].name: \"Sklearn\" is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 bytes)")

        var badTemplate = HostRules()
        badTemplate.serviceHostTemplate = "{name}.{ns}.{domain}"
        XCTAssertEqual(buildError([Self.iris()], rules: badTemplate),
                       "rules.serviceHostTemplate: unknown placeholder {ns}, expected {name}, {namespace} or {domain}")
    }

    func testHostCollisionBetweenServicesNamesBothServices() {
        // With the dash template, a-b in c and a in b-c both render a-b-c.example.com.
        let rules = HostRules(serviceHostTemplate: "{name}-{namespace}.{domain}")
        XCTAssertEqual(buildError([Self.iris(name: "a-b", namespace: "c"), Self.iris(name: "a", namespace: "b-c")], rules: rules),
                       "services[1]: host a-b-c.example.com is already a host of services[0]")
    }

    func testTagHostCollidingWithAnotherServiceNamesTheTag() {
        // Tag host latest-x-predictor-default.ns.example.com vs service latest-x's component host.
        var other = Self.iris(tagRouting: false, name: "latest-x", namespace: "ns")
        other.traffic = [TrafficTargetSpec(revisionName: Self.latest, percent: 100)]
        let tagged = Self.iris(name: "x", namespace: "ns")
        XCTAssertEqual(buildError([other, tagged]),
                       "services[1].traffic[0].tag: host latest-x-predictor-default.ns.example.com is already a host of services[0]")
    }
}
