"""Issue 12's traffic mirroring through a real `sluice serve` (SLUICE_BIN, a release build): the primary revision is a
real KServe model server (kserve_iris.py, model-1), the mirror revision a scripted pod (fault_pod.py) that counts the
mirrored requests it gets (X-Sluice-Shadow: 1, a `-shadow` Host) and can take seconds to answer.

What a user notices: the canary gets the configured share of the default host's requests, marked as mirrors; clients
get only the primary's answers; and a canary that takes 2 s per answer does not move the clients' p99 — the mirror is
its own request, which nobody waits for.
"""

import os
import time
from typing import Dict, List

import pytest
import requests

if not os.environ.get("SLUICE_BIN"):
    pytest.skip("SLUICE_BIN is not set: point it at the release build "
                "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does",
                allow_module_level=True)

from conftest import wait_until  # noqa: E402
from fault_load import REV1, REV2, Load, Outcome, describe, static_config  # noqa: E402
from test_faults import scripted_pod, start_gateway  # noqa: E402,F401 - the fault tests' fixtures, shared

pytestmark = pytest.mark.timeout(180)

CLIENTS = 4
REQUESTS = 600
CANARY_DELAY_MS = 2000


def mirrored_config(primary: str, canary: str, percent: float, mirror_bounds: str = ""):
    """A static sklearn-iris: REV1 (the KServe pod) at 100 %, REV2 (the scripted pod) at 0 % tagged latest, and
    PERCENT of the default host's requests mirrored to REV2 (no mirror when PERCENT is 0)."""
    def config(listen: int, admin: int, _state: str) -> str:
        text = static_config(listen, admin, {REV1: [primary], REV2: [canary]}, {REV1: 100, REV2: 0},
                             extra=mirror_bounds)
        if percent > 0:
            text = text.replace("  tagRouting: false\n", f"  tagRouting: false\n  mirror: {{percent: {percent}, revision: {REV2}}}\n")
        return text
    return config


def metric(gateway, name: str, labels: Dict[str, str]) -> float:
    """The sum of NAME's samples whose labels include LABELS, from the admin listener's /metrics."""
    total = 0.0
    for line in requests.get(f"{gateway.server}/metrics", timeout=5).text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def run_load(port: int) -> List[Outcome]:
    """REQUESTS predicts from CLIENTS keep-alive clients; every outcome."""
    load = Load(port, clients=CLIENTS, max_requests=REQUESTS, max_seconds=90)
    wait_until(lambda: load.count() >= REQUESTS, 90, f"{REQUESTS} answers through the gateway")
    return load.stop()


def p99(outcomes: List[Outcome]) -> float:
    seconds = sorted(o.seconds for o in outcomes)
    return seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))]


def assert_primary_answers(outcomes: List[Outcome]) -> None:
    """Every answer a 200 from revision 1, none from the scripted pod (it names itself in X-Pod; KServe does not)."""
    assert len(outcomes) >= REQUESTS, describe(outcomes)
    wrong = [o for o in outcomes if not o.ok or o.revision != REV1 or o.pod is not None]
    assert not wrong, f"{len(wrong)} answers not the primary's: {wrong[:3]} ({describe(outcomes)})"


def test_the_canary_gets_the_mirrored_share_and_clients_only_the_primarys_answers(kserve_servers, scripted_pod, start_gateway):
    canary = scripted_pod("canary")
    gateway = start_gateway(mirrored_config(kserve_servers[REV1].address, canary.address, 50))
    outcomes = run_load(gateway.port)
    assert_primary_answers(outcomes)
    sent = len(outcomes)
    # The gateway counts a mirror when its answer is read; the pod counts it when it arrives: wait for both to agree.
    wait_until(lambda: metric(gateway, "sluice_mirror_requests_total", {"revision": REV2, "result": "ok"})
               == canary.control.stats()["shadow_predicts"] > 0, 20, "the pod's count of mirrors and the gateway's agree")
    stats = canary.control.stats()
    # Binomial(n, 0.5): ±5 standard deviations (±61 of 600) fail by chance once in 3.5 million runs.
    half, sd = sent / 2, (sent * 0.25) ** 0.5
    assert abs(stats["shadow_predicts"] - half) < 5 * sd, f"{stats['shadow_predicts']} of {sent} mirrored"
    assert stats["predicts"] == stats["shadow_predicts"] == stats["shadow_hosts"], \
        f"every request the canary got was a marked mirror, and only those: {stats}"
    assert metric(gateway, "sluice_requests_total", {"revision": REV2}) == 0, "no client series for the mirrors"


def test_a_canary_slow_by_seconds_does_not_raise_the_clients_p99(kserve_servers, scripted_pod, start_gateway):
    """p99 of the same load with no mirror, then with every request mirrored to a canary that answers in 2 s.

    The bound: the mirrored p99 stays under 0.5 s, a quarter of the delay. It is honest because it cannot pass if
    clients waited for the mirror: with every request mirrored, a client that waited for even 1 % of its mirrors
    would see 2 s at p99. A primary answering in milliseconds leaves the bound room for a loaded 2-core machine."""
    baseline_canary = scripted_pod("idle")
    plain = start_gateway(mirrored_config(kserve_servers[REV1].address, baseline_canary.address, 0))
    without = run_load(plain.port)
    assert_primary_answers(without)

    slow = scripted_pod("slow", delay_ms=CANARY_DELAY_MS)
    gateway = start_gateway(mirrored_config(kserve_servers[REV1].address, slow.address, 100))
    started = time.monotonic()
    mirrored = run_load(gateway.port)
    assert_primary_answers(mirrored)
    took = time.monotonic() - started
    # The canary really was holding mirrors while the clients ran (at most 64 per worker: the in-flight bound).
    stats = slow.control.stats()
    assert stats["max_in_flight"] > 1, stats
    assert stats["shadow_predicts"] > 0, stats
    dropped = metric(gateway, "sluice_mirror_requests_total", {"revision": REV2, "result": "dropped_full"})
    print(f"p99 without mirror {p99(without) * 1000:.1f} ms, with a 2 s canary mirrored {p99(mirrored) * 1000:.1f} ms; "
          f"{len(mirrored)} requests in {took:.1f} s, {stats['shadow_predicts']} mirrors at the pod, {dropped:.0f} dropped (full)")
    assert p99(mirrored) < 0.5, f"p99 {p99(mirrored):.3f} s with the mirror (without: {p99(without):.3f} s)"
    # The load outran the slow canary: the bound dropped and counted what it could not hold.
    assert dropped > 0
