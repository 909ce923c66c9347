"""What the fault tests (test_faults.py) and the fault benchmark (benchmarks/faults.py) share: the load client that
counts every request's outcome, control of the scripted pods (fault_pod.py), and Sluice's configurations for them.

Standard library only, so that the benchmark runs with a plain python3 and the tests with the e2e venv.

The load: CLIENTS keep-alive connections, each sending one KServe V1 predict POST after another, on one asyncio
loop in a background thread. Every request ends as exactly one Outcome (status, or the transport error that ended
it), so failed/total is exact. A connection that fails is closed and the next request opens a new one.
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
LOOPBACK = "127.0.0.1"
MODEL_NAME = "sklearn-iris"
NAMESPACE = "kserve-test"
DOMAIN = "example.com"
SERVICE_HOST = f"{MODEL_NAME}.{NAMESPACE}.{DOMAIN}"
COMPONENT = f"{MODEL_NAME}-predictor-default"
REV1 = f"{COMPONENT}-00001"
REV2 = f"{COMPONENT}-00002"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
STORAGE_URI = "gs://kfserving-examples/models/sklearn/1.0/model"
STORAGE_URI_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
# The README's iris request (two flowers).
IRIS_BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}).encode()


# ---------------------------------------------------------------------------------------------- HTTP/1.1 framing

async def read_head(reader: asyncio.StreamReader) -> Tuple[List[bytes], Dict[bytes, bytes]]:
    """The start line split in (at most) three and the header fields with lower-cased names."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    fields: Dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return lines[0].split(b" ", 2), fields


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer fields, then the empty line
                pass
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


# ---------------------------------------------------------------------------------------------- the load

@dataclass
class Outcome:
    started: float  # time.monotonic() when the request was about to be written
    finished: float
    status: int  # 0: no response (the transport error is in `error`)
    pod: Optional[str] = None  # which pod answered, as the load's classify() says (default: the X-Pod header)
    revision: Optional[str] = None  # Sluice-Revision
    retry_after: Optional[str] = None
    error: Optional[str] = None  # timeout, closed, closed-reused, reset, refused, broken-pipe, or the exception's type
    detail: str = ""  # the start of a failed answer's body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def pod_header(status: int, headers: Dict[bytes, bytes], body: bytes) -> Optional[str]:
    value = headers.get(b"x-pod")
    return value.decode() if value is not None else None


class Load:
    """CLIENTS keep-alive connections to 127.0.0.1:PORT, each POSTing BODY to PATH with Host HOST back to back from
    construction until stop(), at most MAX_SECONDS and MAX_REQUESTS in all. A request gets TIMEOUT seconds from
    writing to the last byte of its answer. CLASSIFY(status, headers, body) names the pod that answered."""

    def __init__(self, port: int, clients: int = 16, host: str = SERVICE_HOST, path: str = PREDICT_PATH,
                 body: bytes = IRIS_BODY, timeout: float = 15.0, max_seconds: float = 90.0,
                 max_requests: int = 2_000_000,
                 classify: Callable[[int, Dict[bytes, bytes], bytes], Optional[str]] = pod_header):
        self.port = port
        self.timeout = timeout
        self.classify = classify
        self.outcomes: List[Outcome] = []
        self._request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self._deadline = time.monotonic() + max_seconds
        self._left = max_requests
        self._stop = threading.Event()
        self._crash: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(clients,), daemon=True, name="fault-load")
        self._thread.start()

    # -- the caller's side

    def count(self) -> int:
        return len(self.outcomes)  # list.append and len are atomic under the GIL

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, more: int, timeout: float = 20.0) -> None:
        """Returns once MORE further requests have been answered (raises TimeoutError after TIMEOUT seconds)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            self._check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the load got {self.count()} of {target} answers in {timeout}s")
            time.sleep(0.02)

    def run_until(self, when: float) -> None:
        """Keeps the load running until time.monotonic() reaches WHEN (a phase of a scenario, not a synchronisation)."""
        while time.monotonic() < when:
            self._check()
            time.sleep(min(0.05, max(0.0, when - time.monotonic())))

    def stop(self) -> List[Outcome]:
        """Stops sending; requests in flight finish (or time out). Returns every outcome in order of completion."""
        self._stop.set()
        self._thread.join(timeout=self.timeout + 10)
        if self._thread.is_alive():
            raise RuntimeError("the load's clients did not stop")
        if self._crash is not None:
            raise RuntimeError("the load client crashed") from self._crash
        return list(self.outcomes)

    def _check(self) -> None:
        if self._crash is not None:
            raise RuntimeError("the load client crashed") from self._crash
        if not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("the load ran out of time or requests before the scenario ended")

    # -- the loop's side

    def _run(self, clients: int) -> None:
        try:
            asyncio.run(self._main(clients))
        except BaseException as e:  # noqa: BLE001 - handed to the caller by _check/stop
            self._crash = e

    async def _main(self, clients: int) -> None:
        await asyncio.gather(*(self._client() for _ in range(clients)))

    def _going(self) -> bool:
        return not self._stop.is_set() and self._left > 0 and time.monotonic() < self._deadline

    async def _client(self) -> None:
        reader: Optional[asyncio.StreamReader] = None
        writer: Optional[asyncio.StreamWriter] = None
        while self._going():
            self._left -= 1
            started = time.monotonic()
            reused = writer is not None
            try:
                async with asyncio.timeout(self.timeout):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
                        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    writer.write(self._request)
                    outcome, keep = await self._response(reader, started)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as e:
                outcome, keep = Outcome(started, time.monotonic(), 0, error=self._error_kind(e, reused),
                                        detail=str(e)[:200]), False
                if writer is None:
                    await asyncio.sleep(0.01)  # the proxy itself refused: do not spin
            self.outcomes.append(outcome)
            if not keep and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def _response(self, reader: asyncio.StreamReader, started: float) -> Tuple[Outcome, bool]:
        (version, status_text, *_), fields = await read_head(reader)
        status = int(status_text)
        if b"content-length" in fields:
            body = await reader.readexactly(int(fields[b"content-length"]))
            keep = True
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            body = await read_chunked(reader)
            keep = True
        elif status in (204, 304):
            body, keep = b"", True
        else:
            body, keep = await reader.read(), False  # delimited by the close
        connection = fields.get(b"connection", b"").lower()
        if connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive"):
            keep = False
        retry_after = fields.get(b"retry-after")
        revision = fields.get(b"sluice-revision")
        ok = 200 <= status < 300
        return Outcome(started, time.monotonic(), status, self.classify(status, fields, body),
                       revision.decode() if revision is not None else None,
                       retry_after.decode() if retry_after is not None else None,
                       detail="" if ok else body[:300].decode(errors="replace")), keep

    @staticmethod
    def _error_kind(e: BaseException, reused: bool) -> str:
        """A short name for what ended a request without an answer (a column word in the benchmark's notes)."""
        if isinstance(e, TimeoutError):
            return "timeout"
        if isinstance(e, asyncio.IncompleteReadError):
            # Nothing at all on a connection that had served requests: the proxy closed it under the request.
            return "closed-reused" if reused and not e.partial else "closed"
        return {ConnectionResetError: "reset", ConnectionRefusedError: "refused",
                BrokenPipeError: "broken-pipe"}.get(type(e), type(e).__name__)


# ---------------------------------------------------------------------------------------------- reading outcomes

def failures(outcomes: Sequence[Outcome]) -> List[Outcome]:
    return [o for o in outcomes if not o.ok]


def by_status(outcomes: Sequence[Outcome]) -> Dict[str, int]:
    """{'200': n, '503': m, 'reset': k, ...}: what the clients saw, counted."""
    counts: Dict[str, int] = {}
    for o in outcomes:
        key = str(o.status) if o.status else (o.error or "error")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def describe(outcomes: Sequence[Outcome], examples: int = 3) -> str:
    failed = failures(outcomes)
    shown = "; ".join(f"{o.status or o.error} {o.detail[:120]!r}" for o in failed[:examples])
    return f"{len(failed)}/{len(outcomes)} failed {by_status(outcomes)}" + (f", e.g. {shown}" if shown else "")


# ---------------------------------------------------------------------------------------------- processes and pods

def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free now; the OS does not reuse it at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def pod_command(port: int, pod_name: str, delay_ms: float = 0, model_name: str = MODEL_NAME) -> List[str]:
    return [sys.executable, os.path.join(HERE, "fault_pod.py"), "--port", str(port), "--model-name", model_name,
            "--pod-name", pod_name, "--delay-ms", str(delay_ms)]


def signal_process(proc: subprocess.Popen, sig: int) -> None:
    """kill -9 (SIGKILL), SIGSTOP or SIGCONT to one pod we started (a single process, its own session)."""
    os.kill(proc.pid, sig)
    if sig == signal.SIGKILL:
        proc.wait(timeout=10)


class PodControl:
    """The control paths of one fault_pod.py, spoken to directly (not through a proxy)."""

    def __init__(self, port: int):
        self.port = port

    def _call(self, method: str, path: str, body: Optional[bytes] = None) -> dict:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"pod on {self.port}: {method} {path} answered {response.status} {data!r}")
            return json.loads(data)
        finally:
            conn.close()

    def set_mode(self, mode: str) -> dict:
        return self._call("PUT", "/_fault/mode", mode.encode())

    def stats(self) -> dict:
        return self._call("GET", "/_fault/stats")

    def ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=1)
            try:
                conn.request("GET", "/v2/health/ready")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False


# ---------------------------------------------------------------------------------------------- Sluice configurations

def resilience_yaml(per_try_timeout: str = "0s") -> str:
    """The retry and outlier-detection settings (the defaults written out, with the scenario's per-try timeout)."""
    return f"""retries: {{attempts: 2, perTryTimeout: {per_try_timeout}, retryOn: [connect-failure, refused-stream, reset-before-request, reset-idempotent, retriable-status-codes],
          retriableStatusCodes: [503], maxReplayBytes: 64KiB, budget: {{percent: 20, minConcurrency: 3}}}}
attemptCountHeader: false
outlierDetection: {{consecutiveGatewayFailures: 5, consecutive5xx: 5, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50}}
"""


def _common_yaml(listen: int, admin: int, workers: int, upstream_response: str, extra: str) -> str:
    return f"""listen: {LOOPBACK}:{listen}
admin: {LOOPBACK}:{admin}
workers: {workers}
timeouts: {{requestHeader: 10s, keepAliveIdle: 75s, upstreamConnect: 5s, upstreamResponse: {upstream_response}, bodyIdle: 60s}}
limits: {{maxHeaderBytes: 60KiB, maxHeaderCount: 100, maxRequestTargetBytes: 8KiB, maxRequestBodyBytes: 1GiB, bufferBytes: 32KiB, maxRequestsPerConnection: 1000000}}
routing:
  domain: {DOMAIN}
  serviceHostTemplate: "{{name}}.{{namespace}}.{{domain}}"
  componentSuffix: -predictor-default
  tagHeaderRouting: false
  revisionHeader: true
{extra}"""


def static_config(listen: int, admin: int, revisions: Dict[str, List[str]], percents: Dict[str, int],
                  workers: int = 2, upstream_response: str = "60s", extra: str = "") -> str:
    """Sluice with a static traffic table: sklearn-iris with REVISIONS (name → endpoints) at PERCENTS; the last
    revision named is tagged latest, as KServe writes a canary."""
    names = list(revisions)
    lines = "".join(f"    {rev}: [{', '.join(eps)}]\n" for rev, eps in revisions.items())
    traffic = "".join(
        f"  - {{revisionName: {rev}, percent: {percents[rev]}"
        + (", tag: latest, latestRevision: true}" if rev == names[-1] else "}") + "\n" for rev in names)
    return f"""# Written by Tests/e2e/fault_load.py (static services)
{_common_yaml(listen, admin, workers, upstream_response, extra)}services:
- name: {MODEL_NAME}
  namespace: {NAMESPACE}
  tagRouting: false
  revisions:
{lines}  traffic:
{traffic}"""


def control_config(listen: int, admin: int, state_dir: str, workers: int = 2, readiness_period: str = "1s",
                   upstream_response: str = "60s", extra: str = "") -> str:
    """Sluice driven by manifests, whose pods are named by the serving.sluice.dev/endpoints annotation, with readiness
    probes (failureThreshold 3 of READINESS_PERIOD; config/sluice.yaml's is 1s)."""
    return f"""# Written by Tests/e2e/fault_load.py (control plane)
{_common_yaml(listen, admin, workers, upstream_response, extra)}stateDir: {state_dir}
readiness: {{path: "/v1/models/{{name}}", period: {readiness_period}, timeout: 1s, successThreshold: 1, failureThreshold: 3}}
"""


def manifest(endpoints: Sequence[str], canary_percent: Optional[int] = None, predictor_extra: str = "",
             storage_uri: str = STORAGE_URI) -> str:
    """An InferenceService for sklearn-iris whose new revision's pods are ENDPOINTS (a changed annotation or
    predictor makes a new revision); PREDICTOR_EXTRA adds fields under spec.predictor ("containerConcurrency: 1")."""
    canary = f"    canaryTrafficPercent: {canary_percent}\n" if canary_percent is not None else ""
    extra = "".join(f"    {line}\n" for line in predictor_extra.splitlines() if line.strip())
    return f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {MODEL_NAME}
  annotations:
    serving.sluice.dev/endpoints: "{','.join(endpoints)}"
spec:
  predictor:
{canary}{extra}    model:
      modelFormat:
        name: sklearn
      storageUri: "{storage_uri}"
"""
