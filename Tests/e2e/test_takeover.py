"""One sluice per listen address, and `sluice serve --takeover`: the built binary in front of `sluice demo`.

A second plain start on an address already served must refuse, naming the running pid, and change nothing; a
takeover under steady keep-alive load must lose no request, after which the new process serves and the old one has
exited.
"""

import json
import os
import pathlib
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import pytest
import requests

from conftest import LOOPBACK, REQUEST_TIMEOUT, SLUICE_START_TIMEOUT, Load, _kill, http_ok, port_open, spawn, tail_logs, wait_until

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

HOST = "iris.default.example.com"
PREDICT = "/v1/models/sklearn-iris:predict"
INSTANCES = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


@dataclass
class Gateway:
    proc: subprocess.Popen
    logs: pathlib.Path

    def stderr(self) -> str:
        return pathlib.Path(f"{self.logs}.err").read_text(errors="replace")

    def events(self, name: str) -> List[dict]:
        return [json.loads(l) for l in self.stderr().splitlines() if f'"event":"{name}"' in l]


@dataclass
class Setup:
    binary: str
    config: pathlib.Path
    port: int
    admin_port: int
    metrics_port: int
    spare_port: int
    tmp: pathlib.Path
    started: List[Gateway]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def serve(self, *extra: str, wait: bool = True) -> Gateway:
        logs = self.tmp / f"sluice-{len(self.started)}"
        proc = spawn([self.binary, "serve", "--config", str(self.config), "--workers", "2", *extra], logs)
        g = Gateway(proc, logs)
        self.started.append(g)
        if wait:
            wait_until(lambda: len(g.events("gateway.started")) == 1, SLUICE_START_TIMEOUT, "sluice started",
                       proc=proc, logs=logs)
        return g


@pytest.fixture
def setup(free_ports, tmp_path) -> Setup:
    binary = os.environ["SLUICE_BIN"]
    backend_port, port, admin_port, metrics_port, spare_port = free_ports(5)
    backend = spawn([binary, "demo", "--listen", f"{LOOPBACK}:{backend_port}"], tmp_path / "demo")
    config = tmp_path / "sluice.yaml"
    config.write_text(f"""# Written by Tests/e2e/test_takeover.py
listen: {LOOPBACK}:{port}
admin: {LOOPBACK}:{admin_port}
metrics: {{listen: {LOOPBACK}:{metrics_port}}}
stateDir: {tmp_path / "state"}
shutdownTimeout: 10s
timeouts: {{requestHeader: 10s, keepAliveIdle: 75s, upstreamConnect: 5s, upstreamResponse: 60s, bodyIdle: 60s}}
routing:
  domain: example.com
  serviceHostTemplate: "{{name}}.{{namespace}}.{{domain}}"
services:
- name: iris
  namespace: default
  revisions:
    iris-00001: [{LOOPBACK}:{backend_port}]
  traffic:
  - {{revisionName: iris-00001, percent: 100}}
""")
    s = Setup(binary, config, port, admin_port, metrics_port, spare_port, tmp_path, [])
    try:
        wait_until(lambda: port_open(backend_port), SLUICE_START_TIMEOUT, "demo backend listening", proc=backend,
                   logs=tmp_path / "demo")
        yield s
    finally:
        for g in s.started:
            _kill(g.proc)
        _kill(backend)


@dataclass
class Outcome:
    ok: bool
    detail: str
    finished: float


def predict(session: requests.Session, url: str) -> Outcome:
    try:
        r = session.post(url + PREDICT, json=INSTANCES, headers={"Host": HOST}, timeout=REQUEST_TIMEOUT)
    except requests.RequestException as e:
        return Outcome(False, f"{type(e).__name__}: {e}", time.monotonic())
    ok = r.status_code == 200 and "predictions" in r.json()
    return Outcome(ok, f"HTTP {r.status_code}: {r.text[:120]}", time.monotonic())


def predict_new_connection(_: requests.Session, url: str) -> Outcome:
    """One request on a connection of its own: connections keep arriving in the listeners' accept queues."""
    with requests.Session() as fresh:
        o = predict(fresh, url)
    o.detail = "new connection: " + o.detail
    return o


def served_by_everyone(url: str, n: int) -> List[Outcome]:
    with requests.Session() as s:
        return [predict(s, url) for _ in range(n)]


def exited(g: Gateway, timeout: float) -> Optional[int]:
    try:
        return g.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_second_plain_start_is_refused_and_the_first_keeps_serving(setup):
    first = setup.serve()
    pid = first.proc.pid
    assert all(o.ok for o in served_by_everyone(setup.url, 10))

    second = setup.serve(wait=False)
    code = exited(second, SLUICE_START_TIMEOUT)
    assert code is not None and code != 0, f"a second sluice on {setup.url} did not refuse:\n{tail_logs(second.logs)}"
    failed = second.events("gateway.start_failed")
    assert len(failed) == 1, second.stderr()
    message = failed[0]["message"]
    assert f"{LOOPBACK}:{setup.port}" in message and f"sluice process {pid}" in message, message
    assert "--takeover" in message, message

    # Another client port but the same admin port: refused as well, naming the admin address.
    third = setup.serve("--listen", f"{LOOPBACK}:{setup.spare_port}", wait=False)
    code = exited(third, SLUICE_START_TIMEOUT)
    assert code is not None and code != 0, tail_logs(third.logs)
    message = third.events("gateway.start_failed")[0]["message"]
    assert f"admin address {LOOPBACK}:{setup.admin_port}" in message and f"sluice process {pid}" in message, message

    # Nothing changed: every request is still served by the first (a silent second one would 404 about half).
    outcomes = served_by_everyone(setup.url, 40)
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes if not o.ok][:3]
    assert first.proc.poll() is None
    assert http_ok(f"http://{LOOPBACK}:{setup.admin_port}/healthz")


def test_takeover_under_load_loses_no_request(setup):
    old = setup.serve()
    # 8 keep-alive clients (the old process closes their connections as it drains) and 2 that connect for every
    # request (some connection is always waiting in an accept queue when the listeners change hands).
    load = Load(lambda session: predict(session, setup.url), threads=8, max_seconds=40, max_requests=200000)
    connecting = Load(lambda session: predict_new_connection(session, setup.url), threads=2, max_seconds=40,
                      max_requests=100000)
    try:
        load.wait_for(300)
        start = time.monotonic()
        # Keep ~1.5 s of load before the takeover.
        wait_until(lambda: time.monotonic() - start >= 1.5 and load.count() > 0, 5, "load before the takeover")
        new = setup.serve("--takeover")
        code = exited(old, 15)
        assert code == 0, f"the old sluice did not drain and exit 0 (code {code}):\n{tail_logs(old.logs)}"
        old_exited_at = time.monotonic()
        wait_until(lambda: time.monotonic() - old_exited_at >= 1.5, 5, "load after the takeover")
        load.wait_for(300)
        connecting.wait_for(50)
    finally:
        outcomes = load.stop() + connecting.stop()
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)}/{len(outcomes)} requests failed across the takeover, e.g. {[o.detail for o in failed[:3]]}"
    after = [o for o in outcomes if o.finished > old_exited_at]
    print(f"takeover under load: {len(outcomes)} requests, 0 failed, {len(after)} after the old process exited")
    assert len(after) >= 300, f"only {len(after)} requests after the old process exited"

    started = new.events("takeover.started")
    assert len(started) == 1 and started[0]["fromPid"] == old.proc.pid, new.stderr()
    assert new.events("gateway.started")[0]["pid"] == new.proc.pid
    assert [e["signal"] for e in old.events("drain.started")] == ["takeover"], old.stderr()
    # The new process holds everything now: admin, metrics, and the claim of the listen address.
    assert http_ok(f"http://{LOOPBACK}:{setup.admin_port}/healthz")
    assert http_ok(f"http://{LOOPBACK}:{setup.metrics_port}/metrics")
    third = setup.serve(wait=False)
    code = exited(third, SLUICE_START_TIMEOUT)
    assert code is not None and code != 0
    assert f"sluice process {new.proc.pid}" in third.events("gateway.start_failed")[0]["message"], third.stderr()
    assert all(o.ok for o in served_by_everyone(setup.url, 20))

    # The sockets (and the claim) travel on: the new process can be taken over in turn.
    newer = setup.serve("--takeover")
    assert exited(new, 15) == 0, tail_logs(new.logs)
    assert newer.events("takeover.started")[0]["fromPid"] == new.proc.pid
    assert all(o.ok for o in served_by_everyone(setup.url, 20))
