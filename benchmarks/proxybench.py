#!/usr/bin/env python3
"""Side-by-side proxy benchmark: the same backend, the same wrk load, proxies taking turns.

Reports per proxy: requests/s, p50/p99 latency (wrk --latency), and proxy CPU microseconds per request
(from /proc/<pid>/stat of the proxy's process tree), medians over rounds, plus ratios against nginx.
Usage: proxybench.py [--rounds N] [--seconds S] [--conns C] [--proxy name=port=cmd ...]
                     [--nginx-conf F] [--haproxy-conf F] [--haproxy-log F] [--ratio a/b ...]
(the access-log variant, `make access-log`, gives nginx and HAProxy configurations that log, and asks for ratios).
"""
import argparse, os, re, signal, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))  # Sluice copy of ../shared/bench/proxybench.py
HOST = "sklearn-iris.kserve-test.example.com"
PATH = "/v1/models/sklearn-iris:predict"
TICK = os.sysconf("SC_CLK_TCK")

def tree_cpu_ticks(pid, which=(11, 12)):
    """utime (11) + stime (12) of pid and all its descendants (threads included via /proc/pid/stat)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen: continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += sum(int(parts[i]) for i in which)
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        todo += [int(c) for c in f.read().split()]
                except OSError: pass
        except OSError: pass
    return total

def stop_all(procs):
    """SIGTERM to each process group, then SIGKILL to any still there after 5 s (shared by every benchmark here)."""
    for p in procs:
        try: os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError: pass
    for p in procs:
        try: p.wait(5)
        except Exception: os.killpg(p.pid, signal.SIGKILL)

def launch(procs, cmd):
    """Starts a shell command in its own process group, its output dropped, and records it in procs for stop_all."""
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs.append(p)
    return p

def wait_port(port, timeout=10):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return True
        except OSError: time.sleep(0.05)
    return False

def parse_lat(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        raise SystemExit(f"unparsed latency {s!r}")
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1e6, "m": 6e7}[u]

def wrk(port, seconds, conns, body=None):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    if body:
        script = os.path.join(HERE, "post.lua")
        cmd += ["-s", script]
    cmd.append(f"http://127.0.0.1:{port}{PATH}")
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    if not re.search(r"50%\s+\S+", out):
        raise SystemExit(f"wrk on port {port} gave no latency figures:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_lat(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_lat(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return dict(rps=rps, p50=p50, p99=p99, reqs=reqs, non2xx=int(non2xx.group(1)) if non2xx else 0,
                errors=errs.group(1) if errs else "")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--post", action="store_true", help="POST a small JSON body (post.lua)")
    ap.add_argument("--proxy", action="append", default=[], help="name=port=command")
    ap.add_argument("--nginx-conf", default=f"{HERE}/nginx-proxy.conf")
    ap.add_argument("--haproxy-conf", default=f"{HERE}/haproxy.cfg")
    ap.add_argument("--haproxy-log", help="file HAProxy's stdout goes to (its `log stdout` lines)")
    ap.add_argument("--ratio", action="append", default=[], help="a/b: print CPU per request of a over b")
    a = ap.parse_args()
    procs = []
    def start(cmd): return launch(procs, cmd)
    try:
        start(f"nginx -c {HERE}/nginx-backend.conf")
        assert wait_port(9001)
        proxies = [("direct", 9001, None),
                   ("nginx", 8080, f"nginx -c {a.nginx_conf}"),
                   ("haproxy", 8081, f"haproxy -f {a.haproxy_conf}" + (f" > {a.haproxy_log}" if a.haproxy_log else ""))]
        for spec in a.proxy:
            name, port, cmd = spec.split("=", 2)
            proxies.append((name, int(port), cmd))
        running = {}
        for name, port, cmd in proxies:
            running[name] = start(cmd) if cmd else None
            if not wait_port(port): print(f"{name}: port {port} never opened", file=sys.stderr); sys.exit(2)
        results = {n: [] for n, _, _ in proxies}
        for r in range(a.rounds):
            for name, port, cmd in proxies:
                wrk(port, 1, a.conns, a.post)  # warm-up
                pid = running[name].pid if running[name] else None
                t0 = tree_cpu_ticks(pid) if pid else 0
                s0 = tree_cpu_ticks(pid, (12,)) if pid else 0
                res = wrk(port, a.seconds, a.conns, a.post)
                t1 = tree_cpu_ticks(pid) if pid else 0
                s1 = tree_cpu_ticks(pid, (12,)) if pid else 0
                res["cpu_us_per_req"] = (t1 - t0) / TICK * 1e6 / res["reqs"] if pid else 0.0
                res["sys_us_per_req"] = (s1 - s0) / TICK * 1e6 / res["reqs"] if pid else 0.0
                results[name].append(res)
        print(f"{'proxy':10} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'cpu us/req':>10} {'sys us/req':>10} {'non2xx':>7}  errors")
        med = {}
        for name, rs in results.items():
            m = {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99", "cpu_us_per_req", "sys_us_per_req")}
            med[name] = m
            print(f"{name:10} {m['rps']:9.0f} {m['p50']:8.0f} {m['p99']:8.0f} {m['cpu_us_per_req']:10.2f} {m['sys_us_per_req']:10.2f} {sum(x['non2xx'] for x in rs):7d}  {';'.join(x['errors'] for x in rs if x['errors'])}")
        for name in med:
            if name in ("direct", "nginx"): continue
            print(f"ratio {name}/nginx: rps {med[name]['rps']/med['nginx']['rps']:.2f}  cpu/req {med[name]['cpu_us_per_req']/med['nginx']['cpu_us_per_req']:.2f}")
            if name not in ("haproxy",) and "haproxy" in med:
                print(f"ratio {name}/haproxy: rps {med[name]['rps']/med['haproxy']['rps']:.2f}  cpu/req {med[name]['cpu_us_per_req']/med['haproxy']['cpu_us_per_req']:.2f}")
        for pair in a.ratio:
            x, y = pair.split("/")
            print(f"ratio {x}/{y}: cpu/req {med[x]['cpu_us_per_req']/med[y]['cpu_us_per_req']:.3f}  rps {med[x]['rps']/med[y]['rps']:.2f}")
    finally:
        stop_all(procs)

if __name__ == "__main__":
    main()
