#!/usr/bin/env python3
"""TLS and HTTP/2 side-by-side: HTTPS keep-alive (wrk), HTTP/2 over TLS and h2c (h2load), and new TLS handshakes
per second (openssl s_time: full ones with a P-256 and with an RSA-2048 certificate, and resumed ones by ticket), for
Sluice, nginx and HAProxy doing the same job as proxybench.py (tag hosts + 90/10 split,
upstream keep-alive, one worker each) in front of the same nginx backend, taking turns in one run.

Reports medians over rounds: requests/s (or handshakes/s) and the proxy's CPU µs per request (or handshake),
then ratios against HAProxy. A protocol a proxy does not serve is reported as such, not skipped silently.
`--sluice NAME=BIN` may be given more than once (a before and an after build in one run); ratios are each Sluice's
against HAProxy and nginx. Usage: tlsbench.py --sluice [NAME=]BIN ... [--rounds N] [--seconds S] [--only TEST,...]
"""
import argparse, os, re, signal, statistics, subprocess, sys, tempfile
from proxybench import HERE, HOST, PATH, TICK, tree_cpu_ticks, wait_port, parse_lat, stop_all, launch

def make_cert(d, kind="ec"):
    key, crt, pem = f"{d}/tls.key", f"{d}/tls.crt", f"{d}/tls.pem"
    if kind == "rsa":
        key, crt, pem = f"{d}/rsa.key", f"{d}/rsa.crt", f"{d}/rsa.pem"
    algorithm = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *algorithm, "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST},DNS:*.kserve-test.example.com"], check=True, capture_output=True)
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return key, crt, pem

def configs(d, key, crt, pem, sluices):
    """Each proxy's TLS configuration on its own port (nginx 8443, HAProxy 8444, Sluice 8445, 8446, …), plus h2c
    (prior knowledge) listeners: nginx 8453, HAProxy 8454, and a plain Sluice per build on 8455, 8456, …"""
    nginx = open(f"{HERE}/nginx-proxy.conf").read()
    nginx = nginx.replace("pid /tmp/bench-nginx-proxy.pid;", f"pid {d}/nginx.pid;")
    nginx = nginx.replace("listen 127.0.0.1:8080 reuseport backlog=4096;",
                          f"listen 127.0.0.1:8443 ssl http2 reuseport backlog=4096;\n    listen 127.0.0.1:8453 http2 reuseport backlog=4096;\n"
                          f"    ssl_certificate {crt};\n    ssl_certificate_key {key};\n"
                          "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets on;")
    open(f"{d}/nginx.conf", "w").write(nginx)
    haproxy = open(f"{HERE}/haproxy.cfg").read()
    haproxy = haproxy.replace("bind 127.0.0.1:8081", f"bind 127.0.0.1:8444 ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.2\n"
                              "  bind 127.0.0.1:8454 proto h2")
    open(f"{d}/haproxy.cfg", "w").write(haproxy)
    base = open(f"{HERE}/sluice-bench.yaml").read()
    for i, (name, _) in enumerate(sluices):
        tls = base.replace("listen: 127.0.0.1:8090", f"listen: 127.0.0.1:{8445 + i}").replace("admin: 127.0.0.1:15090", f"admin: 127.0.0.1:{15445 + i}")
        tls += f"tls: {{certificates: [{{cert: {crt}, key: {key}}}]}}\nstateDir: {d}/{name}-state\n"
        open(f"{d}/{name}.yaml", "w").write(tls)
        plain = base.replace("listen: 127.0.0.1:8090", f"listen: 127.0.0.1:{8455 + i}").replace("admin: 127.0.0.1:15090", f"admin: 127.0.0.1:{15455 + i}")
        plain += f"stateDir: {d}/{name}-h2c-state\n"
        open(f"{d}/{name}-h2c.yaml", "w").write(plain)

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

def h2load(port, seconds, conns, scheme="https"):
    out = subprocess.run(["h2load", "-c", str(conns), "-m", "10", "-D", str(seconds), "--warm-up-time=1",
                          "-H", f":authority: {HOST}", f"{scheme}://127.0.0.1:{port}{PATH}"], capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not m or not done or not proto or proto.group(1) not in ("h2", "h2c") or int(done.group(2)) == 0:
        return None
    return {"rate": float(m.group(1)), "count": int(done.group(2))}

def handshakes(port, seconds, reuse=False):
    """openssl s_time: new connections, each a full TLS 1.3 handshake, or with `reuse` a TLS 1.2 one resuming the first
    connection's session by its ticket (s_time resumes only below 1.3: it never waits for a 1.3 ticket)."""
    mode = ["-reuse", "-tls1_2"] if reuse else ["-new"]
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", *mode, "-time", str(seconds)],
                         capture_output=True, text=True).stdout
    c = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if not c: return None
    return {"rate": int(c.group(1)) / max(1, int(c.group(2))), "count": int(c.group(1))}

def report(title, results):
    """Medians of the rounds per proxy (rate, CPU µs per operation), then each Sluice's ratios against HAProxy and
    nginx; a proxy with no successful round is said to be so."""
    print(f"\n{title}")
    print(f"{'proxy':10} {'rate/s':>10} {'cpu us/op':>10}")
    med = {}
    for name, rs in results.items():
        if not rs:
            print(f"{name:10} {'not served':>10}")
            continue
        med[name] = {k: statistics.median(r[k] for r in rs) for k in ("rate", "cpu_us")}
        print(f"{name:10} {med[name]['rate']:10.0f} {med[name]['cpu_us']:10.2f}")
    for name in med:
        if name in ("nginx", "haproxy"): continue
        for other in ("haproxy", "nginx"):
            if other in med:
                print(f"ratio {name}/{other}: rate {med[name]['rate']/med[other]['rate']:.2f}  cpu/op {med[name]['cpu_us']/med[other]['cpu_us']:.2f}")
    sys.stdout.flush()

def run_tests(proxies, tests, rounds):
    for title, run, plain in tests:
        results = {name: [] for name, *_ in proxies}
        for _ in range(rounds):
            for name, port, proc, h2c_port, h2c_proc in proxies:
                res = measure(h2c_proc.pid, lambda: run(h2c_port)) if plain else measure(proc.pid, lambda: run(port))
                if res: results[name].append(res)
        report(title, results)
        sys.stdout.flush()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True, action="append", help="[NAME=]BIN, repeatable")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated subset of: https,h2,h2c,handshakes,resumed,rsa")
    a = ap.parse_args()
    sluices = [tuple(x.split("=", 1)) if "=" in x else (("sluice" if i == 0 else f"sluice{i}"), x) for i, x in enumerate(a.sluice)]
    want = set(a.only.split(",")) if a.only else {"https", "h2", "h2c", "handshakes", "resumed", "rsa"}
    seconds = a.seconds
    tests = [("https", "https keep-alive (wrk -c32)", lambda port: https_wrk(port, seconds, 32), False),
             ("h2", "h2 over TLS (h2load -c8 -m10)", lambda port: h2load(port, seconds, 8), False),
             ("h2c", "h2c, prior knowledge (h2load -c8 -m10)", lambda port: h2load(port, seconds, 8, "http"), True),
             ("handshakes", "new TLS handshakes, P-256 certificate (s_time -new)", lambda port: handshakes(port, seconds), False),
             ("resumed", "resumed TLS 1.2 handshakes, ticket (s_time -reuse -tls1_2)", lambda port: handshakes(port, seconds, reuse=True), False)]
    rsa_tests = [("rsa", "new TLS handshakes, RSA-2048 certificate (s_time -new)", lambda port: handshakes(port, seconds), False)]
    for kind, chosen in (("ec", tests), ("rsa", rsa_tests)):
        chosen = [(t, run, plain) for key, t, run, plain in chosen if key in want]
        if not chosen: continue
        d = tempfile.mkdtemp(prefix="sluice-tlsbench-")
        key, crt, pem = make_cert(d, kind)
        configs(d, key, crt, pem, sluices)
        procs = []
        def start(cmd): return launch(procs, cmd)
        try:
            start(f"nginx -c {HERE}/nginx-backend.conf")
            assert wait_port(9001)
            ng, hp = start(f"nginx -c {d}/nginx.conf"), start(f"haproxy -f {d}/haproxy.cfg")
            proxies = [("nginx", 8443, ng, 8453, ng), ("haproxy", 8444, hp, 8454, hp)]
            for i, (name, binary) in enumerate(sluices):
                proxies.append((name, 8445 + i, start(f"{binary} serve --config {d}/{name}.yaml"),
                                8455 + i, start(f"{binary} serve --config {d}/{name}-h2c.yaml")))
            for name, port, _, h2c_port, _ in proxies:
                for p in (port, h2c_port):
                    if not wait_port(p): sys.exit(f"{name}: port {p} never opened")
            run_tests(proxies, chosen, a.rounds)
        finally:
            stop_all(procs)

if __name__ == "__main__":
    main()
