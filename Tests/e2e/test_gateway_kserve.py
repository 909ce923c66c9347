"""Sluice in front of two real KServe sklearn-iris servers (model-1 = revision 00001, model-2 = 00002).

Which model answered is told twice: by the predictions on inputs where the two models disagree, and by the
`Sluice-Revision` response header. Every test checks that the two agree.
"""

import json
import math
import os
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional

import pytest
import requests

from conftest import (REQUEST_TIMEOUT, Load, LATEST_HOST, MODEL_NAME, PREV_HOST, REV1, REV2, SERVICE_HOST, Sluice, wait_until)
from train_models import SEED_INPUT

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

V1_PATH = f"/v1/models/{MODEL_NAME}:predict"
V2_PATH = f"/v2/models/{MODEL_NAME}/infer"


@dataclass
class Outcome:
    ok: bool
    revision_header: Optional[str] = None
    model_revision: Optional[str] = None  # the revision whose model gave the predictions
    detail: str = ""
    started: float = 0.0
    finished: float = 0.0
    status: Optional[int] = None  # None: no HTTP response at all (connection refused, reset, timeout)


def which_model(trained, predictions) -> Optional[str]:
    if predictions == trained.model_1_answers:
        return REV1
    if predictions == trained.model_2_answers:
        return REV2
    return None


def predict_v1(session: requests.Session, sluice: Sluice, trained, host: str = SERVICE_HOST,
               extra_headers: Optional[dict] = None) -> Outcome:
    headers = {"Host": host}
    headers.update(extra_headers or {})
    started = time.monotonic()
    try:
        r = session.post(sluice.url + V1_PATH, json={"instances": trained.distinguishing_inputs},
                         headers=headers, timeout=REQUEST_TIMEOUT)
    except requests.RequestException as e:
        return Outcome(False, detail=f"{type(e).__name__}: {e}", started=started, finished=time.monotonic())
    if r.status_code != 200:
        return Outcome(False, r.headers.get("Sluice-Revision"), detail=f"HTTP {r.status_code}: {r.text[:200]}",
                       started=started, finished=time.monotonic(), status=r.status_code)
    model = which_model(trained, r.json().get("predictions"))
    ok = model is not None and model == r.headers.get("Sluice-Revision")
    return Outcome(ok, r.headers.get("Sluice-Revision"), model,
                   "" if ok else f"predictions {r.text[:200]} vs Sluice-Revision {r.headers.get('Sluice-Revision')}",
                   started=started, finished=time.monotonic(), status=r.status_code)


def assert_split(outcomes: List[Outcome], percent_00002: float, sigmas: float = 5.0) -> None:
    n = len(outcomes)
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)}/{n} requests failed, first: {failed[0].detail}"
    by_model = Counter(o.model_revision for o in outcomes)
    by_header = Counter(o.revision_header for o in outcomes)
    assert by_model == by_header
    p = percent_00002 / 100
    got = by_model[REV2]
    if p in (0.0, 1.0):
        assert got == n * p, f"expected every request on {'00002' if p else '00001'}, got {dict(by_model)}"
        return
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(got - n * p) <= sigmas * sigma, \
        f"{got}/{n} on 00002, expected {n * p:.0f} ± {sigmas * sigma:.0f} ({sigmas:g} sigma) for {percent_00002}%"


def fire(sluice: Sluice, trained, count: int, threads: int = 4, host: str = SERVICE_HOST) -> List[Outcome]:
    """COUNT requests over THREADS keep-alive sessions."""
    results: List[List[Outcome]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        with requests.Session() as s:
            for _ in range(count // threads + (1 if i < count % threads else 0)):
                results[i].append(predict_v1(s, sluice, trained, host))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in ts), "client threads still running after 90 s"
    return [o for r in results for o in r]



# ---------------------------------------------------------------------------------------------- tests

def test_readme_curl_v1_predict(start_sluice, trained):
    """curl -H "Host: sklearn-iris.kserve-test.example.com" .../v1/models/sklearn-iris:predict -d @iris-input.json"""
    sluice = start_sluice(percent_00002=10)
    r = requests.post(sluice.url + V1_PATH, data=json.dumps({"instances": SEED_INPUT}),
                      headers={"Host": SERVICE_HOST, "Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [1, 1]}
    assert r.headers.get("Sluice-Revision") in (REV1, REV2)


def test_v2_infer_through_gateway(start_sluice, trained):
    sluice = start_sluice(percent_00002=10)
    inputs = trained.distinguishing_inputs
    body = {"inputs": [{"name": "input-0", "shape": [len(inputs), 4], "datatype": "FP32", "data": inputs}]}
    with requests.Session() as s:
        ready = s.get(sluice.url + f"/v2/models/{MODEL_NAME}/ready", headers={"Host": SERVICE_HOST}, timeout=5)
        assert ready.status_code == 200, ready.text
        seen = set()
        for _ in range(40):
            r = s.post(sluice.url + V2_PATH, json=body, headers={"Host": SERVICE_HOST}, timeout=REQUEST_TIMEOUT)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["model_name"] == MODEL_NAME
            assert out["outputs"][0]["shape"] == [len(inputs)]
            rev = r.headers.get("Sluice-Revision")
            assert which_model(trained, out["outputs"][0]["data"]) == rev, (out, rev)
            seen.add(rev)
        # Tag hosts reach both models over V2 as well.
        for host, rev in ((LATEST_HOST, REV2), (PREV_HOST, REV1)):
            r = s.post(sluice.url + V2_PATH, json=body, headers={"Host": host}, timeout=REQUEST_TIMEOUT)
            assert r.status_code == 200, r.text
            assert which_model(trained, r.json()["outputs"][0]["data"]) == rev
            assert r.headers.get("Sluice-Revision") == rev


def test_canary_split_90_10_over_2000_requests(start_sluice, trained):
    sluice = start_sluice(percent_00002=10)
    outcomes = fire(sluice, trained, 2000, threads=4)
    assert len(outcomes) == 2000
    assert_split(outcomes, 10)


@pytest.mark.parametrize("host,revision", [(LATEST_HOST, REV2), (PREV_HOST, REV1)], ids=["latest", "prev"])
def test_tag_hosts_always_reach_their_revision(start_sluice, trained, host, revision):
    sluice = start_sluice(percent_00002=10)
    outcomes = fire(sluice, trained, 100, threads=2, host=host)
    failed = [o for o in outcomes if not o.ok]
    assert not failed, failed[0].detail
    assert Counter(o.model_revision for o in outcomes) == {revision: 100}
    assert Counter(o.revision_header for o in outcomes) == {revision: 100}


def test_sighup_reload_under_load_loses_no_request(start_sluice, trained):
    sluice = start_sluice(percent_00002=10)
    splits = [50, 100, 0, 30, 100, 70, 0, 90, 50, 100]
    load = Load(lambda session: predict_v1(session, sluice, trained), threads=4)
    try:
        load.wait_for(50)
        for percent in splits:
            sluice.write_config(percent)
            line = sluice.sighup_and_wait()
            assert "applied" in line, line
            load.wait_for(40)
        last_reload_at = time.monotonic()
        load.wait_for(200)
    finally:
        outcomes = load.stop()
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)}/{len(outcomes)} requests failed during reloads, e.g. {[o.detail for o in failed[:3]]}"
    assert proc_alive(sluice)
    # After the last reload (100 % on 00002) was logged, every request sent goes to 00002.
    after = [o for o in outcomes if o.started > last_reload_at]
    assert len(after) >= 200
    assert_split(after, 100)
    assert_split(fire(sluice, trained, 200, threads=4), 100)


def test_invalid_config_on_sighup_keeps_old_routes(start_sluice, trained):
    sluice = start_sluice(percent_00002=0)  # everything on 00001
    assert_split(fire(sluice, trained, 40, threads=2), 0)
    sluice.write_config(60, 50)  # percents add up to 110
    load = Load(lambda session: predict_v1(session, sluice, trained), threads=2)
    try:
        load.wait_for(20)
        line = sluice.sighup_and_wait()
        load.wait_for(100)
    finally:
        outcomes = load.stop()
    assert "applied" not in line, line
    assert "services[0].traffic" in line, f"reload error does not name the field path: {line!r}"
    assert "110" in line, f"reload error does not give the sum: {line!r}"
    assert "running configuration stays" in line, line
    assert proc_alive(sluice)
    assert_split(outcomes, 0)
    assert_split(fire(sluice, trained, 100, threads=2), 0)
    # And a valid file after that is applied again.
    sluice.write_config(100)
    assert "applied" in sluice.sighup_and_wait()
    assert_split(fire(sluice, trained, 40, threads=2), 100)


def test_sigterm_lets_in_flight_requests_finish(start_sluice, trained, kserve_servers):
    sluice = start_sluice(percent_00002=10)
    slow_count, delay_ms = 6, 1500
    backend_logs = {rev: len(s.stdout_lines()) for rev, s in kserve_servers.items()}

    def started_at_backends() -> int:
        return sum(line.startswith("e2e: predict started") for rev, s in kserve_servers.items()
                   for line in s.stdout_lines()[backend_logs[rev]:])

    slow: List[Optional[Outcome]] = [None] * slow_count

    def send_slow(i: int) -> None:
        with requests.Session() as s:
            slow[i] = predict_v1(s, sluice, trained, extra_headers={"X-E2E-Delay-Ms": str(delay_ms)})

    load = Load(lambda session: predict_v1(session, sluice, trained), threads=2, max_seconds=30)
    slow_threads = [threading.Thread(target=send_slow, args=(i,), daemon=True) for i in range(slow_count)]
    try:
        load.wait_for(20)
        for t in slow_threads:
            t.start()
        # Every slow request has reached a model: they are in flight through the gateway.
        wait_until(lambda: started_at_backends() >= slow_count, 10, "slow requests reach the models")
        sigterm_at = time.monotonic()
        sluice.proc.send_signal(signal.SIGTERM)
        try:
            # The drain waits for in-flight requests up to shutdownTimeout (30 s by default); these take ~1.5 s.
            code = sluice.proc.wait(timeout=10 + 5)
        except Exception:
            pytest.fail(f"sluice did not exit within 15 s of SIGTERM with ~1.5 s requests in flight\n{sluice.stderr()[-2000:]}")
        exited_after = time.monotonic() - sigterm_at
    finally:
        for t in slow_threads:
            if t.ident is not None:
                t.join(timeout=REQUEST_TIMEOUT + 5)
        outcomes = load.stop()

    assert code == 0, f"sluice exited with {code}\n{sluice.stderr()[-2000:]}"
    assert "draining" in sluice.stderr()
    for i, o in enumerate(slow):
        assert o is not None, f"in-flight request {i} never returned"
        assert o.ok, f"in-flight request {i} failed at SIGTERM: {o.detail}"
    # The drain waited for the in-flight ones (≈1.5 s) but no longer than needed.
    assert exited_after < 10, f"took {exited_after:.1f}s to exit"
    # Requests answered before SIGTERM all succeeded; after it, refused/closed connections are expected.
    before = [o for o in outcomes if o.finished < sigterm_at]
    assert before and all(o.ok for o in before), [o.detail for o in before if not o.ok][:3]
    after = [o for o in outcomes if o.finished >= sigterm_at]
    answered_badly = [o.detail for o in after if not o.ok and o.status is not None]
    assert not answered_badly, f"after SIGTERM the gateway answered with errors instead of completing or closing: {answered_badly[:3]}"


def proc_alive(sluice: Sluice) -> bool:
    return sluice.proc.poll() is None and requests.get(f"http://127.0.0.1:{sluice.admin_port}/healthz", timeout=5).ok


def test_sigterm_closes_idle_keepalive_connections_at_once(start_sluice, trained):
    """Gateway.shutdown's contract: on SIGTERM idle keep-alive connections close at once, so with nothing in
    flight Sluice exits right away instead of sitting out its grace period (shutdownTimeout)."""
    sluice = start_sluice(percent_00002=10)
    body = json.dumps({"instances": SEED_INPUT}).encode()
    with socket.create_connection(("127.0.0.1", sluice.port), timeout=REQUEST_TIMEOUT) as c:
        c.sendall(b"POST " + V1_PATH.encode() + b" HTTP/1.1\r\nHost: " + SERVICE_HOST.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            chunk = c.recv(65536)
            assert chunk, f"connection closed before the response ended: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response
        assert b'{"predictions":[1,1]}' in response.replace(b" ", b"")
        # The connection is now idle (keep-alive). SIGTERM.
        sigterm_at = time.monotonic()
        sluice.proc.send_signal(signal.SIGTERM)
        c.settimeout(15)
        try:
            eof = c.recv(1)
        except OSError as e:  # a reset is a close too
            eof = repr(e).encode()
        closed_after = time.monotonic() - sigterm_at
        code = sluice.proc.wait(timeout=15)
        exited_after = time.monotonic() - sigterm_at
    assert code == 0
    assert eof in (b"",) or b"Reset" in eof, eof
    assert closed_after < 2, f"idle keep-alive connection closed only {closed_after:.1f}s after SIGTERM (expected at once)"
    assert exited_after < 2, f"sluice exited {exited_after:.1f}s after SIGTERM with only an idle connection open"
