// Tests for the control layer's schema walk: unknown and duplicate fields under each fieldValidation directive, wrong
// types, KServe fields Sluice refuses, and KServe's bookkeeping annotations that never make a revision.
import Foundation
@testable import SluiceControl
import XCTest

final class SchemaValidationTests: XCTestCase {
    typealias F = RolloutFixtures

    /// The seed's canary step with the field name mistyped: once a silent full rollout.
    static let typo = F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10", with: "canaryTrafficPercnt: 10")

    func decode(_ text: String, _ validation: ManifestDecoder.FieldValidation) throws -> ManifestDecoder.DecodedManifests {
        try ManifestDecoder.decode(text, defaultNamespace: F.namespace, fieldValidation: validation)
    }

    func refusal(_ text: String, _ validation: ManifestDecoder.FieldValidation = .strict) -> ManifestError? {
        do {
            _ = try decode(text, validation)
            return nil
        } catch {
            return error as? ManifestError
        }
    }

    func testUnknownFieldStrictIsTheAPIServersBadRequest() throws {
        let error = try XCTUnwrap(refusal(Self.typo))
        XCTAssertEqual(error.description,
                       "InferenceService in version \"v1beta1\" cannot be handled as a InferenceService: strict decoding error: unknown field \"spec.predictor.canaryTrafficPercnt\"")
        XCTAssertEqual(error.strictErrors, ["unknown field \"spec.predictor.canaryTrafficPercnt\""])
        XCTAssertFalse(error.isValidationError, "a 400 BadRequest, not a 422 Invalid")
        // The one-argument form (sluice apply, the manifest directory) is Strict too.
        XCTAssertThrowsError(try ManifestDecoder.decode(Self.typo, defaultNamespace: F.namespace))
    }

    func testUnknownFieldWarnAcceptsAndSaysSoAndIgnoreIsSilent() throws {
        let warned = try decode(Self.typo, .warn)
        XCTAssertEqual(warned.warnings, ["unknown field \"spec.predictor.canaryTrafficPercnt\""])
        let service = try XCTUnwrap(warned.services.first)
        XCTAssertNil(service.predictor.canaryTrafficPercent, "the mistyped field is no canary percent")
        XCTAssertNil(service.manifest["spec"]?["predictor"]?["canaryTrafficPercnt"], "pruned, as the API server prunes it")
        XCTAssertEqual(service.revisionTemplate, try F.decodeOne(F.promote).revisionTemplate,
                       "the unknown field is not part of the revision")

        let ignored = try decode(Self.typo, .ignore)
        XCTAssertEqual(ignored.warnings, [])
        XCTAssertEqual(ignored.services.first?.manifest, service.manifest)
    }

    func testUnknownTopLevelAndMetadataFieldsAreNamedInDocumentOrder() throws {
        let text = F.create
            .replacingOccurrences(of: "metadata:\n", with: "metadata:\n  nmae: other\n")
            .replacingOccurrences(of: "kind: \"InferenceService\"\n", with: "kind: \"InferenceService\"\nextra: 1\n")
            .replacingOccurrences(of: "      storageUri:", with: "      storageURI: x\n      storageUri:")
        XCTAssertEqual(try XCTUnwrap(refusal(text)).strictErrors,
                       ["unknown field \"extra\"", "unknown field \"metadata.nmae\"", "unknown field \"spec.predictor.model.storageURI\""])
        XCTAssertEqual(try decode(text, .warn).warnings.count, 3)
    }

    func testUnknownFieldInsideAListIsNamedWithItsIndex() throws {
        let text = F.create.replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    tolerations:\n    - key: gpu\n")
            .replacingOccurrences(of: "metadata:\n", with: "metadata:\n  ownerReferences:\n  - {}\n  finalizers: [a]\n")
        XCTAssertNoThrow(try decode(text, .strict), "opaque Kubernetes types keep any field")
        let bad = F.create.replacingOccurrences(of: "metadata:\n", with: "metadata:\n  finalizers: [a, {b: 1}]\n")
        XCTAssertEqual(refusal(bad)?.description,
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.finalizers[1]: Invalid value: \"object\": metadata.finalizers[1] in body must be of type string: \"object\"")
    }

    func testDuplicateFieldStrictRefusesWarnKeepsTheLastValue() throws {
        let text = F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10  # <= NB", with: "canaryTrafficPercent: 10\n    canaryTrafficPercent: 20")
        XCTAssertEqual(refusal(text)?.description,
                       "InferenceService in version \"v1beta1\" cannot be handled as a InferenceService: strict decoding error: duplicate field \"spec.predictor.canaryTrafficPercent\"")
        let warned = try decode(text, .warn)
        XCTAssertEqual(warned.warnings, ["duplicate field \"spec.predictor.canaryTrafficPercent\""])
        XCTAssertEqual(warned.services.first?.predictor.canaryTrafficPercent, 20, "the last value wins, as in Go's JSON decoders")
        XCTAssertEqual(try decode(text, .ignore).services.first?.predictor.canaryTrafficPercent, 20)

        // JSON as kubectl sends it, on one line, with quoted keys.
        let json = """
            {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "sklearn-iris", "name": "other"},
             "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://a", "storageUri": "gs://b"}}}}
            """
        XCTAssertEqual(refusal(json)?.strictErrors,
                       ["duplicate field \"metadata.name\"", "duplicate field \"spec.predictor.model.storageUri\""])
        let lenient = try XCTUnwrap(decode(json, .ignore).services.first)
        XCTAssertEqual(lenient.name, "other")
        XCTAssertEqual(lenient.predictor.storageUri, "gs://b")
    }

    func testWrongTypesAreInvalidWithTheSchemaValidatorsWords() {
        let text = F.create
            .replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    minReplicas: one\n    serviceAccountName: [a]\n")
            .replacingOccurrences(of: "metadata:\n", with: "metadata:\n  labels: {team: 7}\n")
        XCTAssertEqual(refusal(text)?.causes.map(\.description), [
            "metadata.labels.team: Invalid value: \"integer\": metadata.labels.team in body must be of type string: \"integer\"",
            "spec.predictor.minReplicas: Invalid value: \"string\": spec.predictor.minReplicas in body must be of type integer: \"string\"",
            "spec.predictor.serviceAccountName: Invalid value: \"array\": spec.predictor.serviceAccountName in body must be of type string: \"array\"",
        ])
        let scalarPredictor = F.create.replacingOccurrences(of: "    model:\n      modelFormat:\n        name: sklearn\n      storageUri: \"gs://kfserving-examples/models/sklearn/1.0/model\"",
                                                            with: "    model: sklearn")
        XCTAssertEqual(refusal(scalarPredictor)?.description,
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.model: Invalid value: \"string\": spec.predictor.model in body must be of type object: \"string\"")
        let protocolVersion = F.create.replacingOccurrences(of: "      storageUri:", with: "      protocolVersion: v3\n      storageUri:")
        XCTAssertEqual(refusal(protocolVersion)?.description,
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.model.protocolVersion: Invalid value: \"v3\": supported values: \"v1\", \"v2\", \"grpc-v1\", \"grpc-v2\"")
    }

    func testKServeFieldsSluiceDoesNotImplementAreRefusedAsNotSupported() throws {
        let transformer = F.create + "\n  transformer:\n    containers:\n    - image: kserve/image-transformer\n"
        let error = try XCTUnwrap(refusal(transformer, .ignore), "refused under every directive: a known field, not an unknown one")
        XCTAssertTrue(error.isValidationError)
        XCTAssertEqual(error.description,
                       "The InferenceService \"sklearn-iris\" is invalid: spec.transformer: Forbidden: not supported by Sluice: Sluice routes requests to the predictor's endpoints only; run the transformer in front of the model server yourself")

        let cases: [(String, String)] = [
            ("spec.explainer", F.create + "\n  explainer:\n    art: {}"),
            ("spec.predictor.containers", Self.predictor("containers: [{image: my/server}]")),
            ("spec.predictor.logger", Self.predictor("logger: {mode: all}")),
            ("spec.predictor.batcher", Self.predictor("batcher: {maxBatchSize: 32}")),
            ("spec.predictor.volumes", Self.predictor("volumes: []")),
            ("spec.predictor.worker", Self.predictor("worker: {}")),
            ("spec.predictor.model.env", Self.model("env: [{name: A, value: b}]")),
            ("spec.predictor.model.image", Self.model("image: my/server")),
            ("spec.predictor.model.readinessProbe", Self.model("readinessProbe: {}")),
            ("spec.predictor.model.storage", Self.model("storage: {key: s3}")),
        ]
        for (field, text) in cases {
            let causes = refusal(text)?.causes ?? []
            XCTAssertEqual(causes.map(\.field), [field], text)
            XCTAssertTrue(causes.first?.description.hasPrefix("\(field): Forbidden: not supported by Sluice: ") ?? false, "\(causes)")
        }
    }

    /// The seed's first manifest with `line` added under `spec.predictor`.
    static func predictor(_ line: String) -> String {
        F.create.replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    \(line)\n")
    }

    /// The seed's first manifest with `line` added under `spec.predictor.model`.
    static func model(_ line: String) -> String {
        F.create.replacingOccurrences(of: "    model:\n", with: "    model:\n      \(line)\n")
    }

    func testAcceptedButNotActedOnFieldsApplyAsWritten() throws {
        let text = F.create.replacingOccurrences(of: "  predictor:\n", with: """
              predictor:
                minReplicas: 1
                maxReplicas: 3
                scaleTarget: 5
                scaleMetric: concurrency
                serviceAccountName: sa
                nodeSelector: {gpu: "true"}
                tolerations: [{key: nvidia.com/gpu, operator: Exists}]
                affinity: {nodeAffinity: {}}
                labels: {team: vision}
                annotations: {note: x}

            """).replacingOccurrences(of: "      storageUri:", with: "      runtime: kserve-sklearnserver\n      runtimeVersion: \"1.3\"\n      protocolVersion: v2\n      resources: {requests: {cpu: 100m, memory: 1Gi}, limits: {nvidia.com/gpu: 1}}\n      storageUri:")
        let service = try XCTUnwrap(decode(text, .strict).services.first)
        XCTAssertEqual(service.predictor.template["minReplicas"], .int(1))
        XCTAssertEqual(service.predictor.resources?["limits"]?["nvidia.com/gpu"], .int(1))
        XCTAssertEqual(service.predictor.runtime, "kserve-sklearnserver")
    }

    func testKServesDisallowedAnnotationsMakeNoRevision() throws {
        for name in InferenceService.revisionDisallowedAnnotations.sorted() {
            var driver = RolloutDriver()
            XCTAssertEqual(try driver.apply(F.create, at: F.t0), .created)
            driver.ready(1, at: F.t0 + 1)
            let annotated = RolloutRulesTests.manifest(storageUri: F.model1, annotations: [name: "{a: 1}"])
            _ = try driver.apply(annotated, at: F.t0 + 2)
            XCTAssertEqual(driver.record?.revisions.count, 1, "\(name) changed nothing served")
            _ = try driver.apply(RolloutRulesTests.manifest(storageUri: F.model1, annotations: [name: "2"]), at: F.t0 + 3)
            XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(1), name)
        }
        // Any other annotation is part of the template, as in KServe.
        var driver = RolloutDriver()
        _ = try driver.apply(F.create, at: F.t0)
        _ = try driver.apply(RolloutRulesTests.manifest(storageUri: F.model1, annotations: ["example.com/team": "x"]), at: F.t0 + 1)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(2))
    }

    func testKServesDisallowedLabelMakesNoRevisionWhileAnyOtherLabelDoes() throws {
        func labelled(_ labels: [String: String]) -> String {
            RolloutRulesTests.manifest(storageUri: F.model1).replacingOccurrences(
                of: "  name: sklearn-iris\n",
                with: "  name: sklearn-iris\n  labels:\n" + labels.map { "    \($0.key): \"\($0.value)\"\n" }.joined())
        }
        var driver = RolloutDriver()
        XCTAssertEqual(try driver.apply(F.create, at: F.t0), .created)
        _ = try driver.apply(labelled(["networking.knative.dev/visibility": "cluster-local"]), at: F.t0 + 1)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(1), "Knative's visibility label is not part of a revision")
        _ = try driver.apply(labelled(["networking.knative.dev/visibility": "cluster-local", "team": "a"]), at: F.t0 + 2)
        XCTAssertEqual(driver.record?.latestCreatedRevision, F.revision(2), "any other label is, as in KServe")
    }
}
