"""A real Prometheus (Debian's) scrapes a real `sluice serve` while the test sends known traffic to a 90/10 service.

Revision 00001's pod answers 500 to requests that ask for it (X-Test-Fail: 1), revision 00002's pod takes a known
150 ms; two tag-only revisions cover the gateway's own answers (a dead pod: 502; no endpoints: 503), and an unknown
host gets 404. Every figure Prometheus returns is compared with what the clients saw: request counts per revision
(Istio's and Sluice's names), a success rate, and p50/p99 read with histogram_quantile.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Dict, List, Tuple

import pytest
import requests

from conftest import HERE, LOOPBACK, REQUEST_TIMEOUT, SLUICE_START_TIMEOUT, _kill, http_ok, port_open, spawn, wait_until

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build, as `make test-e2e` does", allow_module_level=True)

pytestmark = pytest.mark.timeout(150)

NAMESPACE = "kserve-test"
NAME = "sklearn-iris"
COMPONENT = f"{NAME}-predictor-default"
REV1, REV2 = f"{COMPONENT}-00001", f"{COMPONENT}-00002"
DEAD, EMPTY = f"{COMPONENT}-00003", f"{COMPONENT}-00004"
HOST = f"{NAME}.{NAMESPACE}.example.com"
DELAY_S = 0.150
PATH = f"/v1/models/{NAME}:predict"


def config(listen: int, admin: int, metrics: int, fast: int, slow: int, dead: int) -> str:
    return f"""# Written by Tests/e2e/test_prometheus_metrics.py
listen: {LOOPBACK}:{listen}
admin: {LOOPBACK}:{admin}
metrics: {{listen: {LOOPBACK}:{metrics}, istio: true}}
accessLog: {{path: off}}
routing: {{domain: example.com, serviceHostTemplate: "{{name}}.{{namespace}}.{{domain}}", componentSuffix: -predictor-default}}
services:
- name: {NAME}
  namespace: {NAMESPACE}
  tagRouting: true
  revisions:
    {REV1}: [{LOOPBACK}:{fast}]
    {REV2}: [{LOOPBACK}:{slow}]
    {DEAD}: [{LOOPBACK}:{dead}]
    {EMPTY}: []
  traffic:
  - {{revisionName: {REV2}, percent: 10, tag: latest, latestRevision: true}}
  - {{revisionName: {REV1}, percent: 90, tag: prev}}
  - {{revisionName: {DEAD}, percent: 0, tag: dead}}
  - {{revisionName: {EMPTY}, percent: 0, tag: empty}}
"""


class Prometheus:
    def __init__(self, port: int):
        self.url = f"http://{LOOPBACK}:{port}"

    def query(self, promql: str) -> List[dict]:
        r = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def by(self, promql: str, label: str) -> Dict[str, float]:
        return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in self.query(promql)}

    def scalar(self, promql: str) -> float:
        result = self.query(promql)
        assert len(result) == 1, f"{promql}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, label: str, expected: Dict[str, float], timeout: float = 20) -> None:
        """Waits until Prometheus has scraped what the clients saw (its scrapes are 1 s apart)."""
        last: Dict[str, float] = {}

        def matches() -> bool:
            nonlocal last
            last = self.by(promql, label)
            return last == expected

        try:
            wait_until(matches, timeout, f"{promql} == {expected}", interval=0.25)
        except BaseException:
            print(f"last result of {promql}: {last}")
            raise


@pytest.fixture
def stack(free_ports, tmp_path):
    binary = os.environ["SLUICE_BIN"]
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed (make test installs Debian's prometheus package)")
    listen, admin, metrics, fast, slow, prom = free_ports(6)
    # The dead pod's port stays bound (never listening: connections are refused) so nothing else can take it.
    refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refusing.bind((LOOPBACK, 0))
    dead = refusing.getsockname()[1]
    started = []
    try:
        for port, delay in ((fast, 0), (slow, DELAY_S * 1000)):
            logs = tmp_path / f"pod-{port}"
            proc = spawn([sys.executable, str(HERE / "fault_pod.py"), "--port", str(port), "--model-name", NAME,
                          "--delay-ms", str(delay)], logs)
            started.append(proc)
            wait_until(lambda: port_open(port), 15, f"test pod on {port}", proc=proc, logs=logs)
        (tmp_path / "sluice.yaml").write_text(config(listen, admin, metrics, fast, slow, dead))
        logs = tmp_path / "sluice"
        sluice = spawn([binary, "serve", "--config", str(tmp_path / "sluice.yaml"), "--workers", "2"], logs)
        started.append(sluice)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{metrics}/metrics") and port_open(listen), SLUICE_START_TIMEOUT,
                   "sluice serving /metrics", proc=sluice, logs=logs)
        (tmp_path / "prometheus.yml").write_text(f"""global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
- job_name: sluice
  static_configs: [{{targets: ["{LOOPBACK}:{metrics}"]}}]
""")
        plogs = tmp_path / "prometheus"
        proc = spawn([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                      f"--web.listen-address={LOOPBACK}:{prom}", "--log.level=warn"], plogs)
        started.append(proc)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{prom}/-/ready"), 30, "prometheus ready", proc=proc, logs=plogs)
        yield f"http://{LOOPBACK}:{listen}", Prometheus(prom), f"http://{LOOPBACK}:{admin}"
    finally:
        for proc in reversed(started):
            _kill(proc)
        refusing.close()


def send(url: str, count: int, threads: int = 4) -> List[Tuple[str, int, float]]:
    """COUNT predictions to the 90/10 host; every 10th asks its pod for a 500. (revision, status, seconds) each."""
    results: List[List[Tuple[str, int, float]]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        with requests.Session() as s:
            for n in range(i, count, threads):
                headers = {"Host": HOST, "X-Test-Fail": "1" if n % 10 == 0 else "0"}
                started = time.monotonic()
                r = s.post(url + PATH, json={"instances": [[6.8, 2.8, 4.8, 1.4]]}, headers=headers, timeout=REQUEST_TIMEOUT)
                results[i].append((r.headers.get("Sluice-Revision", ""), r.status_code, time.monotonic() - started))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ts), "clients still running after 60 s"
    return [o for r in results for o in r]


def quantile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_prometheus_sees_each_revision_as_the_clients_did(stack):
    url, prometheus, _ = stack
    outcomes = send(url, 400)
    assert all(rev in (REV1, REV2) for rev, _, _ in outcomes), Counter(rev for rev, _, _ in outcomes)
    sent = Counter(rev for rev, _, _ in outcomes)
    assert sent[REV2] > 0 and sent[REV1] > sent[REV2]
    failed = Counter(rev for rev, status, _ in outcomes if status == 500)
    assert sum(failed.values()) == 40 and all(status in (200, 500) for _, status, _ in outcomes)
    # The gateway's own answers: a dead pod, a revision without endpoints, a host nobody serves.
    with requests.Session() as s:
        for host, status in ((f"dead-{COMPONENT}.{NAMESPACE}.example.com", 502),
                             (f"empty-{COMPONENT}.{NAMESPACE}.example.com", 503), ("nobody.example.org", 404)):
            for _ in range(5):
                r = s.post(url + PATH, json={"instances": []}, headers={"Host": host}, timeout=REQUEST_TIMEOUT)
                assert r.status_code == status, (host, r.status_code, r.text)
    expected = {REV1: float(sent[REV1]), REV2: float(sent[REV2]), DEAD: 5.0, EMPTY: 5.0}

    # Istio's names, as a Flagger or Kiali query reads them.
    prometheus.wait_for(f'sum by (destination_canonical_revision) (istio_requests_total{{destination_service_namespace="{NAMESPACE}"}})',
                        "destination_canonical_revision", expected)
    # Sluice's own names.
    prometheus.wait_for(f'sum by (revision) (sluice_requests_total{{namespace="{NAMESPACE}"}})', "revision", expected)

    # Success rate of each serving revision, with response codes as the clients saw them.
    for rev in (REV1, REV2):
        want = 1 - failed[rev] / sent[rev]
        got = prometheus.scalar(f'sum(istio_requests_total{{destination_canonical_revision="{rev}",response_code!~"5.."}}) '
                                f'/ sum(istio_requests_total{{destination_canonical_revision="{rev}"}})')
        assert got == pytest.approx(want), rev
        got = prometheus.scalar(f'sum(sluice_requests_total{{revision="{rev}",code!~"5.."}}) / sum(sluice_requests_total{{revision="{rev}"}})')
        assert got == pytest.approx(want), rev

    # Latency of the slow revision: Sluice's fine buckets give p50/p99 within 5 % of what the clients measured
    # (which also includes the client's own time, so the gateway's figure may only be lower); Istio's
    # standard buckets (100 ms, 250 ms) only bound it.
    slow = [seconds for rev, _, seconds in outcomes if rev == REV2]
    for q in (0.5, 0.99):
        got = prometheus.scalar(f'histogram_quantile({q}, sum by (le) (sluice_request_duration_seconds_bucket{{revision="{REV2}"}}))')
        want = quantile(slow, q)
        assert DELAY_S <= got <= want * 1.05, f"p{int(q * 100)}: {got:.4f} s from the histogram, clients saw {want:.4f} s"
        got_ms = prometheus.scalar(f'histogram_quantile({q}, sum by (le) (istio_request_duration_milliseconds_bucket{{destination_canonical_revision="{REV2}"}}))')
        assert 100 < got_ms <= 250, f"p{int(q * 100)} from Istio's buckets: {got_ms} ms"

    # The gateway-made answers, by response code and flags (Istio) and by reason (Sluice).
    flags = prometheus.by(f'sum by (response_flags) (istio_requests_total{{response_code=~"50[23]|404"}})', "response_flags")
    assert flags == {"UF": 5.0, "UH": 5.0, "NR": 5.0}, flags
    reasons = prometheus.by('sum by (reason) (sluice_gateway_answers_total)', "reason")
    assert reasons == {"no_route": 5.0, "no_ready_endpoint": 5.0, "upstream_connect_failed": 5.0}, reasons


def test_sluice_top_shows_each_revisions_share_success_and_latency(stack):
    """`sluice top` reads the same counters as /metrics: per revision, what the clients saw in the last minute."""
    url, _, admin = stack
    outcomes = send(url, 200)
    sent = Counter(rev for rev, _, _ in outcomes)
    failed = Counter(rev for rev, status, _ in outcomes if status == 500)
    top = subprocess.run([os.environ["SLUICE_BIN"], "top", "isvc", NAME, "-n", NAMESPACE, "--server", admin, "-o", "json"],
                         capture_output=True, text=True, timeout=30)
    assert top.returncode == 0, top.stderr
    rows = {row["revision"]: row for row in json.loads(top.stdout)["items"]}
    for rev in (REV1, REV2):
        row = rows[rev]
        assert row["requests"] == sent[rev], row
        assert row["successRate"] == pytest.approx(1 - failed[rev] / sent[rev]), row
        assert row["share"] == pytest.approx(sent[rev] / len(outcomes)), row
        assert row["requestsPerSecond"] > 0
    assert rows[REV1]["percent"] == 90 and rows[REV2]["percent"] == 10 and rows[REV2]["tag"] == "latest"
    slow = [seconds for rev, _, seconds in outcomes if rev == REV2]
    assert DELAY_S <= rows[REV2]["p99Seconds"] <= quantile(slow, 0.99) * 1.05, rows[REV2]
    # The table an operator reads.
    table = subprocess.run([os.environ["SLUICE_BIN"], "top", "isvc", NAME, "-n", NAMESPACE, "--server", admin],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "REVISION", "TAG", "TRAFFIC", "SHARE", "RPS", "SUCCESS", "P50", "P99"]
    assert any(line.split()[1:4] == [REV2, "latest", "10%"] for line in lines[1:-1]), table.stdout
