#!/usr/bin/env python3
"""Replicas on etcd: what the shared store costs the data plane, in one run.

1. CPU per request of the same static service through Sluice in file mode and in etcd mode (a real etcd member on
   loopback), with nginx and HAProxy beside them: wrk, one worker each, --rounds rounds of --seconds, medians
   (proxybench.py does the measuring; this starts etcd and the etcd-mode gateway's config).
2. A replica serving traffic while 1 000 InferenceServices live in etcd and another replica changes one of them
   --rate times a second (a new revision each time: a new route table of 1 000 services on every replica): wrk on the
   first replica's static service, quiet and then during the changes; p99 latency and the worker's CPU per request.
Usage: scaleout.py SLUICE_BINARY [--rounds R] [--seconds S] [--services N] [--rate R]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxybench import TICK, stop_all, tree_cpu_ticks, wait_port, wrk  # noqa: E402
from kubeapi import manifest  # noqa: E402  (the same 1 000 InferenceServices as the kubeapi benchmark)

ETCD_CLIENT, ETCD_PEER = 2479, 2480
STATIC = """routing: {revisionHeader: true}
limits: {maxRequestsPerConnection: 1000000, maxStreamsPerConnection: 1000000}
services:
- name: sklearn-iris
  namespace: kserve-test
  revisions:
    sklearn-iris-predictor-default-00001: [127.0.0.1:9001]
  traffic:
  - {revisionName: sklearn-iris-predictor-default-00001, percent: 100}
"""


def config(work, name, listen, admin, etcd=True):
    path = os.path.join(work, f"{name}.yaml")
    store = (f"stateStore: {{kind: etcd, endpoints: [http://127.0.0.1:{ETCD_CLIENT}], prefix: /bench/, replicaName: {name}}}\n"
             if etcd else "")
    with open(path, "w") as f:
        f.write(f"listen: 127.0.0.1:{listen}\nworkers: 1\nadmin: 127.0.0.1:{admin}\nstateDir: {work}/state-{name}\n"
                f"readiness: {{path: \"/\", period: 30s}}\naccessLog: {{path: off}}\n{store}{STATIC}")
    return path


def call(admin, method, path, body, ctype="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", method=method, data=json.dumps(body).encode(),
                                 headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--replicas-only", action="store_true", help="part 2 alone")
    a = ap.parse_args()
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    work = tempfile.mkdtemp(prefix="sluice-scaleout-")
    procs = []

    def start(cmd, shell=False):
        p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
        return p

    try:
        start([etcd, "--name", "bench", "--data-dir", f"{work}/etcd",
               "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT}", "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT}",
               "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER}",
               "--initial-cluster", f"bench=http://127.0.0.1:{ETCD_PEER}"])
        assert wait_port(ETCD_CLIENT), "etcd never listened"

        # 1. file mode and etcd mode, side by side with nginx and HAProxy.
        if not a.replicas_only:
            file_cfg = config(work, "file", 8090, 15090, etcd=False)
            etcd_cfg = config(work, "etcd", 8092, 15092)
            print(f"== 1. CPU per request, file mode and etcd mode (same run, {a.rounds} x {a.seconds} s)", flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, "proxybench.py"), "--rounds", str(a.rounds), "--seconds", str(a.seconds),
                            "--proxy", f"sluice-file=8090={a.sluice} serve --config {file_cfg}",
                            "--proxy", f"sluice-etcd=8092={a.sluice} serve --config {etcd_cfg}",
                            "--ratio", "sluice-etcd/sluice-file", "--ratio", "sluice-etcd/haproxy", "--ratio", "sluice-file/haproxy"],
                           check=True)

        # 2. a replica under load while another changes the shared state.
        start(f"nginx -c {HERE}/nginx-backend.conf", shell=True)
        serving = start([a.sluice, "serve", "--config", config(work, "serving", 8093, 15093)])
        start([a.sluice, "serve", "--config", config(work, "writer", 8094, 15094)])  # the replica that changes things
        assert all(wait_port(p) for p in (9001, 8093, 15093, 8094, 15094)), "a port never opened"
        t0 = time.perf_counter()
        for i in range(a.services):
            assert call(15094, "POST", f"/apis/serving.kserve.io/v1beta1/namespaces/team-{i % 10}/inferenceservices", manifest(i)) == 201
        print(f"\n== 2. {a.services} InferenceServices created on the writer replica in {time.perf_counter() - t0:.1f} s", flush=True)
        stop = threading.Event()
        changes = [0]

        def change():
            n = 0
            while not stop.is_set():
                n += 1
                i = n % a.services
                # A label is part of the revision template: a new revision, a new route table everywhere.
                call(15094, "PATCH", f"/apis/serving.kserve.io/v1beta1/namespaces/team-{i % 10}/inferenceservices/model-{i:04d}",
                     {"metadata": {"labels": {"bench/change": str(n)}}}, "application/merge-patch+json")
                changes[0] += 1
                stop.wait(1 / a.rate)

        def measure():
            wrk(8093, 1, 32)
            c0 = tree_cpu_ticks(serving.pid)
            res = wrk(8093, a.seconds, 32)
            c1 = tree_cpu_ticks(serving.pid)
            return res["rps"], res["p99"], (c1 - c0) / TICK * 1e6 / res["reqs"]

        quiet, busy = [], []
        for _ in range(a.rounds):
            quiet.append(measure())
            stop.clear()
            before = changes[0]
            t = threading.Thread(target=change)
            t.start()
            started = time.perf_counter()
            try:
                busy.append(measure())
            finally:
                stop.set()
                t.join()
            rate = (changes[0] - before) / (time.perf_counter() - started)
        med = lambda rs, i: statistics.median(r[i] for r in rs)
        print(f"{'serving replica':34} {'req/s':>9} {'p99 us':>8} {'process us/req':>14}")
        for label, rs in (("quiet", quiet), (f"{rate:.1f} changes/s on the other replica", busy)):
            print(f"{label:34} {med(rs, 0):9.0f} {med(rs, 1):8.0f} {med(rs, 2):14.2f}")
        print(f"changes/quiet: p99 {med(busy, 1) / med(quiet, 1):.2f}  cpu/req {med(busy, 2) / med(quiet, 2):.3f}  rps {med(busy, 0) / med(quiet, 0):.3f}")
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
