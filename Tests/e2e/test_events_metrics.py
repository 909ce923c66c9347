"""Events, /metrics and `sluice describe` of a real `sluice serve` (SLUICE_BIN, a release build) over `sluice demo`
predictors: every stderr line is a JSON event with a timestamp; an apply, a pod that stops and comes back, a refused
reload and the drain are events in order; /metrics answers on the admin and the metrics-only listener with the format
Accept asks for; the process start time is this test's; `sluice describe` shows the service's Events as kubectl does;
a failed start and a manifest directory's applies and refusals are event lines too.

Cheap on purpose (no KServe, no model training): run it alone with
`SLUICE_BIN=$(swift build -c release --show-bin-path)/sluice python -m pytest -q Tests/e2e/test_events_metrics.py`.
"""

import datetime
import json
import os
import signal
import subprocess
import time
from typing import List

import pytest
import requests

from conftest import (LOOPBACK, MANIFESTS_DIR, MODEL_NAME, NAMESPACE, SERVICE_HOST, STORAGE_URI_MODEL_1, _kill, control_config,
                      free_port, http_ok, port_open, spawn, wait_until)

REV1 = "sklearn-iris-predictor-default-00001"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def sluice_binary() -> str:
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.skip("SLUICE_BIN is not set: point it at the release build ($(swift build -c release --show-bin-path)/sluice)")
    return binary


def events(logs) -> List[dict]:
    """Every stderr line, parsed; a line that is not a JSON event fails the test."""
    parsed = []
    for line in open(f"{logs}.err", encoding="utf-8").read().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line is not JSON: {line!r}")
        assert isinstance(event, dict) and {"time", "level", "event", "message"} <= event.keys(), line
        # RFC 3339, UTC, microseconds.
        assert datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ"), line
        parsed.append(event)
    return parsed


def named(logs, name: str) -> List[dict]:
    return [e for e in events(logs) if e["event"] == name]


def samples(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def start_demo(binary: str, port: int, logs):
    proc = spawn([binary, "demo", "--listen", f"{LOOPBACK}:{port}", "--model", MODEL_NAME, "--version", "1",
                  "--revision", "model-1"], logs)
    wait_until(lambda: http_ok(f"http://{LOOPBACK}:{port}/v1/models/{MODEL_NAME}"), 10, "demo predictor up", proc=proc, logs=logs)
    return proc


def test_events_metrics_and_describe(tmp_path):
    binary = sluice_binary()
    pod, listen, admin, metrics_port = (free_port() for _ in range(4))
    demo = start_demo(binary, pod, tmp_path / "demo-0")
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, admin, tmp_path / "state", {STORAGE_URI_MODEL_1: [f"{LOOPBACK}:{pod}"]})
                      + f"metrics: {{listen: {LOOPBACK}:{metrics_port}}}\n")
    logs = tmp_path / "sluice"
    started_at = time.time()
    proc = spawn([binary, "serve", "--config", str(config), "--workers", "2"], logs)
    server = f"http://{LOOPBACK}:{admin}"

    def cli(*args):
        return subprocess.run([binary, *args, "--server", server], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    try:
        wait_until(lambda: http_ok(f"{server}/healthz") and port_open(listen) and port_open(metrics_port), 15,
                   "sluice up", proc=proc, logs=logs)
        wait_until(lambda: named(logs, "gateway.started"), 5, "start event", proc=proc, logs=logs)
        start = named(logs, "gateway.started")[0]
        assert start["workers"] == 2
        assert start["listeners"] == {"proxy": f"{LOOPBACK}:{listen}", "admin": f"{LOOPBACK}:{admin}",
                                      "metrics": f"{LOOPBACK}:{metrics_port}"}
        version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10).stdout.split()[1]
        assert start["version"] == version and "openssl" in start["versions"]

        r = cli("apply", "-n", NAMESPACE, "-f", str(MANIFESTS_DIR / "1-create.yaml"))
        assert r.returncode == 0, r.stderr
        assert cli("rollout", "status", "isvc", MODEL_NAME, "-n", NAMESPACE, "--timeout", "30s").returncode == 0
        assert requests.get(f"http://{LOOPBACK}:{listen}/v1/models/{MODEL_NAME}", headers={"Host": SERVICE_HOST}, timeout=5).status_code == 200
        applied = named(logs, "isvc.applied")[0]
        assert (applied["result"], applied["revision"], applied["revisionCreated"]) == ("created", REV1, True)

        # The pod stops, then comes back on the same port.
        _kill(demo)
        wait_until(lambda: named(logs, "endpoint.unhealthy") and named(logs, "revision.not_ready"), 15, "unhealthy events",
                   proc=proc, logs=logs)
        assert named(logs, "endpoint.unhealthy")[0]["endpoint"] == f"{LOOPBACK}:{pod}"
        demo = start_demo(binary, pod, tmp_path / "demo-1")
        wait_until(lambda: named(logs, "endpoint.healthy") and len(named(logs, "revision.ready")) >= 2, 15, "healthy again",
                   proc=proc, logs=logs)

        # kubectl describe's view.
        r = cli("describe", "isvc", MODEL_NAME, "-n", NAMESPACE)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"Name:         {MODEL_NAME}\nNamespace:    {NAMESPACE}\n"), r.stdout
        section = r.stdout[r.stdout.index("\nEvents:\n") + 1:].splitlines()[1:]
        assert section[0].split() == ["Type", "Reason", "Age", "From", "Message"], r.stdout
        assert [line.split()[1] for line in section[2:]] == ["Created", "EndpointUnhealthy", "RevisionNotReady",
                                                            "EndpointHealthy", "RevisionReady"], r.stdout
        assert "(x2 over" in section[-1], r.stdout
        missing = cli("describe", "isvc", "nope", "-n", NAMESPACE)
        assert missing.returncode == 1 and "NotFound" in missing.stderr, missing.stderr

        # /metrics: both listeners, no token configured; the format by Accept.
        scrape = requests.get(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert scrape.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        values = samples(scrape.text)
        # The kernel's start time is boot time (btime, whole seconds, and moved by clock adjustments since boot) plus
        # ticks: seconds off either way, so a few seconds of slack; a process from before this test would be minutes off.
        assert started_at - 5 <= values["process_start_time_seconds"] <= time.time() + 5, "the process is the one this test started"
        assert 0 < values["process_open_fds"] <= values["process_max_fds"]
        assert values["process_resident_memory_bytes"] > 1 << 20
        assert values[f'sluice_build_info{{version="{version}"}}'] == 1
        assert values[f'sluice_readiness_probes_total{{endpoint="{LOOPBACK}:{pod}",model="{MODEL_NAME}",result="failure"}}'] >= 1
        assert values[f'sluice_endpoint_ready{{namespace="{NAMESPACE}",service="{MODEL_NAME}",revision="{REV1}",endpoint="{LOOPBACK}:{pod}"}}'] == 1
        assert values['sluice_manifests_applied_total{result="created"}'] == 1
        assert values['sluice_events_total{reason="EndpointUnhealthy"}'] == 1
        open_metrics = requests.get(f"http://{LOOPBACK}:{metrics_port}/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
        assert open_metrics.headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
        assert open_metrics.text.endswith("# EOF\n")
        assert requests.post(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5).status_code == 405
        assert requests.get(f"http://{LOOPBACK}:{metrics_port}/healthz", timeout=5).status_code == 404
        admin_scrape = requests.get(f"{server}/metrics", timeout=5)
        assert admin_scrape.status_code == 200 and "sluice_route_table_generation" in admin_scrape.text

        # A refused reload names the field; the counter moves.
        config.write_text(config.read_text().replace("period: 200ms", "period: 0s", 1))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: named(logs, "config.reload_refused"), 10, "reload refused", proc=proc, logs=logs)
        refused = named(logs, "config.reload_refused")[0]
        assert refused["level"] == "warning" and refused["field"] == "readiness.period", refused
        assert "the running configuration stays" in refused["message"]
        after = samples(requests.get(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=5).text)
        assert after['sluice_config_reloads_total{result="refused"}'] == 1

        # The drain.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        names = [e["event"] for e in events(logs)]
        assert names[-2:] == ["drain.started", "drain.finished"], names
        times = [e["time"] for e in events(logs)]
        assert times == sorted(times), "lines are written in the order things happened"
    finally:
        _kill(proc)
        _kill(demo)


def test_a_failed_start_is_an_event_line(tmp_path):
    binary = sluice_binary()
    listen, admin = free_port(), free_port()
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, admin, tmp_path / "state", {STORAGE_URI_MODEL_1: [f"{LOOPBACK}:9"]})
                      .replace("period: 200ms", "period: 0s"))
    result = subprocess.run([binary, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    event = json.loads(lines[0])
    assert (event["event"], event["level"], event["reason"]) == ("gateway.start_failed", "error", "StartFailed"), event
    assert event["message"] == f"{config}: readiness.period: must be greater than 0", event


def test_manifest_directory_applies_and_refusals_are_events(tmp_path):
    binary = sluice_binary()
    listen, admin, pod = free_port(), free_port(), free_port()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "1-create.yaml").write_text((MANIFESTS_DIR / "1-create.yaml").read_text())
    config = tmp_path / "sluice.yaml"
    config.write_text(control_config(listen, admin, tmp_path / "state", {STORAGE_URI_MODEL_1: [f"{LOOPBACK}:{pod}"]}))
    logs = tmp_path / "sluice"
    proc = spawn([binary, "serve", "--config", str(config), "--manifests", str(manifests), "--workers", "1"], logs)
    try:
        wait_until(lambda: named(logs, "gateway.started"), 15, "sluice up", proc=proc, logs=logs)
        applied = named(logs, "isvc.applied")
        assert len(applied) == 1 and applied[0]["source"] == str(manifests / "1-create.yaml"), applied
        assert (applied[0]["namespace"], applied[0]["result"]) == ("default", "created")
        # A broken manifest written later is refused with its file named; what runs stays.
        (manifests / "2-broken.yaml").write_text("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {}\n")
        wait_until(lambda: named(logs, "manifests.refused"), 10, "refusal event", proc=proc, logs=logs)
        refused = named(logs, "manifests.refused")[0]
        assert refused["source"] == str(manifests / "2-broken.yaml") and refused["level"] == "warning", refused
        assert len(named(logs, "isvc.applied")) == 1, "re-applying the unchanged manifest is not an event"
    finally:
        _kill(proc)
