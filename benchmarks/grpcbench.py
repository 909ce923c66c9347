#!/usr/bin/env python3
"""gRPC unary calls side by side: Sluice, nginx (grpc_pass) and HAProxy (h2 both sides) in front of the same h2c gRPC
pod, h2load sending real gRPC requests (a length-prefixed message, content-type application/grpc, te: trailers) over
h2c by prior knowledge, the proxies taking turns in one run.

The pod is Python's grpcio (a generic unary handler that answers each message with a 64-byte one), run with
PYTHON (default: python3, which must have grpcio; the test venv's does). It is slower than any of the proxies, so
requests per second mostly measure the pod; the proxies' CPU µs per call is the figure to compare.
Usage: grpcbench.py --sluice [NAME=]BIN ... [--rounds N] [--seconds S] [--python PY]
"""
import argparse, re, subprocess, sys, tempfile, textwrap
from proxybench import wait_port, stop_all, launch
from tlsbench import measure, report

HOST = "sklearn-iris.kserve-test.example.com"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
POD_PORT = 9101

POD = textwrap.dedent(f"""
    import grpc, concurrent.futures, sys
    reply = b"r" * 64
    def infer(request, context): return reply
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService",
        {{"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}})
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_concurrent_streams", 1000)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:{POD_PORT}")
    server.start()
    server.wait_for_termination()
""")

def configs(d, sluices):
    nginx = textwrap.dedent(f"""
        worker_processes 1;
        daemon off;
        pid {d}/nginx.pid;
        error_log {d}/nginx.err warn;
        events {{ worker_connections 4096; }}
        http {{
          access_log off;
          upstream pod {{ server 127.0.0.1:{POD_PORT}; keepalive 64; }}
          server {{
            listen 127.0.0.1:8473 http2;
            http2_max_requests 1000000;
            location / {{ grpc_pass grpc://pod; }}
          }}
        }}
    """)
    open(f"{d}/nginx.conf", "w").write(nginx)
    haproxy = textwrap.dedent(f"""
        global
          nbthread 1
          maxconn 4000
        defaults
          mode http
          timeout connect 5s
          timeout client 30s
          timeout server 30s
        frontend fe
          bind 127.0.0.1:8474 proto h2
          default_backend pod
        backend pod
          server p 127.0.0.1:{POD_PORT} proto h2
    """)
    open(f"{d}/haproxy.cfg", "w").write(haproxy)
    for i, (name, _) in enumerate(sluices):
        open(f"{d}/{name}.yaml", "w").write(textwrap.dedent(f"""
            listen: 127.0.0.1:{8475 + i}
            workers: 1
            admin: 127.0.0.1:{15475 + i}
            stateDir: {d}/{name}-state
            limits: {{maxRequestsPerConnection: 1000000, maxStreamsPerConnection: 1000000}}
            services:
            - name: sklearn-iris
              namespace: kserve-test
              revisions:
                sklearn-iris-predictor-default-00001: ["h2c://127.0.0.1:{POD_PORT}"]
              traffic:
              - {{revisionName: sklearn-iris-predictor-default-00001, percent: 100}}
        """))

CHECK = textwrap.dedent(f"""
    import grpc, sys
    channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1], options=[("grpc.default_authority", "{HOST}")])
    call = channel.unary_unary("{METHOD}", request_serializer=None, response_deserializer=None)
    reply = call(b"x" * 128, timeout=10)
    sys.exit(0 if reply == b"r" * 64 else 1)
""")

def check(python, port, d):
    """One real gRPC call through the proxy with grpcio's client: OK status and the pod's reply (h2load sees :status
    only, and a gRPC error is a 200 with grpc-status in the trailers)."""
    open(f"{d}/check.py", "w").write(CHECK)
    return subprocess.run([python, f"{d}/check.py", str(port)], capture_output=True, text=True)

def h2load(port, seconds, body):
    out = subprocess.run(["h2load", "-c", "8", "-m", "10", "-D", str(seconds), "--warm-up-time=1", "-d", body,
                          "-H", f":authority: {HOST}", "-H", "content-type: application/grpc", "-H", "te: trailers",
                          f"http://127.0.0.1:{port}{METHOD}"], capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    if not m or not done or int(done.group(2)) == 0 or not codes or int(codes.group(1)) == 0:
        return None
    return {"rate": float(m.group(1)), "count": int(done.group(2))}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, action="append", help="[NAME=]BIN, repeatable")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--python", default="python3")
    a = ap.parse_args()
    sluices = [tuple(x.split("=", 1)) if "=" in x else (("sluice" if i == 0 else f"sluice{i}"), x) for i, x in enumerate(a.sluice)]
    d = tempfile.mkdtemp(prefix="sluice-grpcbench-")
    configs(d, sluices)
    body = f"{d}/request.bin"
    message = b"x" * 128  # a small ModelInfer-sized message; the pod does not decode it
    open(body, "wb").write(b"\x00" + len(message).to_bytes(4, "big") + message)
    open(f"{d}/pod.py", "w").write(POD)
    procs = []
    try:
        launch(procs, f"{a.python} {d}/pod.py")
        if not wait_port(POD_PORT, 20): sys.exit("the gRPC pod never listened")
        proxies = [("nginx", 8473, launch(procs, f"nginx -c {d}/nginx.conf")),
                   ("haproxy", 8474, launch(procs, f"haproxy -f {d}/haproxy.cfg"))]
        for i, (name, binary) in enumerate(sluices):
            proxies.append((name, 8475 + i, launch(procs, f"{binary} serve --config {d}/{name}.yaml")))
        for name, port, _ in proxies:
            if not wait_port(port): sys.exit(f"{name}: port {port} never opened")
            checked = check(a.python, port, d)
            if checked.returncode != 0: sys.exit(f"{name}: a gRPC call through port {port} failed: {checked.stderr[-500:]}")
        results = {name: [] for name, _, _ in proxies}
        for _ in range(a.rounds):
            for name, port, proc in proxies:
                res = measure(proc.pid, lambda: h2load(port, a.seconds, body))
                if res: results[name].append(res)
        report("gRPC unary over h2c (h2load -c8 -m10, 133-byte request message, 64-byte reply, trailers)", results)
    finally:
        stop_all(procs)

if __name__ == "__main__":
    main()
