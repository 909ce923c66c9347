"""A model server stand-in whose faults are known in advance, for the metrics and fault tests and benchmarks/faults.py.

It answers KServe's V1 predict (`POST /v1/models/NAME:predict`) and readiness paths (`GET /v1/models/NAME`,
`GET /v2/health/ready`), fails with 500 when the request carries `X-Test-Fail: 1`, and delays every answer by
--delay-ms. HTTP/1.1 keep-alive, asyncio, 127.0.0.1 only: fast to start and kill, and fast enough (thousands of
requests per second) that the gateway in front of it, not the pod, decides what the clients see.

Real KServe servers cannot be told to fail or to take a fixed time; the gateway's numbers need both to be checked.
For the fault tests it also:
- names itself in an `X-Pod` response header (--pod-name), so a client knows which pod answered;
- answers every predict with 503 while in mode 503 (`PUT /_fault/mode` with body `503`, back with `ok`), its
  readiness paths still answering 200 — the hard case, a broken model behind a healthy health check;
- counts what it served (`GET /_fault/stats`: predicts, answered_503, in_flight, max_in_flight — the most predicts it
  was ever working on at once, to check a concurrency limit in front of it);
- counts the mirrored (shadow) predicts apart: `shadow_predicts` carry `X-Sluice-Shadow: 1`, `shadow_hosts` a Host
  whose name ends in `-shadow` (Envoy's convention, which Sluice follows too), for the mirroring tests.
A hung pod is this process stopped (SIGSTOP): the kernel still accepts its connections, nothing answers.
"""

import argparse
import asyncio
import json
import os
from typing import Dict, Tuple

from fault_load import read_chunked, read_head  # HTTP/1.1 framing, shared with the load client (same directory)

CONTROL_PREFIX = b"/_fault/"


class Pod:
    def __init__(self, model_name: str, delay_ms: float, pod_name: str):
        self.model_name = model_name
        self.delay_s = delay_ms / 1000
        self.ready_paths = {f"/v1/models/{model_name}".encode(), b"/v2/health/ready"}
        self.pod_header = f"X-Pod: {pod_name}\r\n".encode() if pod_name else b""
        self.mode = "ok"
        self.predicts = 0
        self.answered_503 = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.shadow_predicts = 0
        self.shadow_hosts = 0

    def stats(self) -> dict:
        return {"predicts": self.predicts, "answered_503": self.answered_503, "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight, "mode": self.mode, "pid": os.getpid(),
                "shadow_predicts": self.shadow_predicts, "shadow_hosts": self.shadow_hosts}

    def response(self, status: int, body: dict, keep_alive: bool) -> bytes:
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request", 500: "Internal Server Error",
                  503: "Service Unavailable"}.get(status, "Unknown")
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                .encode() + self.pod_header + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n" + data)

    async def answer(self, method: bytes, target: bytes, headers: Dict[bytes, bytes], body: bytes) -> Tuple[int, dict]:
        path = target.split(b"?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            return self.control(method, path[len(CONTROL_PREFIX):], body)
        if method == b"GET" and path in self.ready_paths:
            return 200, {"name": self.model_name, "ready": True}
        if method != b"POST":
            await self.delay()
            return 404, {"error": f"no route {path.decode(errors='replace')}"}
        # A predict: counted as in flight from its arrival to its answer, whatever the answer.
        self.predicts += 1
        if headers.get(b"x-sluice-shadow") == b"1":
            self.shadow_predicts += 1
        if headers.get(b"host", b"").rsplit(b":", 1)[0].endswith(b"-shadow"):
            self.shadow_hosts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.delay()
            if self.mode == "503":
                self.answered_503 += 1
                return 503, {"error": "pod in fault mode 503"}
            if headers.get(b"x-test-fail") == b"1":
                return 500, {"error": "failure asked for by X-Test-Fail"}
            try:
                instances = json.loads(body or b"{}").get("instances", [])
            except ValueError:
                return 400, {"error": "body is not JSON"}
            return 200, {"predictions": [1 for _ in instances]}
        finally:
            self.in_flight -= 1

    async def delay(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    def control(self, method: bytes, what: bytes, body: bytes) -> Tuple[int, dict]:
        if method == b"PUT" and what == b"mode" and body.strip() in (b"ok", b"503"):
            self.mode = body.strip().decode()
            return 200, self.stats()
        if method == b"GET" and what == b"stats":
            return 200, self.stats()
        return 400, {"error": "control: PUT /_fault/mode (ok|503) or GET /_fault/stats"}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (method, target, version), headers = await read_head(reader)
                if b"content-length" in headers:
                    body = await reader.readexactly(int(headers[b"content-length"]))
                elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                    body = await read_chunked(reader)
                else:
                    body = b""
                keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
                status, payload = await self.answer(method, target, headers, body)
                writer.write(self.response(status, payload, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # the peer left, or sent what this stand-in does not parse: drop the connection
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--pod-name", default="", help="sent back in an X-Pod header on every answer")
    args = parser.parse_args()
    pod = Pod(args.model_name, args.delay_ms, args.pod_name)

    async def run() -> None:
        server = await asyncio.start_server(pod.serve, "127.0.0.1", args.port, reuse_address=True, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
