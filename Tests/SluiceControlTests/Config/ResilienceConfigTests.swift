// Tests for the resilience settings as users write them: `retries`, `outlierDetection`, `revisionQueue` in the config
// file, a static service's own `retries`, and the manifest's annotation, `timeout` and `containerConcurrency`.
import Foundation
@testable import SluiceControl
import SluiceProxy
import SluiceRouting
import XCTest

final class ResilienceConfigTests: XCTestCase {
    typealias F = RolloutFixtures

    private func message(_ yaml: String) -> String? {
        do {
            _ = try GatewayConfig.parse(yaml: yaml + "\n" + GatewayConfigTests.minimalService, file: "config/sluice.yaml")
            return nil
        } catch {
            return error.description
        }
    }

    private func manifestMessage(_ text: String) -> String? {
        do {
            _ = try ManifestDecoder.decode(text, defaultNamespace: "default")
            return nil
        } catch {
            return error.description
        }
    }

    func testRetriesAndOutlierDetectionAreReadWithTheirDefaultsForWhatIsLeftOut() throws {
        let config = try GatewayConfig.parse(yaml: """
            retries: {attempts: 3, perTryTimeout: 2s, retryOn: [connect-failure, reset], retriableStatusCodes: [502, 503]}
            outlierDetection: {consecutive5xx: 0, baseEjectionTime: 10s}
            revisionQueue: {depthPerSlot: 4, timeout: 2s}
            attemptCountHeader: true
            """ + "\n" + GatewayConfigTests.minimalService, file: "test.yaml")
        let retries = config.proxy.retries
        XCTAssertEqual(retries.attempts, 3)
        XCTAssertEqual(retries.perTryTimeoutMs, 2_000)
        XCTAssertEqual(retries.retryOn, [.connectFailure, .reset])
        XCTAssertEqual(retries.retriableStatusCodes, [502, 503])
        XCTAssertEqual(retries.maxReplayBytes, 64 * 1024, "left out: the default")
        XCTAssertEqual(config.proxy.outlierDetection.consecutive5xx, 0)
        XCTAssertEqual(config.proxy.outlierDetection.consecutiveGatewayFailures, 5)
        XCTAssertEqual(config.proxy.outlierDetection.baseEjectionMs, 10_000)
        XCTAssertEqual(config.proxy.revisionQueue.depthPerSlot, 4)
        XCTAssertEqual(config.proxy.revisionQueue.timeoutMs, 2_000)
        XCTAssertTrue(config.proxy.attemptCountHeader)
    }

    func testAStaticServicesOwnRetriesStartFromTheGateways() throws {
        let config = try GatewayConfig.parse(yaml: """
            retries: {attempts: 1, perTryTimeout: 1s}
            services:
            - name: sklearn-iris
              namespace: kserve-test
              retries: {attempts: 4}
              revisions:
                sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
              traffic:
              - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
            """, file: "test.yaml")
        let own = try XCTUnwrap(config.services.first?.retries)
        XCTAssertEqual(own.attempts, 4)
        XCTAssertEqual(own.perTryTimeoutMs, 1_000, "inherited from the gateway's retries")
    }

    func testBadRetrySettingsAreRefusedWithTheirField() {
        XCTAssertEqual(message("retries: {retryOn: [connect-failure, 5xx]}"),
                       "config/sluice.yaml: retries.retryOn[1]: unknown retry condition \"5xx\", expected one of connect-failure, refused-stream, reset-before-request, reset-idempotent, reset, retriable-status-codes")
        XCTAssertEqual(message("retries: {retriableStatusCodes: [200]}"),
                       "config/sluice.yaml: retries.retriableStatusCodes[0]: 200 is not a status a retry can be made for (400...599)")
        XCTAssertEqual(message("retries: {attempt: 2}"),
                       "config/sluice.yaml: retries.attempt: unknown key, expected one of attempts, perTryTimeout, retryOn, retriableStatusCodes, maxReplayBytes, budget")
        XCTAssertEqual(message("outlierDetection: {baseEjectionTime: 60s, maxEjectionTime: 30s}"),
                       "config/sluice.yaml: outlierDetection.maxEjectionTime: maxEjectionTime (30000 ms) is below baseEjectionTime (60000 ms)")
        XCTAssertEqual(message("revisionQueue: {timeout: 0s}"), "config/sluice.yaml: revisionQueue.timeout: must be greater than 0")
    }

    func testTheManifestsTimeoutConcurrencyAndRetriesAnnotationAreValidatedAndRouted() throws {
        let manifest = F.create
            .replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    timeout: 30\n    containerConcurrency: 2\n")
            .replacingOccurrences(of: "metadata:\n", with: "metadata:\n  annotations:\n    serving.sluice.dev/retries: '{\"attempts\": 1, \"perTryTimeout\": \"3s\"}'\n")
        let service = try F.decodeOne(manifest)
        let retries = try XCTUnwrap(service.retryPolicy(base: RetryPolicy()))
        XCTAssertEqual(retries.attempts, 1)
        XCTAssertEqual(retries.perTryTimeoutMs, 3_000)
        XCTAssertEqual(service.predictor.template["timeout"]?.intValue, 30, "part of the revision template: a change is a new revision")
        XCTAssertEqual(service.predictor.template["containerConcurrency"]?.intValue, 2)

        let badTimeout = F.create.replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    timeout: 0\n")
        XCTAssertEqual(manifestMessage(badTimeout),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.timeout: Invalid value: 0: must be between 1 and 86400 seconds")
        let badConcurrency = F.create.replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    containerConcurrency: \"1\"\n")
        XCTAssertEqual(manifestMessage(badConcurrency),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.containerConcurrency: Invalid value: \"string\": spec.predictor.containerConcurrency in body must be of type integer: \"string\"")
        let badAnnotation = F.create.replacingOccurrences(of: "metadata:\n", with: "metadata:\n  annotations:\n    serving.sluice.dev/retries: '{\"atempts\": 1}'\n")
        XCTAssertEqual(manifestMessage(badAnnotation),
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/retries]: Invalid value: \"{\"atempts\": 1}\": atempts: unknown key, expected one of attempts, perTryTimeout, retryOn, retriableStatusCodes, maxReplayBytes, budget")
    }
}
