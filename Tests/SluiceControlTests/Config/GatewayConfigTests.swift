// Tests for the control layer's config loader: the bundled file, value syntaxes and every rejection message.
import Foundation
import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

final class GatewayConfigTests: XCTestCase {
    static let bundledFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("config/static.yaml").path

    static let minimalService = """
        services:
        - name: sklearn-iris
          namespace: kserve-test
          revisions:
            sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
          traffic:
          - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
        """

    /// The message a user sees for `yaml`, or nil when it loads.
    func message(_ yaml: String) -> String? {
        do {
            _ = try GatewayConfig.parse(yaml: yaml, file: "config/sluice.yaml")
            return nil
        } catch {
            return error.description
        }
    }

    /// `top` prepended to a valid service list.
    func message(top: String) -> String? { message(top + "\n" + Self.minimalService) }

    func parse(_ yaml: String) throws -> GatewayConfig {
        try GatewayConfig.parse(yaml: yaml, file: "test.yaml")
    }

    func testDefaultConfigMapsTheSeedModelsToTheDemoPredictors() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("config/sluice.yaml").path
        let config = try GatewayConfig.load(file: file)
        XCTAssertTrue(config.services.isEmpty, "the default gateway is driven by manifests")
        XCTAssertEqual(config.control.models["gs://kfserving-examples/models/sklearn/1.0/model"], [Endpoint(host: "127.0.0.1", port: 9001)])
        XCTAssertEqual(config.control.models["gs://kfserving-examples/models/sklearn/1.0/model-2"], [Endpoint(host: "127.0.0.1", port: 9002)])
        XCTAssertEqual(config.control.stateDir, "./sluice-state")
        XCTAssertEqual(config.control.readiness.path, "/v1/models/{name}")
        XCTAssertEqual(config.control.readiness.failureThreshold, 3)
        XCTAssertEqual(config.proxy.shutdownTimeoutMs, 30_000)
        XCTAssertEqual(config.proxy.metrics.listen, SocketAddressSpec(host: "127.0.0.1", port: 9091), "Prometheus' port")
        XCTAssertTrue(config.proxy.metrics.istio)
        XCTAssertEqual(config.proxy.accessLog.destination, .stdout, "the bundled gateway logs every request")
        XCTAssertEqual(config.proxy.accessLog.format, .json)
        XCTAssertEqual(config.proxy.accessLog.sampleRate, 1)
        XCTAssertEqual(config.proxy.tracing.sampleRate, 0.01)
        XCTAssertNil(config.proxy.tracing.otlpEndpoint, "no collector unless one is configured")
    }

    func testTelemetrySectionsParse() throws {
        let dir = NSTemporaryDirectory()
        let config = try parse("""
            metrics: {listen: "0.0.0.0:9091", istio: false}
            accessLog: {path: \(dir)access.log, format: envoy, sample: 0.25, errorsOnly: true}
            tracing:
              sampleRate: 1
              responseHeader: true
              otlp: {endpoint: "http://[::1]:4318/v1/traces", encoding: protobuf}
              exportQueue: 512
            """ + "\n" + Self.minimalService)
        XCTAssertEqual(config.proxy.metrics.listen, SocketAddressSpec(host: "0.0.0.0", port: 9091), "metrics may listen anywhere, without a token")
        XCTAssertFalse(config.proxy.metrics.istio)
        XCTAssertEqual(config.proxy.accessLog.destination, .file(dir + "access.log"))
        XCTAssertEqual(config.proxy.accessLog.format, .envoy)
        XCTAssertEqual(config.proxy.accessLog.sampleRate, 0.25)
        XCTAssertTrue(config.proxy.accessLog.errorsOnly)
        XCTAssertEqual(config.proxy.tracing.sampleRate, 1)
        XCTAssertTrue(config.proxy.tracing.responseHeader)
        XCTAssertEqual(config.proxy.tracing.otlpEndpoint, "http://[::1]:4318/v1/traces")
        XCTAssertEqual(config.proxy.tracing.otlpEncoding, .protobuf)
        XCTAssertEqual(config.proxy.tracing.exportQueueSpans, 512)

        let defaults = try parse(Self.minimalService)
        XCTAssertNil(defaults.proxy.metrics.listen)
        XCTAssertEqual(defaults.proxy.accessLog.destination, .off)
        XCTAssertEqual(try parse("accessLog: {path: \"off\"}\n" + Self.minimalService).proxy.accessLog.destination, .off)
        XCTAssertEqual(try parse("accessLog: {path: off}\n" + Self.minimalService).proxy.accessLog.destination, .off,
                       "YAML 1.1's boolean spelling is still the word off here")
        // A URL without a port is port 80, without a path OTLP's /v1/traces; kept canonical.
        XCTAssertEqual(try parse("tracing: {otlp: {endpoint: \"http://10.0.0.7\"}}\n" + Self.minimalService).proxy.tracing.otlpEndpoint,
                       "http://10.0.0.7:80/v1/traces")
        XCTAssertEqual(try parse("tracing: {otlp: {endpoint: \"http://[0:0::1]:4318/x\"}}\n" + Self.minimalService).proxy.tracing.otlpEndpoint,
                       "http://[::1]:4318/x")
    }

    func testTelemetryRefusalsNameTheField() {
        XCTAssertEqual(message(top: "metrics: {listen: localhost:9091}"),
                       "config/sluice.yaml: metrics.listen: localhost is not an IPv4 literal (host names are not resolved)")
        XCTAssertEqual(message(top: "admin: 127.0.0.1:15000\nmetrics: {listen: 127.0.0.1:15000}"),
                       "config/sluice.yaml: metrics.listen: 127.0.0.1:15000 is already the admin address")
        XCTAssertEqual(message(top: "metrics: {listen: 127.0.0.1:8080}"), "config/sluice.yaml: metrics.listen: 127.0.0.1:8080 is already the listen address")
        XCTAssertEqual(message(top: "metrics: {istio: sometimes}"), "config/sluice.yaml: metrics.istio: expected true or false, got \"sometimes\"")
        XCTAssertEqual(message(top: "metrics: {port: 9091}"), "config/sluice.yaml: metrics.port: unknown key, expected one of listen, istio")
        XCTAssertEqual(message(top: "accessLog: {sample: 1.5}"), "config/sluice.yaml: accessLog.sample: 1.5 is outside 0.0...1.0")
        XCTAssertEqual(message(top: "accessLog: {sample: -0.1}"), "config/sluice.yaml: accessLog.sample: -0.1 is outside 0.0...1.0")
        XCTAssertEqual(message(top: "accessLog: {sample: .nan}"), "config/sluice.yaml: accessLog.sample: .nan is outside 0.0...1.0")
        XCTAssertEqual(message(top: "accessLog: {sample: half}"), "config/sluice.yaml: accessLog.sample: expected a number, got \"half\"")
        XCTAssertEqual(message(top: "accessLog: {format: apache}"), "config/sluice.yaml: accessLog.format: expected json or envoy, got \"apache\"")
        XCTAssertEqual(message(top: "accessLog: {path: \"\"}"), "config/sluice.yaml: accessLog.path: expected stdout, off or a file path")
        XCTAssertEqual(message(top: "accessLog: {path: /nonexistent-sluice-dir/access.log}"),
                       "config/sluice.yaml: accessLog.path: /nonexistent-sluice-dir: no such directory (the access log file is created there)")
        XCTAssertEqual(message(top: "accessLog: {errorsOnly: 1}"), "config/sluice.yaml: accessLog.errorsOnly: expected true or false, got \"1\"")
        XCTAssertEqual(message(top: "accessLog: {destination: stdout}"),
                       "config/sluice.yaml: accessLog.destination: unknown key, expected one of path, format, sample, errorsOnly")
        XCTAssertEqual(message(top: "tracing: {sampleRate: 2}"), "config/sluice.yaml: tracing.sampleRate: 2 is outside 0.0...1.0")
        XCTAssertEqual(message(top: "tracing: {exportQueue: 0}"), "config/sluice.yaml: tracing.exportQueue: 0 is outside 1...1048576")
        XCTAssertEqual(message(top: "tracing: {responseHeader: yes please}"),
                       "config/sluice.yaml: tracing.responseHeader: expected true or false, got \"yes please\"")
        XCTAssertEqual(message(top: "tracing: {otlp: {encoding: json}}"), "config/sluice.yaml: tracing.otlp.endpoint: required")
        XCTAssertEqual(message(top: "tracing: {otlp: {endpoint: \"https://10.0.0.7:4318/v1/traces\"}}"),
                       "config/sluice.yaml: tracing.otlp.endpoint: https is not supported: spans go over plain HTTP to a collector or agent on this host or network (http://IP:port/v1/traces)")
        XCTAssertEqual(message(top: "tracing: {otlp: {endpoint: \"http://collector:4318/v1/traces\"}}"),
                       "config/sluice.yaml: tracing.otlp.endpoint: collector is not an IPv4 literal (host names are not resolved)")
        XCTAssertEqual(message(top: "tracing: {otlp: {endpoint: \"127.0.0.1:4318\"}}"),
                       "config/sluice.yaml: tracing.otlp.endpoint: expected an OTLP/HTTP URL like http://127.0.0.1:4318/v1/traces, got \"127.0.0.1:4318\"")
        XCTAssertEqual(message(top: "tracing: {otlp: {endpoint: \"http://127.0.0.1:99999/v1/traces\"}}"),
                       "config/sluice.yaml: tracing.otlp.endpoint: port 99999 is outside 1...65535")
        XCTAssertEqual(message(top: "tracing: {otlp: {endpoint: \"http://127.0.0.1:4318\", encoding: grpc}}"),
                       "config/sluice.yaml: tracing.otlp.encoding: expected json or protobuf, got \"grpc\"")
    }

    func testNonLoopbackAdminNeedsAToken() throws {
        XCTAssertThrowsError(try GatewayConfig.parse(yaml: "admin: 0.0.0.0:15000\n", file: "t.yaml")) { error in
            XCTAssertEqual("\(error)", "t.yaml: admin: 0.0.0.0:15000 is not a loopback address (127.0.0.0/8 or ::1); set adminTokenFile to expose the admin API elsewhere")
        }
        let config = try GatewayConfig.parse(yaml: "admin: 0.0.0.0:15000\nadminTokenFile: /etc/sluice/token\n", file: "t.yaml")
        XCTAssertEqual(config.control.adminTokenFile, "/etc/sluice/token")
    }

    func testBundledConfigLoadsAndRoutesTheCanary() throws {
        let config = try GatewayConfig.load(file: Self.bundledFile)
        XCTAssertEqual(config.proxy.listen.description, "127.0.0.1:8080")
        XCTAssertEqual(config.proxy.admin.description, "127.0.0.1:15000")
        XCTAssertNil(config.proxy.workers)
        XCTAssertEqual(config.proxy.timeouts, ProxyTimeouts())
        XCTAssertEqual(config.proxy.limits, ProxyLimits())
        XCTAssertEqual(config.hostRules, HostRules())
        XCTAssertEqual(config.services, [ServiceSpec(
            name: "sklearn-iris", namespace: "kserve-test", tagRouting: true,
            revisions: [
                RevisionSpec(name: "sklearn-iris-predictor-default-00001", endpoints: [Endpoint(host: "127.0.0.1", port: 9001)]),
                RevisionSpec(name: "sklearn-iris-predictor-default-00002", endpoints: [Endpoint(host: "127.0.0.1", port: 9002)]),
            ],
            traffic: [
                TrafficTargetSpec(revisionName: "sklearn-iris-predictor-default-00002", percent: 10, tag: "latest", latestRevision: true),
                TrafficTargetSpec(revisionName: "sklearn-iris-predictor-default-00001", percent: 90, tag: "prev"),
            ])])
        let table = try config.routeTable()
        let tag = try XCTUnwrap(table.match(host: "prev-sklearn-iris-predictor-default.kserve-test.example.com")?.tag)
        XCTAssertEqual(table.services[0].revisions[tag.revisionIndex].name, "sklearn-iris-predictor-default-00001")
    }

    func testMissingFileNamesTheFile() {
        XCTAssertThrowsError(try GatewayConfig.load(file: "/nonexistent/sluice.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("/nonexistent/sluice.yaml: cannot read"), "\(error)")
        }
    }

    func testDurationsAndSizesParse() throws {
        let config = try parse("""
            workers: 4
            listen: "[::0001]:8443"
            timeouts: {requestHeader: 250ms, keepAliveIdle: 5m, upstreamConnect: 2s, upstreamResponse: 0, bodyIdle: 1h}
            limits: {maxHeaderBytes: 16KiB, maxHeaderCount: 50, maxRequestTargetBytes: 4096, maxRequestBodyBytes: 2GiB, bufferBytes: 1MiB, maxRequestsPerConnection: 7}
            routing: {domain: models.internal, serviceHostTemplate: "{name}-{namespace}.{domain}", componentSuffix: -predictor, tagHeaderRouting: true, revisionHeader: false}
            """ + "\n" + Self.minimalService)
        XCTAssertEqual(config.proxy.workers, 4)
        XCTAssertEqual(config.proxy.listen.description, "[::1]:8443")
        XCTAssertEqual([config.proxy.timeouts.requestHeaderMs, config.proxy.timeouts.keepAliveIdleMs,
                        config.proxy.timeouts.upstreamConnectMs, config.proxy.timeouts.upstreamResponseMs,
                        config.proxy.timeouts.bodyIdleMs], [250, 300_000, 2_000, 0, 3_600_000])
        XCTAssertEqual([config.proxy.limits.maxHeaderBytes, config.proxy.limits.maxHeaderCount,
                        config.proxy.limits.maxRequestTargetBytes, config.proxy.limits.maxRequestBodyBytes,
                        config.proxy.limits.bufferBytes, config.proxy.limits.maxRequestsPerConnection],
                       [16_384, 50, 4_096, 2_147_483_648, 1_048_576, 7])
        XCTAssertEqual(config.hostRules, HostRules(domain: "models.internal", serviceHostTemplate: "{name}-{namespace}.{domain}",
                                                   componentSuffix: "-predictor", tagHeaderRouting: true))
        XCTAssertFalse(config.proxy.revisionHeader)
        XCTAssertNotNil(try config.routeTable().match(host: "sklearn-iris-kserve-test.models.internal"))
    }

    func testH2CEndpointsParseInServicesAndModels() throws {
        let config = try parse("""
            models:
              gs://bucket/model: [127.0.0.1:8080, h2c://127.0.0.1:8081]
            services:
            - name: sklearn-iris
              namespace: kserve-test
              revisions:
                sklearn-iris-predictor-default-00001: [127.0.0.1:9001, "h2c://[::1]:9081"]
              traffic:
              - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
            """)
        XCTAssertEqual(config.control.models["gs://bucket/model"],
                       [Endpoint(host: "127.0.0.1", port: 8080), Endpoint(host: "127.0.0.1", port: 8081, protocol: .h2c)])
        let endpoints = config.services[0].revisions[0].endpoints
        XCTAssertEqual(endpoints, [Endpoint(host: "127.0.0.1", port: 9001), Endpoint(host: "::1", port: 9081, protocol: .h2c)])
        XCTAssertEqual(endpoints.map(\.description), ["127.0.0.1:9001", "h2c://[::1]:9081"])
        let revision = try config.routeTable().services[0].revisions[0]
        XCTAssertEqual(revision.endpointIndices, [0])
        XCTAssertEqual(revision.grpcEndpointIndices, [1])
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "[127.0.0.1:9001]", with: "[grpc://127.0.0.1:9001]")),
                       "config/sluice.yaml: services[0].revisions.sklearn-iris-predictor-default-00001[0]: expected an endpoint like 127.0.0.1:8080, h2c://127.0.0.1:8081, https://127.0.0.1:8443 or h2://127.0.0.1:8443, got \"grpc://127.0.0.1:9001\"")
    }

    func testTrafficMessages() {
        let service = { (traffic: String) in """
            services:
            - name: sklearn-iris
              namespace: kserve-test
              revisions:
                sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
                sklearn-iris-predictor-default-00002: []
              traffic:
            \(traffic.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """ }
        XCTAssertEqual(message(service("""
            - {revisionName: sklearn-iris-predictor-default-00002, percent: 20, tag: latest}
            - {revisionName: sklearn-iris-predictor-default-00001, percent: 90, tag: prev}
            """)), "config/sluice.yaml: services[0].traffic: percents add up to 110, must be 100")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00003, percent: 100}")),
                       "config/sluice.yaml: services[0].traffic[0].revisionName: unknown revision sklearn-iris-predictor-default-00003, not in services[0].revisions")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00001, percent: 101}")),
                       "config/sluice.yaml: services[0].traffic[0].percent: 101 is outside 0...100")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00001, percent: -1}")),
                       "config/sluice.yaml: services[0].traffic[0].percent: -1 is outside 0...100")
        XCTAssertEqual(message(service("""
            - {revisionName: sklearn-iris-predictor-default-00002, percent: 50, tag: prev}
            - {revisionName: sklearn-iris-predictor-default-00001, percent: 50, tag: prev}
            """)), "config/sluice.yaml: services[0].traffic[1].tag: duplicate tag prev, also on services[0].traffic[0]")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00001, percent: 100, tag: Prev_1}")),
                       "config/sluice.yaml: services[0].traffic[0].tag: \"Prev_1\" is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 bytes)")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00001}")),
                       "config/sluice.yaml: services[0].traffic[0].percent: required")
        XCTAssertEqual(message(service("- {revisionName: sklearn-iris-predictor-default-00001, percent: ten}")),
                       "config/sluice.yaml: services[0].traffic[0].percent: expected an integer, got \"ten\"")
        // A revision without endpoints is fine (the proxy answers 503), even at 100 %.
        XCTAssertNil(message(service("- {revisionName: sklearn-iris-predictor-default-00002, percent: 100}")))
    }

    func testServiceMessages() {
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "name: sklearn-iris", with: "name: Sklearn-Iris")),
                       "config/sluice.yaml: services[0].name: \"Sklearn-Iris\" is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 bytes)")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "namespace: kserve-test", with: "namespace: kserve.test")),
                       "config/sluice.yaml: services[0].namespace: \"kserve.test\" is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 bytes)")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "  namespace: kserve-test\n", with: "")),
                       "config/sluice.yaml: services[0].namespace: required")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "[127.0.0.1:9001]", with: "")),
                       "config/sluice.yaml: services[0].revisions.sklearn-iris-predictor-default-00001: expected a list of endpoints, got nothing (write [] for a revision without endpoints)")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "[127.0.0.1:9001]", with: "[localhost:9001]")),
                       "config/sluice.yaml: services[0].revisions.sklearn-iris-predictor-default-00001[0]: localhost is not an IPv4 literal (host names are not resolved)")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "[127.0.0.1:9001]", with: "[127.0.0.1:0]")),
                       "config/sluice.yaml: services[0].revisions.sklearn-iris-predictor-default-00001[0]: port 0 is outside 1...65535")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "[127.0.0.1:9001]", with: "[127.0.0.1:9001, 127.0.0.1:9001]")),
                       "config/sluice.yaml: services[0].revisions.sklearn-iris-predictor-default-00001[1]: duplicate endpoint 127.0.0.1:9001")
        XCTAssertEqual(message(Self.minimalService + "\n" + Self.minimalService.replacingOccurrences(of: "services:\n", with: "")),
                       "config/sluice.yaml: services[1]: service sklearn-iris in namespace kserve-test is already defined by services[0]")
        XCTAssertNil(message("listen: 127.0.0.1:8080"), "services are optional: manifests may drive the gateway")
    }

    func testHostCollisionNamesBothServices() {
        let yaml = """
            routing: {serviceHostTemplate: "{name}-{namespace}.{domain}"}
            services:
            - {name: a-b, namespace: c, revisions: {r1: []}, traffic: [{revisionName: r1, percent: 100}]}
            - {name: a, namespace: b-c, revisions: {r1: []}, traffic: [{revisionName: r1, percent: 100}]}
            """
        XCTAssertEqual(message(yaml), "config/sluice.yaml: services[1]: host a-b-c.example.com is already a host of services[0]")
    }

    func testUnknownKeysAndWrongTypesNameThePath() {
        XCTAssertEqual(message(top: "listn: 127.0.0.1:8080"),
                       "config/sluice.yaml: listn: unknown key, expected one of listen, workers, admin, timeouts, limits, routing, services, tls, upstreamTLS, stateDir, manifests, models, readiness, adminTokenFile, adminTLS, shutdownTimeout, metrics, accessLog, tracing, retries, outlierDetection, revisionQueue, attemptCountHeader, mirror, stateStore")
        XCTAssertEqual(message(top: "timeouts: {requestHeaders: 10s}"),
                       "config/sluice.yaml: timeouts.requestHeaders: unknown key, expected one of requestHeader, keepAliveIdle, upstreamConnect, upstreamResponse, bodyIdle")
        XCTAssertEqual(message(Self.minimalService.replacingOccurrences(of: "percent: 100}", with: "percent: 100, weight: 1}")),
                       "config/sluice.yaml: services[0].traffic[0].weight: unknown key, expected one of revisionName, percent, tag, latestRevision")
        XCTAssertEqual(message(top: "workers: two"), "config/sluice.yaml: workers: expected an integer, got \"two\"")
        XCTAssertEqual(message(top: "workers: 0"), "config/sluice.yaml: workers: 0 is outside 1...1024")
        XCTAssertEqual(message(top: "timeouts: 10s"), "config/sluice.yaml: timeouts: expected a mapping, got \"10s\"")
        XCTAssertEqual(message(top: "routing: {tagHeaderRouting: maybe}"),
                       "config/sluice.yaml: routing.tagHeaderRouting: expected true or false, got \"maybe\"")
        XCTAssertEqual(message("services: {name: x}"), "config/sluice.yaml: services: expected a list, got a mapping")
        XCTAssertEqual(message(top: "routing: {serviceHostTemplate: \"{name}.{domain}\"}"),
                       "config/sluice.yaml: routing.serviceHostTemplate: \"{name}.{domain}\" must contain {name} and {namespace}")
        XCTAssertEqual(message(top: "routing: {domain: example..com}"),
                       "config/sluice.yaml: routing.domain: \"example..com\" is not a DNS subdomain (dot-separated DNS-1123 labels)")
    }

    func testValueSyntaxMessages() {
        XCTAssertEqual(message(top: "timeouts: {requestHeader: 10}"),
                       "config/sluice.yaml: timeouts.requestHeader: expected a duration like 250ms, 10s or 5m, got \"10\"")
        XCTAssertEqual(message(top: "timeouts: {keepAliveIdle: 0}"),
                       "config/sluice.yaml: timeouts.keepAliveIdle: must be greater than 0 (only upstreamResponse can be 0, to disable it)")
        XCTAssertEqual(message(top: "limits: {maxHeaderBytes: 60KB}"),
                       "config/sluice.yaml: limits.maxHeaderBytes: expected a size like 65536, 60KiB or 1GiB, got \"60KB\"")
        XCTAssertEqual(message(top: "limits: {maxHeaderBytes: 4KiB}"),
                       "config/sluice.yaml: limits.maxHeaderBytes: maxRequestTargetBytes (8192) is above maxHeaderBytes (4096), which includes the request line")
        XCTAssertNil(message(top: "admin: \"[::1]:15000\""))
        XCTAssertNil(message(top: "admin: 127.0.0.2:15000"))
        XCTAssertEqual(message(top: "listen: 8080"),
                       "config/sluice.yaml: listen: expected an IP literal and port like 127.0.0.1:8080 or [::1]:8080, got \"8080\"")
        XCTAssertEqual(message(top: "listen: 127.0.0.1:70000"), "config/sluice.yaml: listen: port 70000 is outside 1...65535")
    }

    func testShutdownTimeoutDefaultsToKubernetesGracePeriodAndRefusesBadValues() throws {
        XCTAssertEqual(try parse(Self.minimalService).proxy.shutdownTimeoutMs, 30_000, "terminationGracePeriodSeconds' default")
        XCTAssertEqual(try parse("shutdownTimeout: 2m\n" + Self.minimalService).proxy.shutdownTimeoutMs, 120_000)
        XCTAssertEqual(try parse("shutdownTimeout: 1500ms\n" + Self.minimalService).proxy.shutdownTimeoutMs, 1_500)
        XCTAssertEqual(message(top: "shutdownTimeout: 30"),
                       "config/sluice.yaml: shutdownTimeout: expected a duration like 250ms, 10s or 5m, got \"30\"")
        XCTAssertEqual(message(top: "shutdownTimeout: 0"),
                       "config/sluice.yaml: shutdownTimeout: must be greater than 0 (in-flight requests get this long to finish)")
        XCTAssertEqual(message(top: "shutdownTimeout: {seconds: 30}"),
                       "config/sluice.yaml: shutdownTimeout: expected a string, got a mapping")
    }

    func testMalformedYAMLGivesLineAndColumn() throws {
        let yaml = "listen: 127.0.0.1:8080\nservices:\n- name: x\n  namespace: [unclosed\n"
        XCTAssertThrowsError(try GatewayConfig.parse(yaml: yaml, file: "bad.yaml")) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.line, 5)
            XCTAssertNotNil(error.column)
            XCTAssertTrue(error.description.hasPrefix("bad.yaml: line 5, column "), error.description)
        }
        XCTAssertEqual(message("listen: a\nlisten: b\n"),
                       "config/sluice.yaml: line 1, column 1: duplicate key listen in a mapping")
        XCTAssertEqual(message(""), "config/sluice.yaml: the file is empty, expected a mapping with at least services")
    }
}
