#!/usr/bin/env python3
"""The Kubernetes API off the data plane: kubectl against 1 000 InferenceServices, and what watchers cost requests.

1. Creates --services InferenceServices through the admin API (one POST each), then times `kubectl get isvc -A` (the
   Table kubectl asks for) and `-o json`, whole commands, median of --repeat runs; and the same list as one HTTP GET.
2. The data plane with and without watchers, same run: wrk on a static service for --seconds, gateway CPU per request
   (the whole process, and its worker thread alone: the data plane): quiet; while a writer changes one InferenceService
   every 100 ms; and the same with --watchers `kubectl get isvc -A -w` processes receiving those changes. The watchers'
   cost is the third against the second; the second against the first is what the writes themselves cost.
Usage: kubeapi.py SLUICE_BINARY [--services N] [--watchers W] [--seconds S] [--rounds R]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxybench import TICK, stop_all, tree_cpu_ticks, wait_port, wrk  # noqa: E402

ADMIN, LISTEN = 15190, 8190
KUBECTL = shutil.which("kubectl") or "kubectl"

def manifest(i):
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": f"model-{i:04d}", "namespace": f"team-{i % 10}",
                         "annotations": {"serving.sluice.dev/endpoints": "127.0.0.1:9001"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storageUri": f"gs://bench/models/{i}"}}}}

def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{ADMIN}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()

def timed(cmd, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-kubeapi-")
    config = os.path.join(work, "sluice.yaml")
    with open(config, "w") as f:
        f.write(f"""listen: 127.0.0.1:{LISTEN}
workers: 1
admin: 127.0.0.1:{ADMIN}
stateDir: {work}/state
readiness: {{path: "/", period: 30s}}
limits: {{maxRequestsPerConnection: 1000000}}
services:
- name: sklearn-iris
  namespace: kserve-test
  revisions:
    sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
  traffic:
  - {{revisionName: sklearn-iris-predictor-default-00001, percent: 100}}
""")
    here = os.path.dirname(os.path.abspath(__file__))
    procs, watchers = [], []
    def start(cmd, **kw):
        p = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        procs.append(p)
        return p
    try:
        start(f"nginx -c {here}/nginx-backend.conf")
        gateway = start([a.sluice, "serve", "--config", config])
        assert wait_port(9001) and wait_port(ADMIN) and wait_port(LISTEN), "a port never opened"
        t0 = time.perf_counter()
        for i in range(a.services):
            status, _ = call("POST", f"/apis/serving.kserve.io/v1beta1/namespaces/team-{i % 10}/inferenceservices", manifest(i))
            assert status == 201, status
        create_s = time.perf_counter() - t0
        server = ["--server", f"http://127.0.0.1:{ADMIN}", "--request-timeout=30s"]
        table_ms = timed([KUBECTL, *server, "get", "isvc", "-A"], a.repeat)
        json_ms = timed([KUBECTL, *server, "get", "isvc", "-A", "-o", "json"], a.repeat)
        version_ms = timed([KUBECTL, *server, "get", "--raw", "/version"], a.repeat)
        raw = []
        for _ in range(a.repeat):
            req = urllib.request.Request(f"http://127.0.0.1:{ADMIN}/apis/serving.kserve.io/v1beta1/inferenceservices",
                                         headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                rows = len(json.loads(r.read())["rows"])
            raw.append((time.perf_counter() - t) * 1000)
        assert rows == a.services, rows
        print(f"{a.services} InferenceServices created in {create_s:.1f} s ({a.services / create_s:.0f}/s)")
        print(f"kubectl get isvc -A: {table_ms:.0f} ms (whole command; kubectl get --raw /version alone: {version_ms:.0f} ms)")
        print(f"kubectl get isvc -A -o json: {json_ms:.0f} ms; the Table list as one GET: {statistics.median(raw):.1f} ms")

        stop = threading.Event()
        def writer():
            n = 0
            while not stop.is_set():
                n += 1
                # kubectl's last-applied annotation: a MODIFIED event for every watcher, no revision, no route change
                # (a label would be part of the revision template and make a revision every 100 ms).
                patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": str(n)}}}
                call("PATCH", "/apis/serving.kserve.io/v1beta1/namespaces/team-0/inferenceservices/model-0000",
                     patch, "application/merge-patch+json")
                stop.wait(0.1)
        def thread_ticks():
            out = {}
            for t in os.listdir(f"/proc/{gateway.pid}/task"):
                try:
                    with open(f"/proc/{gateway.pid}/task/{t}/stat") as f:
                        parts = f.read().rsplit(")", 1)[1].split()
                    out[t] = int(parts[11]) + int(parts[12])
                except OSError:
                    pass
            return out
        worker_tid = []
        def measure():
            """req/s, the whole process's CPU per request, and the worker's (workers: 1: the busiest thread of the
            first quiet run, found once, so that a busy admin thread is never taken for it later)."""
            wrk(LISTEN, 1, 32)
            c0, t0 = tree_cpu_ticks(gateway.pid), thread_ticks()
            res = wrk(LISTEN, a.seconds, 32)
            c1, t1 = tree_cpu_ticks(gateway.pid), thread_ticks()
            if not worker_tid:
                worker_tid.append(max(t1, key=lambda t: t1[t] - t0.get(t, 0)))
            worker = t1[worker_tid[0]] - t0[worker_tid[0]]
            per = lambda ticks: ticks / TICK * 1e6 / res["reqs"]
            return res["rps"], per(c1 - c0), per(worker)
        def with_writer(body):
            stop.clear()
            t = threading.Thread(target=writer)
            t.start()
            try:
                return body()
            finally:
                stop.set()
                t.join()
        quiet, writes, watched = [], [], []
        for _ in range(a.rounds):
            quiet.append(measure())
            writes.append(with_writer(measure))
            watchers = [start([KUBECTL, *server, "get", "isvc", "-A", "-w"]) for _ in range(a.watchers)]
            watched.append(with_writer(measure))
            stop_all(watchers)
            procs[:] = [p for p in procs if p not in watchers]
        med = lambda rs, i: statistics.median(r[i] for r in rs)
        print(f"{'data plane':26} {'req/s':>9} {'process us/req':>14} {'worker us/req':>13}")
        for label, rs in (("quiet", quiet), ("a write every 100 ms", writes), (f"same + {a.watchers} watchers", watched)):
            print(f"{label:26} {med(rs, 0):9.0f} {med(rs, 1):14.2f} {med(rs, 2):13.2f}")
        print(f"the watchers' cost, watched/writes: rps {med(watched, 0) / med(writes, 0):.3f}  worker cpu/req {med(watched, 2) / med(writes, 2):.3f}")
        print(f"the writes' cost, writes/quiet:     rps {med(writes, 0) / med(quiet, 0):.3f}  worker cpu/req {med(writes, 2) / med(quiet, 2):.3f}")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
