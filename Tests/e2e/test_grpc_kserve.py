"""gRPC end to end: KServe's V2 `inference.GRPCInferenceService/ModelInfer` through Sluice to real KServe model
servers' gRPC ports (h2c endpoints), with the 90/10 canary split and the `latest-`/`prev-` tag authorities.
Which model answered is told by the predictions (the two models disagree on the inputs) and by `sluice-revision`.
And the active health check of such an endpoint against the real server: it has no grpc.health.v1, so KServe V2
ModelReady decides."""

import math
from collections import Counter

import grpc
import pytest
import requests
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from conftest import LATEST_HOST, LOOPBACK, MODEL_NAME, PREV_HOST, REV1, REV2, SERVICE_HOST, STORAGE_URI_MODEL_1, wait_until
from test_gateway_kserve import which_model
from test_rollout_workflow import CREATE, apply, rollout_status


def infer_request(inputs):
    flat = [float(v) for row in inputs for v in row]
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[len(inputs), 4],
                                                   contents=pb.InferTensorContents(fp32_contents=flat))
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor])


def predictions(response):
    out = response.outputs[0]
    if out.contents.int64_contents:
        return list(out.contents.int64_contents)
    if out.contents.int_contents:
        return list(out.contents.int_contents)
    # KServe may answer in raw_output_contents (little-endian INT64 for sklearn class indices).
    import numpy as np
    dtype = {"INT64": np.int64, "INT32": np.int32}[out.datatype]
    return np.frombuffer(response.raw_output_contents[0], dtype=dtype).tolist()


def channel(sluice, authority):
    return grpc.insecure_channel(f"{LOOPBACK}:{sluice.port}", options=[("grpc.default_authority", authority)])


def call(stub, request):
    response, rpc = stub.ModelInfer.with_call(request, timeout=10)
    header = dict(rpc.initial_metadata()).get("sluice-revision")
    return response, header


def test_grpc_model_infer_split_and_tags(start_sluice, trained):
    sluice = start_sluice(percent_00002=10)
    request = infer_request(trained.distinguishing_inputs)
    # Tag authorities always reach their revision.
    for host, revision in ((LATEST_HOST, REV2), (PREV_HOST, REV1)):
        with channel(sluice, host) as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            for _ in range(20):
                response, header = call(stub, request)
                assert header == revision
                assert which_model(trained, predictions(response)) == revision
    # The default authority follows the 90/10 split.
    n = 600
    by_model = Counter()
    with channel(sluice, SERVICE_HOST) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(n):
            response, header = call(stub, request)
            model = which_model(trained, predictions(response))
            assert model == header, (predictions(response), header)
            by_model[model] += 1
    p = 0.10
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(by_model[REV2] - n * p) <= 5 * sigma, dict(by_model)
    assert by_model[REV1] + by_model[REV2] == n


def test_grpc_errors_are_grpc_status(start_sluice, trained):
    sluice = start_sluice(percent_00002=10)
    with channel(sluice, "nobody.example.com") as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(infer_request(trained.distinguishing_inputs), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "no InferenceService" in error.value.details()
    # A KServe-side error (unknown model) comes back with KServe's own status, relayed in the trailers.
    with channel(sluice, SERVICE_HOST) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(pb.ModelInferRequest(model_name="no-such-model"), timeout=10)
        assert error.value.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN), error.value


def test_grpc_through_the_control_plane_canary(start_control_sluice, kserve_servers, trained):
    """The seed's create + canary manifests, with `models:` listing each server's HTTP and h2c (gRPC) ports: the
    readiness probes use the HTTP port, gRPC calls reach the revisions' gRPC ports with the 90/10 split."""
    from conftest import STORAGE_URI_MODEL_1, STORAGE_URI_MODEL_2
    from test_rollout_workflow import CANARY, CREATE, apply, rollout_status, show
    sluice = start_control_sluice(models={
        STORAGE_URI_MODEL_1: [kserve_servers[REV1].address, f'"{kserve_servers[REV1].grpc_address}"'],
        STORAGE_URI_MODEL_2: [kserve_servers[REV2].address, f'"{kserve_servers[REV2].grpc_address}"']})
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    apply(sluice, CANARY, "configured")
    rollout_status(sluice)
    r = sluice.cli("get", "revisions", MODEL_NAME, "-n", "kserve-test")
    assert r.returncode == 0 and kserve_servers[REV2].grpc_address in r.stdout, show(r)
    request = infer_request(trained.distinguishing_inputs)
    # (Tag hosts exist only with the tag-routing annotation, step 5; the static-config test covers them.)
    by_model = Counter()
    with channel(sluice, SERVICE_HOST) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(300):
            response, header = call(stub, request)
            assert which_model(trained, predictions(response)) == header
            by_model[header] += 1
    assert by_model[REV1] + by_model[REV2] == 300
    assert 5 <= by_model[REV2] <= 70, dict(by_model)


def test_grpc_only_revision_is_checked_with_kserve_model_ready(start_control_sluice, kserve_servers, trained):
    """KServe's model server implements no grpc.health.v1 (it answers UNIMPLEMENTED "Method not found!"): a revision
    whose only endpoint is the server's gRPC port is checked with KServe V2 `ModelReady` instead, becomes Ready on
    it and serves ModelInfer; the check's results are in /metrics under the h2c:// endpoint."""
    endpoint = kserve_servers[REV1].grpc_address
    sluice = start_control_sluice(models={STORAGE_URI_MODEL_1: [f'"{endpoint}"']})
    with grpc.insecure_channel(f"{LOOPBACK}:{kserve_servers[REV1].grpc_port}") as direct:
        health = direct.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as error:
            health(b"", timeout=10)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED, "KServe grew grpc.health.v1: the fallback is moot"
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    with channel(sluice, SERVICE_HOST) as ch:
        response, header = call(pb_grpc.GRPCInferenceServiceStub(ch), infer_request(trained.distinguishing_inputs))
        assert header == REV1
        assert which_model(trained, predictions(response)) == REV1
    series = f'sluice_readiness_probes_total{{endpoint="{endpoint}",model="{MODEL_NAME}",result="%s"}}'

    def counts():
        text = requests.get(f"{sluice.server}/metrics", timeout=10).text
        found = {}
        for line in text.splitlines():
            for result in ("success", "failure"):
                if line.startswith(series % result + " "):
                    found[result] = float(line.rsplit(" ", 1)[1])
        return found

    wait_until(lambda: counts().get("success", 0) >= 2, 10, "two passing gRPC checks in /metrics")
    assert counts().get("failure", 0) == 0, counts()
