"""The seed's KServe canary workflow, driven with the `sluice` CLI, in front of two real KServe sklearn-iris servers.

The seed's manifests (config/manifests/1-create.yaml … 5-tag-routing.yaml) are applied unchanged with
`-n kserve-test`; the gateway config maps their storageUris to our servers (model-1 for `.../model`, model-2 for
`.../model-2`). Which model answered is told twice: by the predictions on inputs where the two models disagree and by
the `Sluice-Revision` header; every request checks that the two agree (-00001 is model-1, -00002 and -00003 model-2).
"""

import json
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest
import requests

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

from conftest import (REQUEST_TIMEOUT, Load, COMPONENT, DOMAIN, LATEST_HOST, MANIFESTS_DIR, MODEL_NAME, NAMESPACE, PREV_HOST, REV1, REV2,
                      SERVICE_HOST, STORAGE_URI_MODEL_1, STORAGE_URI_MODEL_2, ControlSluice, free_port,
                      wait_until)

pytestmark = pytest.mark.timeout(120)

REV3 = f"{COMPONENT}-00003"
V1_PATH = f"/v1/models/{MODEL_NAME}:predict"
MODEL_1, MODEL_2 = "model-1", "model-2"
# Which model each revision serves in the seed's workflow (00003 is model-2 with the tag-routing annotation).
MODEL_OF = {REV1: MODEL_1, REV2: MODEL_2, REV3: MODEL_2}
CREATE, CANARY, PROMOTE, ROLLBACK, TAG = (str(MANIFESTS_DIR / f) for f in (
    "1-create.yaml", "2-canary.yaml", "3-promote.yaml", "4-rollback.yaml", "5-tag-routing.yaml"))
ISVC = f"inferenceservice.serving.kserve.io/{MODEL_NAME}"


# ---------------------------------------------------------------------------------------------- requests

@dataclass
class Outcome:
    ok: bool
    revision: Optional[str] = None  # Sluice-Revision
    model: Optional[str] = None  # the model whose predictions came back
    detail: str = ""
    started: float = 0.0


def which_model(trained, predictions) -> Optional[str]:
    if predictions == trained.model_1_answers:
        return MODEL_1
    if predictions == trained.model_2_answers:
        return MODEL_2
    return None


def predict(session: requests.Session, sluice: ControlSluice, trained, host: str = SERVICE_HOST) -> Outcome:
    started = time.monotonic()
    try:
        r = session.post(sluice.url + V1_PATH, json={"instances": trained.distinguishing_inputs},
                         headers={"Host": host}, timeout=REQUEST_TIMEOUT)
    except requests.RequestException as e:
        return Outcome(False, detail=f"{type(e).__name__}: {e}", started=started)
    revision = r.headers.get("Sluice-Revision")
    if r.status_code != 200:
        return Outcome(False, revision, detail=f"HTTP {r.status_code} ({revision}): {r.text[:200]}", started=started)
    model = which_model(trained, r.json().get("predictions"))
    ok = model is not None and MODEL_OF.get(revision) == model
    return Outcome(ok, revision, model, "" if ok else f"predictions {r.text[:200]} with Sluice-Revision {revision}",
                   started=started)


def fire(sluice: ControlSluice, trained, count: int, threads: int = 4, host: str = SERVICE_HOST) -> List[Outcome]:
    """COUNT requests over THREADS keep-alive sessions."""
    results: List[List[Outcome]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        with requests.Session() as s:
            for _ in range(count // threads + (1 if i < count % threads else 0)):
                results[i].append(predict(s, sluice, trained, host))

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ts), "client threads still running after 60 s"
    out = [o for r in results for o in r]
    assert len(out) == count
    return out


def assert_all_ok(outcomes: List[Outcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)}/{len(outcomes)} requests failed, e.g. {[o.detail for o in failed[:3]]}"


def assert_only(outcomes: List[Outcome], revision: str) -> None:
    assert_all_ok(outcomes)
    by_revision = Counter(o.revision for o in outcomes)
    assert by_revision == {revision: len(outcomes)}, f"expected every request on {revision}, got {dict(by_revision)}"
    assert Counter(o.model for o in outcomes) == {MODEL_OF[revision]: len(outcomes)}


def assert_split(outcomes: List[Outcome], stable: str, canary: str, canary_percent: float, sigmas: float = 5.0) -> None:
    """Every request on STABLE or CANARY, CANARY's share within SIGMAS binomial standard deviations of the percent."""
    assert_all_ok(outcomes)
    n = len(outcomes)
    by_revision = Counter(o.revision for o in outcomes)
    assert set(by_revision) <= {stable, canary}, f"requests on unexpected revisions: {dict(by_revision)}"
    by_model = Counter(o.model for o in outcomes)
    assert by_model[MODEL_OF[canary]] == by_revision[canary], (dict(by_model), dict(by_revision))
    p = canary_percent / 100
    got = by_revision[canary]
    bound = sigmas * math.sqrt(n * p * (1 - p))
    assert abs(got - n * p) <= bound, \
        f"{got}/{n} on {canary}, expected {n * p:.0f} ± {bound:.0f} ({sigmas:g} sigma) for {canary_percent}%"



# ---------------------------------------------------------------------------------------------- the CLI

def show(result) -> str:
    return f"`{' '.join(result.args)}` exited {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"


def apply(sluice: ControlSluice, manifest: str, expected: str) -> None:
    r = sluice.cli("apply", "-n", NAMESPACE, "-f", manifest)
    assert r.returncode == 0, show(r)
    assert r.stdout == f"{ISVC} {expected}\n", show(r)


def rollout_status(sluice: ControlSluice, timeout: str = "60s") -> None:
    r = sluice.cli("rollout", "status", "isvc", MODEL_NAME, "-n", NAMESPACE, "--timeout", timeout, timeout=90)
    assert r.returncode == 0, show(r)


def get_json(sluice: ControlSluice) -> dict:
    r = sluice.cli("get", "isvc", MODEL_NAME, "-n", NAMESPACE, "-o", "json")
    assert r.returncode == 0, show(r)
    return json.loads(r.stdout)


def get_row(sluice: ControlSluice) -> Dict[str, str]:
    """`sluice get isvc NAME -n NS` as a dict of column → value, columns cut at the header's offsets (blanks kept)."""
    r = sluice.cli("get", "isvc", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 0, show(r)
    lines = r.stdout.rstrip("\n").split("\n")
    assert len(lines) == 2, show(r)
    header, row = lines
    names = header.split()
    assert names == ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"], \
        show(r)
    starts = [header.index(" " + n) + 1 if i else 0 for i, n in enumerate(names)]
    cells = {}
    for i, n in enumerate(names):
        end = starts[i + 1] if i + 1 < len(names) else len(row)
        before_next = row[starts[i]:end]
        # A value never runs into the next column: the character before the next column's start is a space.
        assert i + 1 == len(names) or row[end - 1:end] in (" ", ""), f"column {n} overflows in\n{r.stdout}"
        cells[n] = before_next.strip()
    return cells


def row_without_age(row: Dict[str, str]) -> Dict[str, str]:
    return {k: v for k, v in row.items() if k != "AGE"}


def expect_row(sluice: ControlSluice, prev: str, latest: str, prev_rolled_out: str, latest_ready: str) -> Dict[str, str]:
    row = get_row(sluice)
    assert row_without_age(row) == {
        "NAME": MODEL_NAME, "URL": f"http://{SERVICE_HOST}", "READY": "True", "PREV": prev, "LATEST": latest,
        "PREVROLLEDOUTREVISION": prev_rolled_out, "LATESTREADYREVISION": latest_ready}, row
    assert row["AGE"], row
    return row


# KServe's `.status.components.predictor` after step 5 (../shared/reference/kserve-rollout.md).
STEP5_PREDICTOR = {
    "address": {"url": f"http://{COMPONENT}.{NAMESPACE}.svc.cluster.local"},
    "latestCreatedRevision": REV3,
    "latestReadyRevision": REV3,
    "latestRolledoutRevision": REV1,
    "previousRolledoutRevision": REV1,
    "traffic": [
        {"latestRevision": True, "percent": 10, "revisionName": REV3, "tag": "latest", "url": f"http://{LATEST_HOST}"},
        {"latestRevision": False, "percent": 90, "revisionName": REV1, "tag": "prev", "url": f"http://{PREV_HOST}"},
    ],
    "url": f"http://{COMPONENT}.{NAMESPACE}.{DOMAIN}",
}


def create_and_canary(sluice: ControlSluice, trained) -> None:
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    expect_row(sluice, "", "100", "", REV1)
    apply(sluice, CANARY, "configured")
    rollout_status(sluice)
    expect_row(sluice, "90", "10", REV1, REV2)


# ---------------------------------------------------------------------------------------------- tests

def test_seed_workflow_with_the_cli(start_control_sluice, trained):
    sluice = start_control_sluice()

    # 1. Create: 00001 (model-1) gets 100 %.
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    assert_only(fire(sluice, trained, 200), REV1)
    expect_row(sluice, "", "100", "", REV1)

    # 2. Canary 10: 00002 (model-2) takes about 10 % once ready.
    apply(sluice, CANARY, "configured")
    rollout_status(sluice)
    assert_split(fire(sluice, trained, 2000), REV1, REV2, 10)
    expect_row(sluice, "90", "10", REV1, REV2)

    # 3. Promote: 00002 gets 100 %, no prev entry.
    apply(sluice, PROMOTE, "configured")
    rollout_status(sluice)
    assert_only(fire(sluice, trained, 200), REV2)
    expect_row(sluice, "", "100", "", REV2)

    # 4. Rollback / pin with 0: everything back on 00001, 00002 at 0 %.
    apply(sluice, ROLLBACK, "configured")
    rollout_status(sluice)
    assert_only(fire(sluice, trained, 200), REV1)
    expect_row(sluice, "100", "0", REV1, REV2)

    # 5. Tag routing: the annotation creates 00003; latest-/prev- hosts reach their revision every time.
    apply(sluice, TAG, "configured")
    rollout_status(sluice)
    r = sluice.cli("get", "revisions", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 0 and all(rev in r.stdout for rev in (REV1, REV2, REV3)), show(r)
    assert_only(fire(sluice, trained, 100, host=LATEST_HOST), REV3)
    assert_only(fire(sluice, trained, 100, host=PREV_HOST), REV1)
    assert_split(fire(sluice, trained, 1000), REV1, REV3, 10)
    expect_row(sluice, "90", "10", REV1, REV3)

    predictor = get_json(sluice)["status"]["components"]["predictor"]
    # Keys and values exactly as KServe's document; the order of the two traffic entries does not matter.
    got = dict(predictor, traffic=sorted(predictor.get("traffic", []), key=lambda t: t.get("tag", "")))
    want = dict(STEP5_PREDICTOR, traffic=sorted(STEP5_PREDICTOR["traffic"], key=lambda t: t["tag"]))
    assert got == want, json.dumps(predictor, indent=1)


def test_restart_after_canary_keeps_everything(start_control_sluice, trained):
    sluice = start_control_sluice()
    create_and_canary(sluice, trained)
    row_before = row_without_age(get_row(sluice))
    predictor_before = get_json(sluice)["status"]["components"]["predictor"]

    sluice.kill9()
    sluice.start()  # same config, same state dir, same ports; nothing applied after this
    # What was acknowledged is there at once, and the gateway serves the same split without being told anything.
    assert row_without_age(get_row(sluice)) == row_before
    assert get_json(sluice)["status"]["components"]["predictor"] == predictor_before
    assert_split(fire(sluice, trained, 2000), REV1, REV2, 10)
    rollout_status(sluice, "10s")
    assert row_without_age(get_row(sluice)) == row_before
    r = sluice.cli("apply", "-n", NAMESPACE, "-f", CANARY)
    assert r.returncode == 0 and r.stdout == f"{ISVC} unchanged\n", show(r)


def test_applies_under_load_lose_no_request(start_control_sluice, trained):
    sluice = start_control_sluice()
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    load = Load(lambda session: predict(session, sluice, trained), threads=4, max_requests=40000)
    try:
        load.wait_for(100)
        for manifest in (CANARY, PROMOTE, ROLLBACK, TAG):
            apply(sluice, manifest, "configured")
            rollout_status(sluice)
            load.wait_for(100)
        final_at = time.monotonic()
        load.wait_for(200)
    finally:
        outcomes = load.stop()
    assert len(outcomes) >= 700
    assert_all_ok(outcomes)
    # After the tag-routing step is rolled out, the default host splits between 00001 and 00003 only.
    after = [o for o in outcomes if o.started > final_at]
    assert after and {o.revision for o in after} <= {REV1, REV3}, Counter(o.revision for o in after)


def test_canary_that_never_becomes_ready_keeps_traffic(start_control_sluice, kserve_servers, trained):
    nothing_listens = free_port()
    sluice = start_control_sluice(models={STORAGE_URI_MODEL_1: [kserve_servers[REV1].address],
                                          STORAGE_URI_MODEL_2: [f"127.0.0.1:{nothing_listens}"]})
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    apply(sluice, CANARY, "configured")
    r = sluice.cli("rollout", "status", "isvc", MODEL_NAME, "-n", NAMESPACE, "--timeout", "3s")
    assert r.returncode != 0, show(r)
    assert_only(fire(sluice, trained, 300), REV1)

    status = get_json(sluice)["status"]
    predictor = status["components"]["predictor"]
    assert predictor["latestCreatedRevision"] == REV2, predictor
    assert predictor["latestReadyRevision"] == REV1, predictor
    not_true = [c for c in status.get("conditions", []) if c.get("status") != "True"]
    assert not_true, f"no condition says why {REV2} gets no traffic: {status.get('conditions')}"
    explained = [c for c in not_true if c.get("reason") and c.get("message")
                 and (REV2 in c["message"] or str(nothing_listens) in c["message"])]
    assert explained, f"no failing condition has a reason and a message naming {REV2} or its endpoint: {not_true}"


def test_invalid_manifest_is_refused_and_routes_stay(start_control_sluice, trained, tmp_path):
    sluice = start_control_sluice()
    apply(sluice, CREATE, "created")
    rollout_status(sluice)
    before = get_json(sluice)
    row_before = row_without_age(get_row(sluice))

    invalid = tmp_path / "canary-150.yaml"
    invalid.write_text(pathlib_text(CANARY).replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 150"))
    assert "canaryTrafficPercent: 150" in invalid.read_text()
    r = sluice.cli("apply", "-n", NAMESPACE, "-f", str(invalid))
    assert r.returncode != 0, show(r)
    expected = (f'The InferenceService "{MODEL_NAME}" is invalid: spec.predictor.canaryTrafficPercent: '
                f'Invalid value: 150: must be between 0 and 100\n')
    assert r.stdout + r.stderr == expected, show(r)

    after = get_json(sluice)
    assert after["spec"] == before["spec"]
    assert after["status"]["components"] == before["status"]["components"]
    assert row_without_age(get_row(sluice)) == row_before
    r = sluice.cli("get", "revisions", MODEL_NAME, "-n", NAMESPACE)
    assert r.returncode == 0 and REV1 in r.stdout and REV2 not in r.stdout, show(r)
    assert_only(fire(sluice, trained, 200), REV1)


def pathlib_text(path: str) -> str:
    with open(path) as f:
        return f.read()
