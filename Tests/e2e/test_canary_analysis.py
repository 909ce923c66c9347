"""Automatic canary analysis, end to end: `sluice serve` (release build) in front of real KServe sklearn-iris servers,
driven with the `sluice` CLI, a background load of keep-alive clients during every analysis.

- a good canary (model-2) is promoted through every step, each decision an event with its figures;
- a canary answering 500 for 30 % of its predictions is rolled back within the allowed failed checks;
- a canary slower than the previous revision is rolled back on the p99 ratio;
- a user's apply in the middle (canaryTrafficPercent) ends the analysis;
- pause and resume work from the CLI (`sluice rollout pause|resume`) and from the gate annotation;
- a dark launch (a first step of 0 with mirroring) rolls a failing canary back on mirrored requests alone, before a
  single client was served by it.

Every interval is 1 s and every wait has a deadline; the bad canaries are extra KServe servers started once for this
module with kserve_iris.py's `--fail-percent` / `--delay-ms`.
"""

import json
import os
import sys
import time
from collections import Counter
from typing import Dict, List, Optional

import pytest
import requests

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

from conftest import (HERE, KSERVE_START_TIMEOUT, MODEL_NAME, NAMESPACE, REQUEST_TIMEOUT, REV1, REV2, SERVICE_HOST,
                      STORAGE_URI_MODEL_1, STORAGE_URI_MODEL_2, ControlSluice, Load, _kill, http_ok, spawn, wait_until)

pytestmark = pytest.mark.timeout(120)

V1_PATH = f"/v1/models/{MODEL_NAME}:predict"
ISVC = f"inferenceservice.serving.kserve.io/{MODEL_NAME}"
STORAGE_URI_FAILING = "gs://e2e/models/sklearn/model-2-failing"
STORAGE_URI_SLOW = "gs://e2e/models/sklearn/model-2-slow"
ANALYSIS_ANNOTATION = "serving.sluice.dev/canary-analysis"
GATE_ANNOTATION = "serving.sluice.dev/rollout-gate"
# Each analysis has to finish well inside the module's two minutes.
ANALYSIS_TIMEOUT = 25


# ---------------------------------------------------------------------------------------------- servers

@pytest.fixture(scope="module")
def bad_canaries(trained, free_ports, tmp_path_factory) -> Dict[str, str]:
    """model-2 answering 500 for 30 % of predictions, and model-2 100 ms slower per prediction: storageUri → address."""
    logdir = tmp_path_factory.mktemp("kserve-bad-canaries")
    procs = []
    addresses: Dict[str, str] = {}
    try:
        for uri, name, extra in ((STORAGE_URI_FAILING, "failing", ["--fail-percent", "30"]),
                                 (STORAGE_URI_SLOW, "slow", ["--delay-ms", "100"])):
            (port,) = free_ports(1)
            logs = logdir / name
            proc = spawn([sys.executable, str(HERE / "kserve_iris.py"), "--model_name", MODEL_NAME,
                          "--model_dir", str(trained.model_2_dir), "--http_port", str(port),
                          "--enable_latency_logging", "false", *extra], logs)
            procs.append((proc, port, logs))
            addresses[uri] = f"127.0.0.1:{port}"
        for proc, port, logs in procs:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/v2/health/ready"), KSERVE_START_TIMEOUT,
                       f"KServe bad canary ready on {port}", interval=0.2, proc=proc, logs=logs)
        yield addresses
    finally:
        for proc, _, _ in procs:
            _kill(proc)


@pytest.fixture
def sluice(start_control_sluice, kserve_servers, bad_canaries) -> ControlSluice:
    models = {STORAGE_URI_MODEL_1: [kserve_servers[REV1].address], STORAGE_URI_MODEL_2: [kserve_servers[REV2].address]}
    models.update({uri: [address] for uri, address in bad_canaries.items()})
    return start_control_sluice(models=models)


# ---------------------------------------------------------------------------------------------- the CLI

def show(result) -> str:
    return f"`{' '.join(result.args)}` exited {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"


def manifest(tmp_path, storage_uri: str, analysis: Optional[str] = None, gate: Optional[str] = None,
             canary: Optional[int] = None, extra: Optional[Dict[str, str]] = None) -> str:
    """An InferenceService for STORAGE_URI, with the analysis, gate and `extra` annotations when given; its path."""
    annotations = dict(extra or {})
    if analysis is not None:
        annotations[ANALYSIS_ANNOTATION] = analysis
    if gate is not None:
        annotations[GATE_ANNOTATION] = gate
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    metadata = {"name": MODEL_NAME}
    if annotations:
        metadata["annotations"] = annotations
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}
    path = tmp_path / f"isvc-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(body))
    return str(path)


def apply(sluice: ControlSluice, path: str, expected: str) -> None:
    r = sluice.cli("apply", "-n", NAMESPACE, "-f", path)
    assert r.returncode == 0, show(r)
    assert r.stdout == f"{ISVC} {expected}\n", show(r)


def get_json(sluice: ControlSluice) -> dict:
    r = sluice.cli("get", "isvc", MODEL_NAME, "-n", NAMESPACE, "-o", "json")
    assert r.returncode == 0, show(r)
    return json.loads(r.stdout)


def analysis(sluice: ControlSluice) -> dict:
    return get_json(sluice)["status"].get("canaryAnalysis", {})


def condition(sluice: ControlSluice) -> dict:
    return next((c for c in get_json(sluice)["status"]["conditions"] if c["type"] == "CanaryAnalysis"), {})


def wait_for_analysis(sluice: ControlSluice, what: str, predicate, timeout: float = ANALYSIS_TIMEOUT) -> dict:
    seen: List[dict] = []

    def check() -> bool:
        seen.append(analysis(sluice))
        return predicate(seen[-1])

    wait_until(check, timeout, f"{what}; last status.canaryAnalysis: {seen[-1] if seen else None}", interval=0.1,
               proc=sluice.proc, logs=sluice.logs)
    return seen[-1]


def events(sluice: ControlSluice) -> List[dict]:
    """The service's events (least recent first), from the admin API that `sluice describe` reads."""
    r = requests.get(f"{sluice.server}/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/"
                     f"{MODEL_NAME}/events", timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def canary_lines(sluice: ControlSluice) -> List[dict]:
    """The `canary.*` JSON event lines on stderr, in order."""
    with open(f"{sluice.logs}.err", errors="replace") as f:
        return [json.loads(line) for line in f.read().splitlines() if '"event":"canary.' in line]


def predict(session: requests.Session, sluice: ControlSluice, trained) -> tuple:
    """(status, Sluice-Revision) of one V1 prediction on the default host; (0, error) when it did not get an answer."""
    try:
        r = session.post(sluice.url + V1_PATH, json={"instances": trained.distinguishing_inputs},
                         headers={"Host": SERVICE_HOST}, timeout=REQUEST_TIMEOUT)
    except requests.RequestException as e:
        return 0, f"{type(e).__name__}: {e}"
    return r.status_code, r.headers.get("Sluice-Revision")


def first_deploy(sluice: ControlSluice) -> None:
    apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_1), "created")
    r = sluice.cli("rollout", "status", "isvc", MODEL_NAME, "-n", NAMESPACE, "--timeout", "30s", timeout=45)
    assert r.returncode == 0, show(r)


def manifest_path(sluice: ControlSluice, storage_uri: str, **kwargs) -> str:
    return manifest(sluice.logs_dir, storage_uri, **kwargs)


def load(sluice: ControlSluice, trained) -> Load:
    return Load(lambda session: predict(session, sluice, trained), threads=4, max_seconds=60, max_requests=40000)


# ---------------------------------------------------------------------------------------------- tests

def test_good_canary_is_promoted_through_every_step(sluice, trained):
    first_deploy(sluice)
    background = load(sluice, trained)
    try:
        background.wait_for(50)
        settings = "{steps: [20, 50], interval: 1s, minRequests: 20, successRate: 99, failureLimit: 2}"
        apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings), "configured")
        weights = set()
        final = wait_for_analysis(sluice, "the good canary promoted",
                                  lambda a: weights.add(a.get("weight")) or a.get("phase") == "Promoted")
        background.wait_for(100)
    finally:
        outcomes = background.stop()
    assert {20, 50} <= weights, f"both steps seen on the way: {weights}"
    assert final["failedChecks"] == 0, final
    statuses = Counter(status for status, _ in outcomes)
    assert statuses == {200: len(outcomes)}, f"a good canary loses no request: {statuses}"

    reasons = [e["reason"] for e in events(sluice) if e["reason"].startswith("Canary")]
    assert reasons == ["CanaryAnalysisStarted", "CanaryStepAdvanced", "CanaryPromoted"], reasons
    lines = {l["reason"]: l for l in canary_lines(sluice)}
    for reason in ("CanaryStepAdvanced", "CanaryPromoted"):
        assert lines[reason]["canaryRequests"] >= 20 and lines[reason]["successRate"] == 100, lines[reason]
        assert "canary requests" in lines[reason]["message"], lines[reason]
    predictor = get_json(sluice)["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == REV2 and predictor["previousRolledoutRevision"] == REV1, predictor
    assert [t["percent"] for t in predictor["traffic"]] == [100], predictor
    cond = condition(sluice)
    assert cond["status"] == "False" and cond["reason"] == "Promoted", cond
    r = sluice.cli("describe", "isvc", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 0 and "CanaryPromoted" in r.stdout and "Canary Analysis:" in r.stdout, show(r)
    with requests.Session() as s:
        assert {predict(s, sluice, trained) for _ in range(20)} == {(200, REV2)}


def test_failing_canary_is_rolled_back_within_the_allowed_failures(sluice, trained):
    first_deploy(sluice)
    background = load(sluice, trained)
    try:
        background.wait_for(50)
        settings = "{steps: [20, 50], interval: 1s, minRequests: 20, successRate: 95, failureLimit: 2}"
        apply(sluice, manifest_path(sluice, STORAGE_URI_FAILING, analysis=settings), "configured")
        final = wait_for_analysis(sluice, "the failing canary rolled back", lambda a: a.get("phase") == "RolledBack")
    finally:
        background.stop()
    assert final["failedChecks"] == 2 and final["failureLimit"] == 2, final
    assert final["lastCheck"]["successRate"] < 95, final
    cond = condition(sluice)
    assert cond["status"] == "False" and cond["reason"] == "RolledBack", cond
    assert "success rate" in cond["message"] and "is below 95%" in cond["message"], cond
    reasons = [e["reason"] for e in events(sluice) if e["reason"].startswith("Canary")]
    assert reasons == ["CanaryAnalysisStarted", "CanaryCheckFailed", "CanaryRolledBack"], reasons
    rolled_back = [l for l in canary_lines(sluice) if l["reason"] == "CanaryRolledBack"][-1]
    assert rolled_back["level"] == "warning" and rolled_back["successRate"] < 95, rolled_back
    # As canaryTrafficPercent: 0: the previous revision has everything, the canary is kept at 0 %.
    predictor = get_json(sluice)["status"]["components"]["predictor"]
    assert {t["revisionName"]: t["percent"] for t in predictor["traffic"]} == {REV2: 0, REV1: 100}, predictor
    with requests.Session() as s:
        assert {predict(s, sluice, trained) for _ in range(30)} == {(200, REV1)}


def test_slow_canary_is_rolled_back_on_the_p99_ratio(sluice, trained):
    first_deploy(sluice)
    background = load(sluice, trained)
    try:
        background.wait_for(50)
        settings = "{steps: [20, 50], interval: 1s, minRequests: 10, successRate: 99, maxP99Ratio: 3, failureLimit: 1}"
        apply(sluice, manifest_path(sluice, STORAGE_URI_SLOW, analysis=settings), "configured")
        final = wait_for_analysis(sluice, "the slow canary rolled back", lambda a: a.get("phase") == "RolledBack")
    finally:
        background.stop()
    check = final["lastCheck"]
    assert check["p99Ms"] > 3 * check["previousP99Ms"] and check["p99Ms"] >= 100, final
    assert check["successRate"] == 100, "it failed on latency alone: " + final["message"]
    assert "is above 3.0× the previous revision's" in final["message"], final
    assert condition(sluice)["reason"] == "RolledBack"


def test_a_user_apply_in_the_middle_ends_the_analysis(sluice, trained):
    first_deploy(sluice)
    # A long interval: the analysis stays at its first step until the user takes over.
    settings = "{steps: [20, 50], interval: 60s, minRequests: 10}"
    apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings), "configured")
    wait_for_analysis(sluice, "the canary at its first step", lambda a: a.get("weight") == 20)
    wait_until(lambda: get_json(sluice)["status"]["components"]["predictor"].get("latestReadyRevision") == REV2, 20,
               "the canary ready")
    apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings, canary=35), "configured")
    final = analysis(sluice)
    assert final["phase"] == "Superseded" and "canaryTrafficPercent: 35" in final["message"], final
    predictor = get_json(sluice)["status"]["components"]["predictor"]
    assert {t["revisionName"]: t["percent"] for t in predictor["traffic"]} == {REV2: 35, REV1: 65}, predictor
    assert [e["reason"] for e in events(sluice) if e["reason"].startswith("Canary")][-1] == "CanarySuperseded"
    r = sluice.cli("rollout", "pause", "isvc", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode != 0 and "has no running canary analysis" in r.stderr, show(r)


def test_pause_and_resume_from_the_cli_and_the_annotation(sluice, trained):
    first_deploy(sluice)
    # Four steps: the annotation's pause below lands before the last one even if a check comes in between.
    settings = "{steps: [20, 40, 60, 80], interval: 1s, minRequests: 10, successRate: 99}"
    background = load(sluice, trained)
    try:
        background.wait_for(50)
        apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings), "configured")
        wait_until(lambda: get_json(sluice)["status"]["components"]["predictor"].get("latestReadyRevision") == REV2, 20,
                   "the canary ready")
        r = sluice.cli("rollout", "pause", "isvc", MODEL_NAME, "-n", NAMESPACE)
        assert r.returncode == 0 and r.stdout == f"{ISVC} paused\n", show(r)
        paused = analysis(sluice)
        assert paused["phase"] == "Paused", paused
        # Paused: over three intervals under load, no check and no step change.
        until = time.monotonic() + 3
        while time.monotonic() < until:
            now = analysis(sluice)
            assert now["phase"] == "Paused" and now["weight"] == paused["weight"] and now.get("lastCheck") == paused.get("lastCheck"), now
            background.wait_for(10)
        r = sluice.cli("rollout", "resume", "isvc", MODEL_NAME, "-n", NAMESPACE)
        assert r.returncode == 0 and r.stdout == f"{ISVC} resumed\n", show(r)
        wait_for_analysis(sluice, "a step after the CLI's resume", lambda a: a.get("weight", 0) > paused["weight"])

        # The gate annotation pauses and resumes too (an annotation-only apply does not end the analysis).
        apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings, gate="paused"), "configured")
        by_annotation = analysis(sluice)
        assert by_annotation["phase"] == "Paused", by_annotation
        apply(sluice, manifest_path(sluice, STORAGE_URI_MODEL_2, analysis=settings, gate="running"), "configured")
        final = wait_for_analysis(sluice, "promoted after the annotation's resume", lambda a: a.get("phase") == "Promoted")
    finally:
        background.stop()
    assert final["failedChecks"] == 0, final
    reasons = [e["reason"] for e in events(sluice) if e["reason"].startswith("Canary")]
    assert reasons.count("CanaryPaused") == 2 and reasons.count("CanaryResumed") == 2, reasons
    assert reasons[-1] == "CanaryPromoted", reasons


def test_a_dark_launch_rolls_a_failing_canary_back_before_anyone_is_served_by_it(sluice, trained):
    first_deploy(sluice)
    background = load(sluice, trained)
    try:
        background.wait_for(50)
        settings = "{steps: [0, 50], interval: 1s, minRequests: 20, successRate: 95, failureLimit: 2}"
        apply(sluice, manifest_path(sluice, STORAGE_URI_FAILING, analysis=settings,
                                    extra={"serving.sluice.dev/mirror-percent": "100"}), "configured")
        final = wait_for_analysis(sluice, "the failing dark canary rolled back", lambda a: a.get("phase") == "RolledBack")
        background.wait_for(20)
    finally:
        outcomes = background.stop()
    assert final["failedChecks"] == 2 and final["lastCheck"]["successRate"] < 95, final
    assert final["lastCheck"]["canaryRequests"] >= 20, "checked on the mirrored requests: " + json.dumps(final)
    served = Counter(outcomes)
    assert set(served) == {(200, REV1)}, f"every client answered by the previous revision, none by the canary: {served}"
    reasons = [e["reason"] for e in events(sluice) if e["reason"].startswith("Canary")]
    assert reasons == ["CanaryAnalysisStarted", "CanaryCheckFailed", "CanaryRolledBack"], reasons
