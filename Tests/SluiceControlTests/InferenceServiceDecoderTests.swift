// Tests for the control layer's manifest decoder: the seed's manifests as users apply them, and every refusal word for word.
import Foundation
@testable import SluiceControl
import SluiceRouting
import XCTest

final class InferenceServiceDecoderTests: XCTestCase {
    typealias F = RolloutFixtures

    func message(_ text: String, namespace: String = "default") -> String? {
        do {
            _ = try ManifestDecoder.decode(text, defaultNamespace: namespace)
            return nil
        } catch {
            return error.description
        }
    }

    func testSeedManifestsDecodeUnchanged() throws {
        let create = try F.decodeOne(F.create)
        XCTAssertEqual(create.name, "sklearn-iris")
        XCTAssertEqual(create.namespace, "kserve-test", "no metadata.namespace: the -n namespace")
        XCTAssertEqual(create.predictor.implementation, "model")
        XCTAssertEqual(create.predictor.modelFormat, "sklearn")
        XCTAssertEqual(create.predictor.storageUri, F.model1)
        XCTAssertNil(create.predictor.canaryTrafficPercent)
        XCTAssertEqual(create.manifest["metadata"]?["namespace"], .string("kserve-test"))

        let canary = try F.decodeOne(F.canary)
        XCTAssertEqual(canary.predictor.canaryTrafficPercent, 10)
        XCTAssertEqual(canary.predictor.storageUri, F.model2)
        XCTAssertNil(canary.predictor.template["canaryTrafficPercent"], "not part of the revision template")
        XCTAssertEqual(canary.manifest["spec"]?["predictor"]?["canaryTrafficPercent"], .int(10), "but kept in the manifest")

        XCTAssertEqual(try F.decodeOne(F.rollback).predictor.canaryTrafficPercent, 0)
        XCTAssertNil(try F.decodeOne(F.promote).predictor.canaryTrafficPercent)
        let tagged = try F.decodeOne(F.tagged)
        XCTAssertTrue(tagged.isTagRoutingEnabled)
        XCTAssertEqual(tagged.annotations, [InferenceService.tagRoutingAnnotation: "true"])
        // Same predictor, different annotations: different templates (step 5's new revision).
        XCTAssertEqual(tagged.predictor.template, try F.decodeOne(F.canary).predictor.template)
        XCTAssertNotEqual(tagged.revisionTemplate, try F.decodeOne(F.canary).revisionTemplate)
    }

    func testRouteAnnotationsAreNotPartOfTheRevisionTemplate() throws {
        let plain = try F.decodeOne(F.canary)
        for name in InferenceService.routeAnnotations.sorted() {
            var annotated = plain
            annotated.annotations[name] = "x"
            XCTAssertEqual(annotated.revisionTemplate, plain.revisionTemplate, "\(name) changes routes, not revisions")
        }
        var labelled = plain
        labelled.annotations["example.com/team"] = "vision"
        XCTAssertNotEqual(labelled.revisionTemplate, plain.revisionTemplate, "any other annotation is a new revision")
    }

    func testJSONSeveralDocumentsAndTheOlderFrameworkForm() throws {
        let text = """
            {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
             "metadata": {"name": "sklearn-iris", "namespace": "kserve-test"},
             "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"modelFormat": {"name": "sklearn"},
               "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model-2", "runtime": "kserve-sklearnserver",
               "protocolVersion": "v2", "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}, "minReplicas": 1}}}
            ---
            # the v1beta1 form before `model`
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata:
              name: sklearn-old
              namespace: other
            spec:
              predictor:
                sklearn:
                  storageUri: gs://kfserving-examples/models/sklearn/1.0/model
            ---
            """
        let services = try ManifestDecoder.decode(text, defaultNamespace: "default")
        XCTAssertEqual(services.map(\.name), ["sklearn-iris", "sklearn-old"])
        XCTAssertEqual(services.map(\.namespace), ["kserve-test", "other"])
        let first = services[0].predictor
        XCTAssertEqual(first.runtime, "kserve-sklearnserver")
        XCTAssertEqual(first.protocolVersion, "v2")
        XCTAssertEqual(first.resources?["limits"]?["memory"], .string("2Gi"))
        XCTAssertEqual(first.template["minReplicas"], .int(1), "unknown predictor fields kept for template comparison")
        XCTAssertEqual(services[1].predictor.implementation, "sklearn")
        XCTAssertNil(services[1].predictor.modelFormat)
        XCTAssertEqual(services[1].predictor.storageUri, F.model1)
        // The canonical value round-trips through JSON unchanged (GET and the state file).
        let data = try JSONEncoder().encode(services[0].manifest)
        XCTAssertEqual(try JSONDecoder().decode(JSONValue.self, from: data), services[0].manifest)
    }

    func testCanaryPercentOutOfRange() {
        let text = F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10", with: "canaryTrafficPercent: 150")
        XCTAssertThrowsError(try ManifestDecoder.decode(text, defaultNamespace: "default")) { error in
            XCTAssertEqual((error as? ManifestError)?.isValidationError, true, "kubectl prints it bare")
        }
        XCTAssertEqual(message(text),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: 150: must be between 0 and 100")
        let negative = F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10", with: "canaryTrafficPercent: -1")
        XCTAssertEqual(message(negative),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: -1: must be between 0 and 100")
        let quoted = F.canary.replacingOccurrences(of: "canaryTrafficPercent: 10", with: "canaryTrafficPercent: \"10\"")
        XCTAssertEqual(message(quoted),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: \"string\": spec.predictor.canaryTrafficPercent in body must be of type integer: \"string\"")
    }

    func testPredictorBoundsAndTypesComeFromTheSchemaWithTheirWordsKept() {
        func predictor(_ line: String) -> String {
            F.create.replacingOccurrences(of: "  predictor:\n", with: "  predictor:\n    \(line)\n")
        }
        XCTAssertEqual(message(predictor("containerConcurrency: 1001")),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.containerConcurrency: Invalid value: 1001: must be between 0 and 1000")
        XCTAssertEqual(message(predictor("timeout: 1.5")),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.timeout: Invalid value: \"number\": spec.predictor.timeout in body must be of type integer: \"number\"")
        // Each problem once, in the bracketed list, though the schema walk and the predictor's checks both look.
        XCTAssertEqual(message(predictor("canaryTrafficPercent: 101\n    timeout: 0")),
                       "The InferenceService \"sklearn-iris\" is invalid: [spec.predictor.canaryTrafficPercent: Invalid value: 101: must be between 0 and 100, spec.predictor.timeout: Invalid value: 0: must be between 1 and 86400 seconds]")
        let arrayModel = F.create.replacingOccurrences(of: "    model:\n      modelFormat:\n        name: sklearn\n      storageUri: \"gs://kfserving-examples/models/sklearn/1.0/model\"", with: "    model: []")
        XCTAssertEqual(message(arrayModel),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.model: Invalid value: \"array\": spec.predictor.model in body must be of type object: \"array\"")
    }

    func testUnknownKindOrVersion() {
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "serving.kserve.io/v1beta1", with: "serving.kubeflow.org/v1alpha2")),
                       "no matches for kind \"InferenceService\" in version \"serving.kubeflow.org/v1alpha2\"")
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "kind: \"InferenceService\"", with: "kind: \"Service\"")),
                       "no matches for kind \"Service\" in version \"serving.kserve.io/v1beta1\"")
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "kind: \"InferenceService\"\n", with: "")),
                       "error validating \"STDIN\": error validating data: [kind not set]")
    }

    func testNameMustBeADNS1035Label() {
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "name: \"sklearn-iris\"", with: "name: \"Bad_Name\"")),
                       "The InferenceService \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "name: \"sklearn-iris\"", with: "name: \"1sklearn\"")),
                       "The InferenceService \"1sklearn\" is invalid: metadata.name: Invalid value: \"1sklearn\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "  name: \"sklearn-iris\"\n", with: "  labels: {}\n")),
                       "The InferenceService \"\" is invalid: metadata.name: Required value: name or generateName is required")
        // 40 characters plus "-predictor-default-00001" is 64: revision names would not be DNS labels.
        let long = String(repeating: "a", count: 40)
        XCTAssertEqual(message(F.create.replacingOccurrences(of: "name: \"sklearn-iris\"", with: "name: \"\(long)\"")),
                       "The InferenceService \"\(long)\" is invalid: metadata.name: Invalid value: \"\(long)\": must be no more than 39 characters, so that revision names like \"\(long)-predictor-default-00001\" are DNS-1035 labels of at most 63")
        XCTAssertNoThrow(try ManifestDecoder.decode(F.create.replacingOccurrences(of: "sklearn-iris", with: long),
                                                    defaultNamespace: "default", componentSuffix: "-predictor"))
    }

    func testMissingModelOrStorageUri() {
        let noModel = """
            apiVersion: serving.kserve.io/v1beta1
            kind: InferenceService
            metadata:
              name: sklearn-iris
            spec:
              predictor:
                canaryTrafficPercent: 10
            """
        XCTAssertEqual(message(noModel),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor: Required value: exactly one of model, sklearn, xgboost, tensorflow, pytorch, triton, onnx, huggingface, pmml, lightgbm, paddle must be specified")
        let noStorage = F.create.replacingOccurrences(of: "      storageUri: \"gs://kfserving-examples/models/sklearn/1.0/model\"", with: "")
        XCTAssertEqual(message(noStorage),
                       "The InferenceService \"sklearn-iris\" is invalid: spec.predictor.model.storageUri: Required value: the model's storageUri is required; it names the model and, through the gateway config, its endpoints")
        // Several problems: kubectl's bracketed list.
        let both = noStorage.replacingOccurrences(of: "name: \"sklearn-iris\"", with: "name: \"Bad_Name\"")
        XCTAssertEqual(message(both),
                       "The InferenceService \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?'), spec.predictor.model.storageUri: Required value: the model's storageUri is required; it names the model and, through the gateway config, its endpoints]")
    }

    func testBadEndpointsAnnotation() {
        let text = RolloutRulesTests.manifest(annotations: [InferenceService.endpointsAnnotation: "127.0.0.1:9001,localhost:9002"])
        XCTAssertEqual(message(text),
                       "The InferenceService \"sklearn-iris\" is invalid: metadata.annotations[serving.sluice.dev/endpoints]: Invalid value: \"127.0.0.1:9001,localhost:9002\": \"localhost:9002\" is not an IP:port endpoint; expected a comma-separated list like 127.0.0.1:9001,[::1]:9002")
    }

    func testMalformedYAMLNamesLineAndColumn() throws {
        let text = """
            apiVersion: "serving.kserve.io/v1beta1"
            kind: "InferenceService"
            metadata:
              name: "sklearn-iris"
            spec:
              predictor:
                model:
                  storageUri: "gs://kfserving-examples/models/sklearn/1.0/model"
                 modelFormat: sklearn
            """
        XCTAssertThrowsError(try ManifestDecoder.decode(text, defaultNamespace: "default", source: "canary.yaml")) { error in
            guard let error = error as? ManifestError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.line, 9)
            XCTAssertEqual(error.column, 6)
            XCTAssertFalse(error.isValidationError, "kubectl prints it after `error: `")
            XCTAssertEqual(error.description,
                           "error parsing canary.yaml: error converting YAML to JSON: yaml: line 9, column 6: did not find expected key")
        }
        // One bad document refuses the whole input, the good one before it included.
        XCTAssertNotNil(message(F.create + "\n---\n" + text))
    }
}
