"""Fixtures for Sluice's end-to-end tests: real KServe model servers behind a real `sluice serve`.

Everything listens on 127.0.0.1. Every process started here is registered and killed at teardown (and at
interpreter exit as a last resort), whatever the outcome of the test.
"""

import atexit
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_models  # noqa: E402
# One copy of the names and port helpers, in the stdlib-only module the fault benchmark imports too.
from fault_load import (  # noqa: E402,F401
    COMPONENT, DOMAIN, LOOPBACK, MODEL_NAME, NAMESPACE, REV1, REV2, SERVICE_HOST, free_port, port_open)

LATEST_HOST = f"latest-{COMPONENT}.{NAMESPACE}.{DOMAIN}"
PREV_HOST = f"prev-{COMPONENT}.{NAMESPACE}.{DOMAIN}"

KSERVE_START_TIMEOUT = 60.0
SLUICE_START_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------------------- processes

_live: List[subprocess.Popen] = []


def _kill(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stops one process we started (and its own process group), escalating to SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    if proc in _live:
        _live.remove(proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        _kill(proc, signal.SIGKILL, timeout=5)


def spawn(args: List[str], log_prefix: pathlib.Path) -> subprocess.Popen:
    """Starts a process in its own session, stdout/stderr to LOG_PREFIX.out/.err, registered for cleanup."""
    out = open(f"{log_prefix}.out", "wb")
    err = open(f"{log_prefix}.err", "wb")
    try:
        proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()
        err.close()
    _live.append(proc)
    return proc


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05,
               proc: Optional[subprocess.Popen] = None, logs: Optional[pathlib.Path] = None) -> None:
    """Polls CONDITION until it is true; fails after TIMEOUT seconds, or at once if PROC has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail_logs(logs)}")
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not true after {timeout}s\n{tail_logs(logs)}")
        time.sleep(interval)


# Timeout of one request made by a test client (both test modules use the same).
REQUEST_TIMEOUT = 10


class Load:
    """THREADS client threads, each with a keep-alive session, calling REQUEST(session) continuously until stop()
    (bounded in time and count); every outcome is kept in order of completion."""

    def __init__(self, request: Callable[[requests.Session], object], threads: int = 4, max_seconds: float = 60,
                 max_requests: int = 20000):
        self.outcomes: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._per_thread = max_requests // threads
        self._threads = [threading.Thread(target=self._run, args=(request,), daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, request) -> None:
        with requests.Session() as s:
            for _ in range(self._per_thread):
                if self._stop.is_set() or time.monotonic() > self._deadline:
                    return
                o = request(s)
                with self._lock:
                    self.outcomes.append(o)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, more: int, timeout: float = 20) -> None:
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout, f"{more} more requests answered under load")

    def stop(self) -> list:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self._threads), "client threads did not stop"
        with self._lock:
            return list(self.outcomes)


def tail_logs(prefix: Optional[pathlib.Path], chars: int = 3000) -> str:
    if prefix is None:
        return ""
    text = ""
    for suffix in (".out", ".err"):
        p = pathlib.Path(f"{prefix}{suffix}")
        if p.exists():
            text += f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}\n"
    return text


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def free_ports() -> Callable[[int], List[int]]:
    """Hands out distinct free loopback ports, never the same one twice in a session."""
    handed: set = set()

    def take(n: int) -> List[int]:
        ports = []
        while len(ports) < n:
            p = free_port()
            if p not in handed:
                handed.add(p)
                ports.append(p)
        return ports

    return take


# ---------------------------------------------------------------------------------------------- models

@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> train_models.TrainedModels:
    return train_models.train(tmp_path_factory.mktemp("models"))


@dataclass
class KServeServer:
    revision: str
    port: int
    proc: subprocess.Popen
    logs: pathlib.Path
    grpc_port: int = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def grpc_address(self) -> str:
        """The gRPC port as a Sluice endpoint: HTTP/2 cleartext by prior knowledge."""
        return f"h2c://{LOOPBACK}:{self.grpc_port}"

    def stdout_lines(self) -> List[str]:
        return pathlib.Path(f"{self.logs}.out").read_text(errors="replace").splitlines()


@pytest.fixture(scope="session")
def kserve_servers(trained, free_ports, tmp_path_factory) -> Dict[str, KServeServer]:
    """model-1 as revision 00001 and model-2 as revision 00002, both ready on /v2/health/ready."""
    logdir = tmp_path_factory.mktemp("kserve-logs")
    servers: Dict[str, KServeServer] = {}
    try:
        for revision, model_dir in ((REV1, trained.model_1_dir), (REV2, trained.model_2_dir)):
            http_port, grpc_port = free_ports(2)
            logs = logdir / revision
            proc = spawn([sys.executable, str(HERE / "kserve_iris.py"), "--model_name", MODEL_NAME,
                          "--model_dir", str(model_dir), "--http_port", str(http_port),
                          "--grpc_port", str(grpc_port), "--enable_latency_logging", "false"], logs)
            servers[revision] = KServeServer(revision, http_port, proc, logs, grpc_port)
        # Both start at once (2 cores); then wait for each.
        for s in servers.values():
            wait_until(lambda: http_ok(f"http://{s.address}/v2/health/ready"), KSERVE_START_TIMEOUT,
                       f"KServe {s.revision} ready on {s.address}", interval=0.2, proc=s.proc, logs=s.logs)
            wait_until(lambda: port_open(s.grpc_port), KSERVE_START_TIMEOUT,
                       f"KServe {s.revision} gRPC on {s.grpc_port}", interval=0.2, proc=s.proc, logs=s.logs)
        yield servers
    finally:
        for s in servers.values():
            _kill(s.proc)


# ---------------------------------------------------------------------------------------------- sluice

def sluice_config(listen: int, admin: int, servers: Dict[str, KServeServer], percent_00002: int,
                  percent_00001: Optional[int] = None) -> str:
    """The bundled canary configuration, pointed at our KServe servers, with 00002 (tag latest) at PERCENT_00002."""
    if percent_00001 is None:
        percent_00001 = 100 - percent_00002
    return f"""# Written by Tests/e2e/conftest.py
listen: {LOOPBACK}:{listen}
admin: {LOOPBACK}:{admin}
timeouts: {{requestHeader: 10s, keepAliveIdle: 75s, upstreamConnect: 5s, upstreamResponse: 60s, bodyIdle: 60s}}
limits: {{maxHeaderBytes: 60KiB, maxHeaderCount: 100, maxRequestTargetBytes: 8KiB, maxRequestBodyBytes: 1GiB, bufferBytes: 32KiB, maxRequestsPerConnection: 10000}}
routing:
  domain: {DOMAIN}
  serviceHostTemplate: "{{name}}.{{namespace}}.{{domain}}"
  componentSuffix: -predictor-default
  tagHeaderRouting: false
  revisionHeader: true
services:
- name: {MODEL_NAME}
  namespace: {NAMESPACE}
  tagRouting: true
  revisions:
    {REV1}: [{servers[REV1].address}, "{servers[REV1].grpc_address}"]
    {REV2}: [{servers[REV2].address}, "{servers[REV2].grpc_address}"]
  traffic:
  - {{revisionName: {REV2}, percent: {percent_00002}, tag: latest, latestRevision: true}}
  - {{revisionName: {REV1}, percent: {percent_00001}, tag: prev}}
"""


@dataclass
class Sluice:
    proc: subprocess.Popen
    port: int
    admin_port: int
    config_path: pathlib.Path
    logs: pathlib.Path
    servers: Dict[str, KServeServer]
    reloads_seen: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stderr(self) -> str:
        return pathlib.Path(f"{self.logs}.err").read_text(errors="replace")

    def write_config(self, percent_00002: int, percent_00001: Optional[int] = None) -> None:
        """Rewrites the config file atomically (write + rename), as a config manager would."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(sluice_config(self.port, self.admin_port, self.servers, percent_00002, percent_00001))
        os.replace(tmp, self.config_path)

    def reload_lines(self) -> List[str]:
        """The reload events on stderr (JSON lines, `config.reloaded` or `config.reload_refused`), in order."""
        return [l for l in self.stderr().splitlines() if '"event":"config.reload' in l]

    def sighup_and_wait(self, timeout: float = 10.0) -> str:
        """Sends SIGHUP and waits for the next reload event line on stderr; returns it."""
        before = len(self.reload_lines())
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(self.reload_lines()) > before, timeout, "sluice logs the reload", proc=self.proc, logs=self.logs)
        return self.reload_lines()[before]


@pytest.fixture
def start_sluice(kserve_servers, free_ports, tmp_path) -> Callable[..., Sluice]:
    """Starts `$SLUICE_BIN serve` on a fresh config (00002 at the given percent); killed at teardown."""
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.skip("SLUICE_BIN is not set: point it at the release build "
                    "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"SLUICE_BIN={binary} is not an executable file")
    started: List[Sluice] = []

    def start(percent_00002: int = 10, workers: int = 2) -> Sluice:
        listen, admin = free_ports(2)
        config_path = tmp_path / f"sluice-{len(started)}.yaml"
        config_path.write_text(sluice_config(listen, admin, kserve_servers, percent_00002))
        logs = tmp_path / f"sluice-{len(started)}"
        proc = spawn([binary, "serve", "--config", str(config_path), "--workers", str(workers)], logs)
        s = Sluice(proc, listen, admin, config_path, logs, kserve_servers)
        started.append(s)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{admin}/healthz") and port_open(listen), SLUICE_START_TIMEOUT,
                   f"sluice listening on {listen} (admin {admin})", proc=proc, logs=logs)
        return s

    yield start
    for s in started:
        _kill(s.proc)


def pytest_sessionfinish(session, exitstatus):
    _kill_leftovers()


# ---------------------------------------------------------------------------------------------- sluice, control plane

STORAGE_URI_MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
STORAGE_URI_MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
MANIFESTS_DIR = HERE.parent.parent / "config" / "manifests"
CLI_TIMEOUT = 30.0


def control_config(listen: int, admin: int, state_dir: pathlib.Path, models: Dict[str, List[str]]) -> str:
    """config/sluice.yaml's control-plane shape: no `services:`; manifests decide the traffic. Readiness every 200 ms."""
    model_lines = "".join(f'  "{uri}": [{", ".join(eps)}]\n' for uri, eps in models.items())
    return f"""# Written by Tests/e2e/conftest.py (control plane)
listen: {LOOPBACK}:{listen}
admin: {LOOPBACK}:{admin}
stateDir: {state_dir}
models:
{model_lines}readiness: {{path: "/v1/models/{{name}}", period: 200ms, timeout: 1s, successThreshold: 1, failureThreshold: 3}}
timeouts: {{requestHeader: 10s, keepAliveIdle: 75s, upstreamConnect: 5s, upstreamResponse: 60s, bodyIdle: 60s}}
limits: {{maxHeaderBytes: 60KiB, maxHeaderCount: 100, maxRequestTargetBytes: 8KiB, maxRequestBodyBytes: 1GiB, bufferBytes: 32KiB, maxRequestsPerConnection: 10000}}
routing:
  domain: {DOMAIN}
  serviceHostTemplate: "{{name}}.{{namespace}}.{{domain}}"
  componentSuffix: -predictor-default
  tagHeaderRouting: false
  revisionHeader: true
"""


@dataclass
class ControlSluice:
    """A `sluice serve` driven by manifests through its admin API, and the CLI pointed at it."""
    binary: str
    port: int
    admin_port: int
    config_path: pathlib.Path
    state_dir: pathlib.Path
    logs_dir: pathlib.Path
    workers: int
    proc: Optional[subprocess.Popen] = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def server(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def logs(self) -> pathlib.Path:
        return self.logs_dir / f"sluice-control-{self.starts}"

    def start(self) -> None:
        """Starts (or starts again) `sluice serve` on the same config and state dir; waits for /healthz and the listener."""
        assert self.proc is None or self.proc.poll() is not None, "sluice is already running"
        self.starts += 1
        self.proc = spawn([self.binary, "serve", "--config", str(self.config_path), "--state-dir", str(self.state_dir),
                           "--workers", str(self.workers)], self.logs)
        wait_until(lambda: http_ok(f"{self.server}/healthz") and port_open(self.port), SLUICE_START_TIMEOUT,
                   f"sluice (control plane) listening on {self.port} (admin {self.admin_port})",
                   proc=self.proc, logs=self.logs)

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "sluice is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc in _live:
            _live.remove(self.proc)

    def kubeconfig(self, path: pathlib.Path, namespace: str = "default", token_file: Optional[pathlib.Path] = None) -> pathlib.Path:
        """Writes `sluice kubeconfig` for this admin API to PATH (the way a user points kubectl at Sluice)."""
        return write_kubeconfig(self.binary, path, f"{LOOPBACK}:{self.admin_port}", namespace, token_file)

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
        """`sluice ARGS --server http://127.0.0.1:ADMIN`; returns the completed process (never raises on exit status)."""
        return subprocess.run([self.binary, *args, "--server", self.server], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def start_control_sluice(kserve_servers, free_ports, tmp_path) -> Callable[..., ControlSluice]:
    """Starts `$SLUICE_BIN serve` with a state dir and `models:` mapping the seed's storageUris to our KServe servers
    (model-1 for .../model, model-2 for .../model-2; MODELS overrides). Killed at teardown."""
    binary = os.environ.get("SLUICE_BIN")
    if not binary:
        pytest.skip("SLUICE_BIN is not set: point it at the release build "
                    "($(swift build -c release --show-bin-path)/sluice), as `make test-e2e` does")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"SLUICE_BIN={binary} is not an executable file")
    started: List[ControlSluice] = []

    def start(models: Optional[Dict[str, List[str]]] = None, workers: int = 2) -> ControlSluice:
        if models is None:
            models = {STORAGE_URI_MODEL_1: [kserve_servers[REV1].address],
                      STORAGE_URI_MODEL_2: [kserve_servers[REV2].address]}
        listen, admin = free_ports(2)
        n = len(started)
        state_dir = tmp_path / f"state-{n}"
        logs_dir = tmp_path / f"control-{n}"
        logs_dir.mkdir()
        config_path = tmp_path / f"sluice-control-{n}.yaml"
        config_path.write_text(control_config(listen, admin, state_dir, models))
        s = ControlSluice(binary, listen, admin, config_path, state_dir, logs_dir, workers)
        started.append(s)
        s.start()
        return s

    yield start
    for s in started:
        if s.proc is not None:
            _kill(s.proc)


# ---------------------------------------------------------------------------------------------- kubectl

# The kubectl builds the kubectl tests run: the one on PATH (1.32 here) and the oldest one shipped beside it.
KUBECTL_1_27 = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"


def write_kubeconfig(binary: str, path: pathlib.Path, admin: str, namespace: str,
                     token_file: Optional[pathlib.Path] = None,
                     certificate_authority: Optional[pathlib.Path] = None) -> pathlib.Path:
    """`sluice kubeconfig --admin ADMIN --namespace NAMESPACE [--token-file F] [--certificate-authority CA] > PATH`."""
    args = [binary, "kubeconfig", "--admin", admin, "--namespace", namespace]
    if token_file is not None:
        args += ["--token-file", str(token_file)]
    if certificate_authority is not None:
        args += ["--certificate-authority", str(certificate_authority)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{args} exited {r.returncode}: {r.stderr}"
    path.write_text(r.stdout)
    return path


def kubectl_env(home: pathlib.Path, kubeconfig: pathlib.Path, kubectl: str = "kubectl") -> Dict[str, str]:
    """The environment of a user whose `kubectl` is KUBECTL and whose KUBECONFIG is the file `sluice kubeconfig`
    wrote: a HOME of its own, so that no discovery cache from an earlier run (~/.kube/cache) answers for Sluice."""
    bindir = home / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    link = bindir / "kubectl"
    if not link.exists():
        found = kubectl if os.path.isabs(kubectl) else shutil.which(kubectl)
        assert found, f"{kubectl} is not on PATH (make test installs the kubectl package)"
        link.symlink_to(found)
    return dict(os.environ, HOME=str(home), KUBECONFIG=str(kubeconfig), PATH=f"{bindir}:{os.environ.get('PATH', '')}")
