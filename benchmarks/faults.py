#!/usr/bin/env python3
"""Failures under faults: Sluice (static services, and manifest-driven with readiness probes), nginx and HAProxy in
front of the same scripted pods (Tests/e2e/fault_pod.py), each scenario under a steady load of 16 keep-alive POST
clients (Tests/e2e/fault_load.py, the client the e2e fault tests use), one table of failed/total per scenario.

    python3 benchmarks/faults.py [--proxies sluice,sluice-manifest,nginx,haproxy] [--scenarios kill,503,hang,canary,only-pod]
                                 [--sluice-bin [LABEL=]PATH ...] [--sluice-resilience [LABEL ...]] [--markdown]

Scenarios (each ~12-16 s; every proxy gets fresh pods and a fresh process):
  kill      kill -9 one of a revision's 2 pods for 6 s, then start it again; also: the time from the restarted pod
            answering its own readiness path to its first answer through the proxy
  503       one of 2 pods answers 503 to every predict for 8 s (its readiness path still 200)
  hang      one of 2 pods stopped (SIGSTOP) for 8 s, with a 3 s per-try timeout
  canary    90/10 split; the canary revision's only pod is killed (-9) for 8 s, then started again
  only-pod  the only pod of the only revision is killed (-9) for 6 s: what the clients are answered, by status

Configurations, written per run into a temporary directory (documented equivalents of one another):
  Sluice   Tests/e2e/fault_load.py's static_config / control_config (readiness every 1 s, failureThreshold 3, as
           config/sluice.yaml); with
           --sluice-resilience the retries/outlierDetection settings of issue 9 (fault_load.resilience_yaml; today's
           main refuses them). Without them, the hang's 3 s per-try timeout is `timeouts.upstreamResponse: 3s`.
  nginx    benchmarks/faults-nginx.conf: `max_fails=1 fail_timeout=10s` (nginx's defaults, written out),
           `proxy_next_upstream error timeout http_503 non_idempotent`, `proxy_next_upstream_tries 3`, a shared
           `zone`; hang: `proxy_read_timeout 3s`.
  HAProxy  benchmarks/faults-haproxy.cfg: `retries 3`, `option redispatch`, `retry-on conn-failure empty-response
           response-timeout 503`, `check` (httpchk GET /v2/health/ready, inter 2s fall 3 rise 2) and
           `observe layer7`; hang: `timeout server 3s`.
A canary (90/10) is one weighted pool for nginx and HAProxy (pods of 00001 at weight 45 each, the canary's at 10),
so that both may fall back to the other revision's pods; Sluice routes by revision.
Every proxy runs 2 workers/threads. Loopback only; every process started is stopped at the end.
"""
import argparse
import os
import signal
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))

import fault_load as fl  # noqa: E402

CLIENTS = 16
WORKERS = 2
SCENARIOS = ("kill", "503", "hang", "canary", "only-pod")
PROXIES = ("sluice", "sluice-manifest", "nginx", "haproxy")
TITLES = {
    "kill": "kill -9 one of a revision's 2 pods for 6 s (then restart it)",
    "restart": "a pod restarted: its first answer through the proxy after it was ready",
    "503": "one of 2 pods answers 503 to everything for 8 s",
    "hang": "a hung pod (SIGSTOP) for 8 s, 3 s per-try timeout",
    "canary": "the canary revision's only pod dies (90/10) for 8 s",
    "only-pod": "the only pod of the only revision dies for 6 s (answers by status)",
}


# ---------------------------------------------------------------------------------------------- processes

class Processes:
    """Every process a run starts, each in its own session (so its group can be signalled), stopped by stop_all."""

    def __init__(self, directory: str):
        self.directory = directory
        self.live: List[subprocess.Popen] = []

    def start(self, args: List[str], name: str) -> subprocess.Popen:
        with open(os.path.join(self.directory, f"{name}.out"), "ab") as out, \
                open(os.path.join(self.directory, f"{name}.err"), "ab") as err:
            proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped pod would hold SIGTERM pending
                os.killpg(proc.pid, sig)
                proc.wait(5)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.live)):
            self.stop(proc)

    def tail(self, name: str, chars: int = 1500) -> str:
        text = ""
        for suffix in (".out", ".err"):
            path = os.path.join(self.directory, name + suffix)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text += f.read()[-chars:]
        return text


def wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> float:
    """Polls CONDITION; returns time.monotonic() when it held, raises after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not true after {timeout}s")
        time.sleep(interval)
    return time.monotonic()


@dataclass
class Pod:
    name: str
    port: int
    processes: Processes
    proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"{fl.LOOPBACK}:{self.port}"

    @property
    def control(self) -> fl.PodControl:
        return fl.PodControl(self.port)

    def start(self) -> float:
        self.proc = self.processes.start(fl.pod_command(self.port, self.name), f"pod-{self.name}")
        return wait(self.control.ready, 15, f"pod {self.name} ready on {self.port}")

    def kill9(self) -> None:
        fl.signal_process(self.proc, signal.SIGKILL)
        self.processes.live.remove(self.proc)

    def signal(self, sig: int) -> None:
        fl.signal_process(self.proc, sig)


@dataclass
class Topology:
    """What a proxy is put in front of: revisions (in traffic order, the last one the canary) with their pods."""
    revisions: Dict[str, List[Pod]]
    percents: Dict[str, int]
    per_try_timeout: Optional[str] = None  # "3s" for the hang


# ---------------------------------------------------------------------------------------------- proxies

class Proxy:
    label = ""

    def start(self, run: Processes, topology: Topology) -> int:
        """Starts the proxy in front of TOPOLOGY; returns the port clients connect to, once it routes."""
        raise NotImplementedError


class Conf(string.Template):
    """benchmarks/faults-*.conf|cfg: @name@ fields (nginx's own variables are $name)."""
    delimiter = "@"
    pattern = r"@(?:(?P<escaped>@)|(?P<named>[a-z_]+)@|(?P<braced>(?!))|(?P<invalid>))"


def template(name: str) -> Conf:
    with open(os.path.join(HERE, name)) as f:
        return Conf(f.read())


def weighted(topology: Topology) -> List[Tuple[Pod, int]]:
    """One pool for nginx and HAProxy: each pod weighted by its revision's percent shared among the revision's pods."""
    return [(pod, max(1, round(topology.percents[rev] / len(pods))))
            for rev, pods in topology.revisions.items() for pod in pods]


class Nginx(Proxy):
    label = "nginx"

    def start(self, run: Processes, topology: Topology) -> int:
        port = fl.free_port()
        servers = "".join(f"    server {pod.address} weight={w} max_fails=1 fail_timeout=10s;\n"
                          for pod, w in weighted(topology))
        conf = template("faults-nginx.conf").substitute(
            dir=run.directory, workers=WORKERS, port=port, servers=servers,
            read_timeout=topology.per_try_timeout or "60s")
        path = os.path.join(run.directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        run.start(["nginx", "-c", path, "-p", run.directory], "nginx")
        wait(lambda: fl.port_open(port), 10, "nginx listening")
        return port


class HAProxy(Proxy):
    label = "haproxy"

    def start(self, run: Processes, topology: Topology) -> int:
        port = fl.free_port()
        servers = "".join(f"  server {pod.name} {pod.address} weight {w} check observe layer7\n"
                          for pod, w in weighted(topology))
        conf = template("faults-haproxy.cfg").substitute(
            threads=WORKERS, port=port, servers=servers, server_timeout=topology.per_try_timeout or "60s")
        path = os.path.join(run.directory, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        run.start(["haproxy", "-f", path], "haproxy")
        wait(lambda: fl.port_open(port), 10, "haproxy listening")
        return port


class Sluice(Proxy):
    def __init__(self, binary: str, label: str, manifests: bool, resilience: bool):
        self.binary, self.label, self.manifests, self.resilience = binary, label, manifests, resilience

    def settings(self, topology: Topology) -> Tuple[str, str]:
        """(timeouts.upstreamResponse, extra top-level YAML) for this run."""
        if self.resilience:
            return "60s", fl.resilience_yaml(topology.per_try_timeout or "0s")
        return topology.per_try_timeout or "60s", ""

    def start(self, run: Processes, topology: Topology) -> int:
        listen, admin = fl.free_port(), fl.free_port()
        upstream_response, extra = self.settings(topology)
        if self.manifests:
            config = fl.control_config(listen, admin, os.path.join(run.directory, "state"), WORKERS,
                                       readiness_period="1s", upstream_response=upstream_response, extra=extra)
        else:
            endpoints = {rev: [p.address for p in pods] for rev, pods in topology.revisions.items()}
            config = fl.static_config(listen, admin, endpoints, topology.percents, WORKERS, upstream_response, extra)
        path = os.path.join(run.directory, "sluice.yaml")
        with open(path, "w") as f:
            f.write(config)
        proc = run.start([self.binary, "serve", "--config", path, "--state-dir", os.path.join(run.directory, "state")],
                         "sluice")
        try:
            wait(lambda: proc.poll() is not None or (fl.port_open(listen) and fl.port_open(admin)), 15,
                 "sluice listening")
        except RuntimeError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"sluice exited {proc.returncode}: {run.tail('sluice')[-400:]}")
        if self.manifests:
            self.apply(run, admin, topology)
        return listen

    def apply(self, run: Processes, admin: int, topology: Topology) -> None:
        """The create step with 00001's pods, then (a canary) the canary step: model-2 at its percent on its pods."""
        revisions = list(topology.revisions)
        steps = [fl.manifest([p.address for p in topology.revisions[revisions[0]]])]
        if len(revisions) > 1:
            steps.append(fl.manifest([p.address for p in topology.revisions[revisions[1]]],
                                     canary_percent=topology.percents[revisions[1]], storage_uri=fl.STORAGE_URI_2))
        server = f"http://{fl.LOOPBACK}:{admin}"
        for n, text in enumerate(steps):
            path = os.path.join(run.directory, f"isvc-{n}.yaml")
            with open(path, "w") as f:
                f.write(text)
            for args in (["apply", "-n", fl.NAMESPACE, "-f", path],
                         ["rollout", "status", "isvc", fl.MODEL_NAME, "-n", fl.NAMESPACE, "--timeout", "30s"]):
                r = subprocess.run([self.binary, *args, "--server", server], capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    raise RuntimeError(f"sluice {' '.join(args[:2])}: {r.stdout} {r.stderr}")


# ---------------------------------------------------------------------------------------------- scenarios

@dataclass
class Result:
    outcomes: List[fl.Outcome] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    restart_s: Optional[float] = None  # kill: restarted pod's first answer through the proxy after it was ready
    error: Optional[str] = None

    def cell(self) -> str:
        if self.error:
            return "error (see below)"
        return f"{len(fl.failures(self.outcomes))} / {len(self.outcomes)}"


def served_by_each(load: fl.Load, pods: List[str], at_least: int = 20, timeout: float = 30) -> None:
    def served() -> bool:
        counts = {p: 0 for p in pods}
        for o in list(load.outcomes):
            if o.ok and o.pod in counts:
                counts[o.pod] += 1
        return all(c >= at_least for c in counts.values())
    wait(served, timeout, f"each of {pods} answering through the proxy", interval=0.05)


def first_from(load: fl.Load, pod: str, since: int, timeout: float) -> Optional[fl.Outcome]:
    """The first outcome at or after index SINCE answered by POD, waiting up to TIMEOUT seconds for it."""
    deadline = time.monotonic() + timeout
    while True:
        outcomes = load.outcomes
        for i in range(since, len(outcomes)):
            if outcomes[i].ok and outcomes[i].pod == pod:
                return outcomes[i]
        since = len(outcomes)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def statuses(outcomes: List[fl.Outcome]) -> str:
    return " ".join(f"{k}×{v}" for k, v in fl.by_status(outcomes).items())


def run_scenario(name: str, proxy: Proxy, run: Processes) -> Result:
    def pods(*names: str) -> List[Pod]:
        out = [Pod(n, fl.free_port(), run) for n in names]
        for p in out:
            p.start()
        return out

    result = Result()
    load: Optional[fl.Load] = None
    try:
        if name in ("kill", "503", "hang"):
            a, b = pods("A", "B")
            topology = Topology({fl.REV1: [a, b]}, {fl.REV1: 100}, "3s" if name == "hang" else None)
        elif name == "canary":
            a, b, c = pods("A", "B", "C")
            topology = Topology({fl.REV1: [a, b], fl.REV2: [c]}, {fl.REV1: 90, fl.REV2: 10})
        else:
            (a,) = pods("A")
            topology = Topology({fl.REV1: [a]}, {fl.REV1: 100})
        port = proxy.start(run, topology)
        load = fl.Load(port, clients=CLIENTS, timeout=15)
        served_by_each(load, [p.name for pods_ in topology.revisions.values() for p in pods_])
        t0 = time.monotonic()
        if name == "kill":
            b.kill9()
            load.run_until(t0 + 6)
            since = load.count()
            ready_at = b.start()
            back = first_from(load, "B", since, 15)
            result.restart_s = None if back is None else back.finished - ready_at
            load.run_until(max(time.monotonic(), ready_at + 3))
        elif name == "503":
            b.control.set_mode("503")
            load.run_until(t0 + 1)
            a1, b1 = a.control.stats()["predicts"], b.control.stats()["predicts"]
            load.run_until(t0 + 8)
            a2, b2 = a.control.stats()["predicts"], b.control.stats()["predicts"]
            b.control.set_mode("ok")
            load.run_until(t0 + 10)
            share = 100 * (b2 - b1) / max(1, a2 - a1 + b2 - b1)
            result.notes.append(f"the 503 pod got {share:.1f} % of predicts 1-8 s in")
        elif name == "hang":
            b.signal(signal.SIGSTOP)
            load.run_until(t0 + 8)
            b.signal(signal.SIGCONT)
            load.run_until(t0 + 10)
        elif name == "canary":
            c.kill9()
            load.run_until(t0 + 8)
            c.start()
            load.run_until(t0 + 10)
        else:
            a.kill9()
            load.run_until(t0 + 6)
            a.start()
            load.run_until(t0 + 8)
        result.outcomes = load.stop()
        load = None
        during = [o for o in result.outcomes if o.finished >= t0]
        failed = fl.failures(result.outcomes)
        if name == "hang":
            slow = [o for o in result.outcomes if o.seconds > 2.5]
            # Sent to the hung pod 5-7.5 s into the hang: answered by it when it woke, or slow (as test_faults.py).
            late = [o for o in result.outcomes
                    if t0 + 5 <= o.started < t0 + 7.5 and (o.pod == "B" or o.seconds > 2.5)]
            result.notes.append(f"{len(slow)} took > 2.5 s, slowest {max(o.seconds for o in result.outcomes):.1f} s, "
                                f"{len(late)} started 5-7.5 s in went to the hung pod")
        if name == "canary" and failed:
            result.notes.append(f"last failure {max(o.finished for o in failed) - t0:.1f} s after the kill")
        if name == "only-pod":
            result.notes.append(statuses(fl.failures(during)))
        elif failed:
            result.notes.append(statuses(failed))
    except Exception as e:  # noqa: BLE001 - one broken run is one cell of the table, not the end of the benchmark
        result.error = f"{type(e).__name__}: {e}"
        if load is not None:
            try:
                result.outcomes = load.stop()
            except RuntimeError:
                pass
    return result


# ---------------------------------------------------------------------------------------------- the table

def table(rows: List[Tuple[str, List[str]]], columns: List[str], markdown: bool) -> str:
    if markdown:
        lines = ["| scenario | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += ["| " + title + " | " + " | ".join(cells) + " |" for title, cells in rows]
        return "\n".join(lines)
    widths = [max(len(r[0]) for r in rows + [("scenario", [])])] + \
             [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(columns)]
    out = ["  ".join(x.ljust(w) for x, w in zip(["scenario", *columns], widths))]
    out += ["  ".join(x.ljust(w) for x, w in zip([t, *cells], widths)) for t, cells in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", default=",".join(PROXIES), help=f"comma-separated, of {', '.join(PROXIES)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)} "
                    "(restart is measured within kill)")
    ap.add_argument("--sluice-bin", action="append", default=[], metavar="[LABEL=]PATH",
                    help="a Sluice binary (repeat, with labels, to compare builds); default .build/release/sluice")
    ap.add_argument("--sluice-resilience", nargs="*", metavar="LABEL",
                    help="give Sluice issue 9's retries/outlierDetection settings (all binaries, or those labelled)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = ap.parse_args()

    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    scenarios = ["kill" if s == "restart" else s for s in scenarios]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    binaries = []
    for spec in a.sluice_bin or [os.path.join(ROOT, ".build", "release", "sluice")]:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        binaries.append((label, os.path.abspath(path)))
    proxies: List[Proxy] = []
    for p in (x.strip() for x in a.proxies.split(",") if x.strip()):
        if p in ("sluice", "sluice-manifest"):
            for label, path in binaries:
                if not os.access(path, os.X_OK):
                    ap.error(f"no Sluice binary at {path} (build it: swift build -c release --product sluice)")
                wanted = a.sluice_resilience
                resilience = wanted is not None and (not wanted or label in wanted)
                name = p + (f"[{label}]" if label else "") + (" +resilience" if resilience else "")
                proxies.append(Sluice(path, name, p == "sluice-manifest", resilience))
        elif p == "nginx":
            proxies.append(Nginx())
        elif p == "haproxy":
            proxies.append(HAProxy())
        else:
            ap.error(f"unknown proxy {p!r}")

    results: Dict[Tuple[str, str], Result] = {}
    for scenario in dict.fromkeys(scenarios):
        for proxy in proxies:
            with tempfile.TemporaryDirectory(prefix=f"faults-{scenario}-") as directory:
                run = Processes(directory)
                try:
                    started = time.monotonic()
                    result = run_scenario(scenario, proxy, run)
                finally:
                    run.stop_all()
            results[(scenario, proxy.label)] = result
            print(f"{scenario:9} {proxy.label:28} {result.cell():>16}  {time.monotonic() - started:5.1f} s  "
                  + "; ".join(result.notes), file=sys.stderr, flush=True)

    columns = [p.label for p in proxies]
    rows: List[Tuple[str, List[str]]] = []
    for scenario in dict.fromkeys(scenarios):
        cells = [results[(scenario, c)] for c in columns]
        if scenario == "only-pod":
            rows.append((TITLES[scenario], [r.cell() if r.error else r.cell() + " (" + "; ".join(r.notes) + ")"
                                            for r in cells]))
        else:
            rows.append((TITLES[scenario], [r.cell() for r in cells]))
        if scenario == "kill":
            rows.append((TITLES["restart"], ["error" if r.error else "not within 15 s" if r.restart_s is None
                                             else f"{max(0.0, r.restart_s):.2f} s" for r in cells]))
    print(table(rows, columns, a.markdown))
    print()
    for scenario in dict.fromkeys(scenarios):
        for c in columns:
            r = results[(scenario, c)]
            if r.notes or r.error:
                print(f"- {scenario}, {c}: " + (r.error or "; ".join(r.notes)))


if __name__ == "__main__":
    main()
