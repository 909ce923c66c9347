// Control layer: the serving.kserve.io/v1beta1 InferenceService schema as Sluice serves it — every field the decoder
// accepts (with the description kubectl explain prints) and KServe's fields it refuses as not supported.

extension SchemaNode {
    /// The whole InferenceService object.
    static let inferenceService = SchemaNode.object(
        "InferenceService is the Schema for the InferenceServices API",
        definition: "io.kserve.serving.v1beta1.InferenceService", [
            .init("apiVersion", .string("APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")),
            .init("kind", .string("Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")),
            .init("metadata", objectMeta),
            .init("spec", .object("InferenceServiceSpec is the top level type for this resource", [
                .init("predictor", predictor),
                .init("transformer", .unsupported("Sluice routes requests to the predictor's endpoints only; run the transformer in front of the model server yourself")),
                .init("explainer", .unsupported("Sluice routes requests to the predictor's endpoints only; :explain requests pass through to the predictor's model server")),
            ])),
            .init("status", SchemaNode(.opaque, "InferenceServiceStatus defines the observed state of InferenceService; written by the server, ignored in what clients send")),
        ])

    /// Kubernetes' ObjectMeta, as the API server reads it from a custom resource.
    static let objectMeta = SchemaNode.object(
        "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", [
            .init("annotations", SchemaNode(.stringMap, "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata. Sluice reads its serving.sluice.dev/* annotations and KServe's serving.kserve.io/enable-tag-routing; any other annotation is part of the revision template (a change makes a new revision), but for those that only steer traffic and kubectl's and KServe's bookkeeping.")),
            .init("creationTimestamp", .string("CreationTimestamp is a timestamp representing the server time when this object was created. Populated by the system. Read-only.", format: "date-time")),
            .init("deletionGracePeriodSeconds", .integer("Number of seconds allowed for this object to gracefully terminate before it will be removed from the system. Populated by the system. Read-only.")),
            .init("deletionTimestamp", .string("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted. Populated by the system. Read-only.", format: "date-time")),
            .init("finalizers", SchemaNode(.array(.string("")), "Must be empty before the object is deleted from the registry.")),
            .init("generateName", .string("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.")),
            .init("generation", .integer("A sequence number representing a specific generation of the desired state. Populated by the system. Read-only.")),
            .init("labels", SchemaNode(.stringMap, "Map of string keys and values that can be used to organize and categorize (scope and select) objects. Part of the revision template: a change makes a new revision.")),
            .init("managedFields", SchemaNode(.array(SchemaNode(.opaque, "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.")),
                                              "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow. This is mostly for internal housekeeping, and users typically shouldn't need to set or understand this field.")),
            .init("name", .string("Name must be unique within a namespace. Is required when creating resources. For an InferenceService it must be a DNS-1035 label short enough that its revision names are DNS labels too.")),
            .init("namespace", .string("Namespace defines the space within which each name must be unique. An empty namespace is equivalent to the \"default\" namespace.")),
            .init("ownerReferences", SchemaNode(.array(SchemaNode(.opaque, "OwnerReference contains enough information to let you identify an owning object.")),
                                                "List of objects depended by this object.")),
            .init("resourceVersion", .string("An opaque value that represents the internal version of this object that can be used by clients to determine when objects have changed. Populated by the system. Read-only.")),
            .init("selfLink", .string("Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.")),
            .init("uid", .string("UID is the unique in time and space value for this object. It is typically generated by the server on successful creation of a resource and is not allowed to change on PUT operations. Populated by the system. Read-only.")),
        ])

    /// Predictor implementations: `model` (the v1beta1 form with `modelFormat`), then the older per-framework form.
    static let predictorImplementations = ["model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                                           "huggingface", "pmml", "lightgbm", "paddle"]

    /// `spec.predictor`: KServe's PredictorSpec (ComponentExtensionSpec, the implementations and the inlined PodSpec).
    static let predictor: SchemaNode = {
        var properties: [SchemaProperty] = [
            .init("canaryTrafficPercent", .integer("CanaryTrafficPercent defines the traffic split percentage between the candidate revision and the last ready revision. Unset: the latest ready revision takes all traffic (promote); 0: the previous rolled-out revision keeps it (pin).", minimum: 0, maximum: 100)),
            .init("containerConcurrency", .integer("ContainerConcurrency specifies how many requests can be processed concurrently per endpoint; 0 is no limit. Sluice enforces it per endpoint and queues what is over.", minimum: 0, maximum: 1000)),
            .init("timeout", .integer("TimeoutSeconds specifies the number of seconds to wait before timing out a request to the component. Sluice enforces it per request.", minimum: 1, maximum: 86_400, unit: "seconds")),
            // Pod counts and placement: Sluice routes to endpoints it is given and runs no pods, so these change
            // nothing it serves; they are kept so that a KServe manifest applies as written.
            .init("minReplicas", .integer("Minimum number of replicas. Accepted and kept; Sluice runs no pods, so it does not act on it.", minimum: 0)),
            .init("maxReplicas", .integer("Maximum number of replicas for autoscaling. Accepted and kept; Sluice does not act on it.", minimum: 0)),
            .init("scaleTarget", .integer("ScaleTarget specifies the integer target value of the metric type the Autoscaler watches for. Accepted and kept; Sluice does not act on it.")),
            .init("scaleMetric", .string("ScaleMetric defines the scaling metric type watched by autoscaler. Accepted and kept; Sluice does not act on it.", allowed: ["cpu", "memory", "concurrency", "rps"])),
            .init("serviceAccountName", .string("ServiceAccountName is the name of the ServiceAccount to use to run this pod (KServe uses it for storage credentials). Accepted and kept; Sluice does not act on it.")),
            .init("nodeSelector", SchemaNode(.stringMap, "NodeSelector is a selector which must be true for the pod to fit on a node. Accepted and kept; Sluice does not act on it.")),
            .init("tolerations", SchemaNode(.array(SchemaNode(.opaque, "The pod this Toleration is attached to tolerates any taint that matches the triple <key,value,effect>.")),
                                            "If specified, the pod's tolerations. Accepted and kept; Sluice does not act on it.")),
            .init("affinity", SchemaNode(.opaque, "If specified, the pod's scheduling constraints. Accepted and kept; Sluice does not act on it.")),
            .init("labels", SchemaNode(.stringMap, "Labels that will be added to the component pod. Part of the revision template: a change makes a new revision.")),
            .init("annotations", SchemaNode(.stringMap, "Annotations that will be added to the component pod. Part of the revision template: a change makes a new revision.")),
        ]
        for name in predictorImplementations {
            properties.append(.init(name, name == "model" ? model : framework(name)))
        }
        let notRun = "Sluice routes to the endpoints it is given and runs no containers"
        let refused: [(String, String)] = [
            ("logger", "request logging to a sink is not implemented; Sluice's access log and OTLP traces record every request"),
            ("batcher", "request batching is not implemented; requests pass to the model server one by one"),
            ("worker", "multi-node workers are not implemented; \(notRun)"),
            ("deploymentStrategy", "\(notRun), so it has no deployment to update"),
            ("scaleMetricType", "\(notRun), so it has nothing to autoscale"),
            ("autoScaling", "\(notRun), so it has nothing to autoscale"),
            ("containers", "custom containers are not implemented; \(notRun): use a model implementation (model, sklearn, ...) with the serving.sluice.dev/endpoints annotation or the gateway config's endpoints"),
        ] + podSpecFields.map { ($0, notRun) }
        for (name, reason) in refused { properties.append(.init(name, .unsupported(reason))) }
        return .object("PredictorSpec defines the configuration for a predictor. Exactly one implementation (model, or an older per-framework field) is required.", properties)
    }()

    /// The fields of the Kubernetes PodSpec KServe inlines in a predictor, but those Sluice accepts (above).
    static let podSpecFields = [
        "volumes", "initContainers", "ephemeralContainers", "restartPolicy", "terminationGracePeriodSeconds",
        "activeDeadlineSeconds", "dnsPolicy", "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork",
        "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname", "subdomain",
        "schedulerName", "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates", "runtimeClassName",
        "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os",
        "hostUsers", "schedulingGates", "resourceClaims", "resources",
    ]

    /// The fields of the Kubernetes Container KServe inlines in a model spec, but `resources` (accepted).
    static let containerFields = [
        "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resizePolicy", "restartPolicy",
        "volumeMounts", "volumeDevices", "livenessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
        "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
    ]

    /// `storageUri`, `protocolVersion`, `runtimeVersion`, `resources` — common to `model` and the framework form.
    static var extensionFields: [SchemaProperty] {
        let notRun = "Sluice routes to the endpoints it is given and runs no model server container"
        var properties: [SchemaProperty] = [
            .init("storageUri", .string("This field points to the location of the trained model which is mounted onto the pod. Sluice uses it to name the model and, through the gateway config, to find its endpoints.")),
            .init("protocolVersion", .string("Protocol version to use by the predictor (i.e. v1 or v2 or grpc-v1 or grpc-v2)", allowed: ["v1", "v2", "grpc-v1", "grpc-v2"])),
            .init("runtimeVersion", .string("Runtime version of the predictor docker image. Accepted and kept (part of the revision template); Sluice runs no image.")),
            .init("resources", SchemaNode(.opaque, "Compute Resources required by this container (requests, limits). Accepted and kept (part of the revision template); Sluice runs no containers, so it does not act on it.")),
            .init("storage", .unsupported("storage specs are not implemented; set storageUri")),
            .init("readinessProbe", .unsupported("\(notRun); the serving.sluice.dev/readiness-path annotation sets the path its endpoints are checked on")),
        ]
        for name in containerFields { properties.append(.init(name, .unsupported(notRun))) }
        return properties
    }

    static let model = SchemaNode.object("Model spec for any arbitrary framework.", [
        .init("modelFormat", .object("ModelFormat being served.", [
            .init("name", .string("Name of the model format (sklearn, xgboost, tensorflow, ...).")),
            .init("version", .string("Version of the model format. Used in validating that a predictor is supported by a runtime.")),
        ])),
        .init("runtime", .string("Specific ClusterServingRuntime/ServingRuntime name to use for deployment. Part of the revision template.")),
    ] + extensionFields)

    static func framework(_ name: String) -> SchemaNode {
        .object("Spec for the \(name) model server (the v1beta1 form before `model`).", extensionFields)
    }
}
