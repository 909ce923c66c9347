#!/usr/bin/env python3
"""TLS side-by-side: HTTPS keep-alive (wrk), HTTP/2 over TLS (h2load) and new TLS handshakes per second
(openssl s_time), for Sluice, nginx and HAProxy doing the same job as proxybench.py (tag hosts + 90/10 split,
upstream keep-alive, one worker each) in front of the same nginx backend, taking turns in one run.

Reports medians over rounds: requests/s (or handshakes/s) and the proxy's CPU µs per request (or handshake),
then ratios against HAProxy. A protocol a proxy does not serve is reported as such, not skipped silently.
Usage: tlsbench.py --sluice BIN [--rounds N] [--seconds S]
"""
import argparse, os, re, signal, statistics, subprocess, sys, tempfile
from proxybench import HERE, HOST, PATH, TICK, tree_cpu_ticks, wait_port, parse_lat, stop_all

def make_cert(d):
    key, crt, pem = f"{d}/tls.key", f"{d}/tls.crt", f"{d}/tls.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST},DNS:*.kserve-test.example.com"], check=True, capture_output=True)
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return key, crt, pem

def configs(d, key, crt, pem):
    nginx = open(f"{HERE}/nginx-proxy.conf").read()
    nginx = nginx.replace("pid /tmp/bench-nginx-proxy.pid;", "pid /tmp/bench-nginx-tls.pid;")
    nginx = nginx.replace("listen 127.0.0.1:8080 reuseport backlog=4096;",
                          f"listen 127.0.0.1:8443 ssl http2 reuseport backlog=4096;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n"
                          "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets on;")
    open(f"{d}/nginx.conf", "w").write(nginx)
    haproxy = open(f"{HERE}/haproxy.cfg").read()
    haproxy = haproxy.replace("bind 127.0.0.1:8081", f"bind 127.0.0.1:8444 ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.2")
    open(f"{d}/haproxy.cfg", "w").write(haproxy)
    sluice = open(f"{HERE}/sluice-bench.yaml").read()
    sluice = sluice.replace("listen: 127.0.0.1:8090", "listen: 127.0.0.1:8445").replace("admin: 127.0.0.1:15090", "admin: 127.0.0.1:15445")
    sluice += f"tls: {{certificates: [{{cert: {crt}, key: {key}}}]}}\nstateDir: {d}/sluice-state\n"
    open(f"{d}/sluice.yaml", "w").write(sluice)

def measure(pid, run):
    t0 = tree_cpu_ticks(pid)
    res = run()
    t1 = tree_cpu_ticks(pid)
    if res and res.get("count"):
        res["cpu_us"] = (t1 - t0) / TICK * 1e6 / res["count"]
    return res

def https_wrk(port, seconds, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}",
                          "-s", f"{HERE}/post.lua", f"https://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m: return None
    return {"rate": float(m.group(1)), "count": int(re.search(r"(\d+) requests in", out).group(1)),
            "p99": parse_lat(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))}

def h2load(port, seconds, conns):
    out = subprocess.run(["h2load", "-c", str(conns), "-m", "10", "-D", str(seconds), "--warm-up-time=1",
                          "-H", f":authority: {HOST}", f"https://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not m or not done or not proto or proto.group(1) != "h2" or int(done.group(2)) == 0:
        return None
    return {"rate": float(m.group(1)), "count": int(done.group(2))}

def handshakes(port, seconds):
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
                         capture_output=True, text=True).stdout
    m = re.search(r"(\d+) connections in [\d.]+s; ([\d.]+) connections/user sec", out)
    c = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if not c: return None
    return {"rate": int(c.group(1)) / max(1, int(c.group(2))), "count": int(c.group(1))}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="sluice-tlsbench-")
    key, crt, pem = make_cert(d)
    configs(d, key, crt, pem)
    procs = []
    def start(cmd):
        p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(p); return p
    try:
        start(f"nginx -c {HERE}/nginx-backend.conf")
        assert wait_port(9001)
        proxies = [("nginx", 8443, start(f"nginx -c {d}/nginx.conf")),
                   ("haproxy", 8444, start(f"haproxy -f {d}/haproxy.cfg")),
                   ("sluice", 8445, start(f"{a.sluice} serve --config {d}/sluice.yaml"))]
        for name, port, _ in proxies:
            if not wait_port(port): sys.exit(f"{name}: port {port} never opened")
        tests = [("https keep-alive (wrk -c32)", lambda port: https_wrk(port, a.seconds, 32)),
                 ("h2 over TLS (h2load -c8 -m10)", lambda port: h2load(port, a.seconds, 8)),
                 ("new TLS handshakes (s_time)", lambda port: handshakes(port, a.seconds))]
        for title, run in tests:
            results = {name: [] for name, _, _ in proxies}
            for _ in range(a.rounds):
                for name, port, proc in proxies:
                    res = measure(proc.pid, lambda: run(port))
                    if res: results[name].append(res)
            print(f"\n{title}")
            print(f"{'proxy':10} {'rate/s':>10} {'cpu us/op':>10}")
            med = {}
            for name, rs in results.items():
                if not rs:
                    print(f"{name:10} {'not served':>10}")
                    continue
                med[name] = {k: statistics.median(r[k] for r in rs) for k in ("rate", "cpu_us")}
                print(f"{name:10} {med[name]['rate']:10.0f} {med[name]['cpu_us']:10.2f}")
            if "sluice" in med and "haproxy" in med:
                print(f"ratio sluice/haproxy: rate {med['sluice']['rate']/med['haproxy']['rate']:.2f}  cpu/op {med['sluice']['cpu_us']/med['haproxy']['cpu_us']:.2f}")
            if "sluice" in med and "nginx" in med:
                print(f"ratio sluice/nginx: rate {med['sluice']['rate']/med['nginx']['rate']:.2f}  cpu/op {med['sluice']['cpu_us']/med['nginx']['cpu_us']:.2f}")
    finally:
        stop_all(procs)

if __name__ == "__main__":
    main()
