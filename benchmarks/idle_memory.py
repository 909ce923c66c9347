#!/usr/bin/env python3
"""Resident memory per idle keep-alive client connection: Sluice, nginx and HAProxy in one run, same backend.

For each proxy and each count N: start it (one worker), warm it up (256 connections, a request each, closed), read
its resident memory, then open N connections from 127.0.0.1 (and 127.0.0.2, … past 28 000, the ephemeral port
range), each carrying one full request and response (in batches of 64, so that no proxy holds more than 64
requests at once), leave them open and idle, and read it again. Reports the difference per connection.

Plain HTTP/1.1 by default; `--tls` makes every connection HTTPS (TLS 1.3, P-256 certificate), `--h2` HTTP/2 over TLS
(ALPN h2, one request each: nginx and HAProxy as well as Sluice). The open-file limit bounds N (the proxy and this
script each hold N descriptors); the limit is printed, and a count that does not fit is refused, not cut.
Usage: idle_memory.py --sluice BIN [--connections N ...] [--proxies sluice,nginx,haproxy] [--tls | --h2]
"""
import argparse, os, resource, socket, ssl, subprocess, sys, tempfile, time
from proxybench import HERE, HOST, stop_all, wait_port
from tlsbench import make_cert

BATCH = 64

def rss_tree(pid):
    """Resident bytes of pid and its children (nginx's master and worker)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total

def haproxy_maxconn(n, fd_limit):
    """HAProxy reserves two descriptors per connection (client and server side) and refuses a maxconn it cannot back."""
    return min(n + 1024, (fd_limit - 200) // 2)

def configs(d, n, tls, fd_limit):
    """Each proxy's benchmark configuration with room for n connections (and TLS on its port when asked)."""
    key, crt, pem = make_cert(d) if tls else (None, None, None)
    nginx = open(f"{HERE}/nginx-proxy.conf").read().replace("worker_connections 4096;", f"worker_connections {n + 1024};")
    nginx = nginx.replace("pid /tmp/bench-nginx-proxy.pid;", f"pid {d}/nginx.pid;")
    if tls:
        nginx = nginx.replace("listen 127.0.0.1:8080 reuseport backlog=4096;",
                              f"listen 127.0.0.1:8080 ssl http2 reuseport backlog=4096;\n    ssl_certificate {crt};\n"
                              f"    ssl_certificate_key {key};\n    ssl_protocols TLSv1.2 TLSv1.3;")
    open(f"{d}/nginx.conf", "w").write(nginx)
    haproxy = open(f"{HERE}/haproxy.cfg").read().replace("maxconn 4000", f"maxconn {haproxy_maxconn(n, fd_limit)}")
    if tls:
        haproxy = haproxy.replace("bind 127.0.0.1:8081", f"bind 127.0.0.1:8081 ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.2")
    open(f"{d}/haproxy.cfg", "w").write(haproxy)
    sluice = open(f"{HERE}/sluice-bench.yaml").read() + f"stateDir: {d}/sluice-state\n"
    if tls:
        sluice += f"tls: {{certificates: [{{cert: {crt}, key: {key}}}]}}\n"
    open(f"{d}/sluice.yaml", "w").write(sluice)

REQUEST = f"GET /v1/models/sklearn-iris HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()

def h2_request():
    """A client preface, an empty SETTINGS and one HEADERS frame (GET, literal fields without indexing, no Huffman)."""
    def lit(name, value):
        def s(b): return bytes([len(b)]) + b
        return b"\x00" + s(name.encode()) + s(value.encode())
    block = b"\x82\x87" + lit(":path", "/v1/models/sklearn-iris") + lit(":authority", HOST)  # :method GET, :scheme https
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block  # HEADERS, END_STREAM|END_HEADERS
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + frame

def read_response(s, h2):
    """Reads until one whole response is in (HTTP/1.1: a 200 head and its Content-Length; h2: END_STREAM on stream 1)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit(f"connection closed early: {data[:120]!r}")
        data += chunk
        if h2:
            p = 24 if data.startswith(b"PRI") else 0
            while p + 9 <= len(data):
                length, kind, flags, stream = int.from_bytes(data[p:p+3], "big"), data[p+3], data[p+4], int.from_bytes(data[p+5:p+9], "big") & 0x7fffffff
                if p + 9 + length > len(data): break
                if stream == 1 and kind in (0, 1) and flags & 1: return
                p += 9 + length
            continue
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep: continue
        if not head.startswith(b"HTTP/1.1 200"): raise SystemExit(f"unexpected answer: {head[:120]!r}")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
        if len(body) >= length: return

def open_connections(n, port, tls, h2, first_source=1):
    ctx = None
    if tls or h2:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
    payload = h2_request() if h2 else REQUEST
    conns = []
    for start in range(0, n, BATCH):
        batch = []
        for i in range(start, min(n, start + BATCH)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.0.{first_source + i // 28000}", 0))
            s.connect(("127.0.0.1", port))
            if ctx:
                s = ctx.wrap_socket(s, server_hostname=HOST)
                if h2 and s.selected_alpn_protocol() != "h2": raise SystemExit(f"port {port} did not select h2")
            s.sendall(payload)
            batch.append(s)
        for s in batch:
            s.settimeout(20)
            read_response(s, h2)
        conns += batch
    return conns

def measure(name, cmd, port, n, tls, h2):
    procs = []
    try:
        p = subprocess.Popen(cmd, shell=True, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        if not wait_port(port): raise SystemExit(f"{name}: port {port} never opened")
        for s in open_connections(256, port, tls, h2, first_source=9): s.close()
        time.sleep(0.5)  # let the proxy see the closes
        before = rss_tree(p.pid)
        conns = open_connections(n, port, tls, h2)
        time.sleep(0.5)
        after = rss_tree(p.pid)
        for s in conns: s.close()
        return before, after
    finally:
        stop_all(procs)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--connections", type=int, action="append", help="repeatable; default 10000")
    ap.add_argument("--proxies", default="sluice,nginx,haproxy")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--h2", action="store_true")
    a = ap.parse_args()
    counts = a.connections or [10000]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"open-file limit: {hard} (each proxy and this client hold one descriptor per connection)")
    for n in counts:
        if n + 600 > hard: sys.exit(f"{n} connections do not fit the open-file limit {hard}")
    kind = "HTTP/2 over TLS" if a.h2 else "HTTPS/1.1" if a.tls else "HTTP/1.1"
    d = tempfile.mkdtemp(prefix="sluice-idle-")
    configs(d, max(counts), a.tls or a.h2, hard)
    commands = {"sluice": (f"{a.sluice} serve --config {d}/sluice.yaml", 8090),
                "nginx": (f"nginx -c {d}/nginx.conf", 8080),
                "haproxy": (f"haproxy -f {d}/haproxy.cfg", 8081)}
    backend = subprocess.Popen(["nginx", "-c", f"{HERE}/nginx-backend.conf"], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(9001)
        print(f"{'proxy':8} {'connections':>11} {'kind':>16} {'RSS before':>11} {'RSS idle':>10} {'bytes/conn':>10}")
        for n in counts:
            for name in a.proxies.split(","):
                cmd, port = commands[name]
                if name == "haproxy" and n > haproxy_maxconn(n, hard):
                    print(f"{name:8} {n:11d} {kind:>16} not measured: its maxconn {n} needs {2 * n} descriptors, over the limit {hard}")
                    continue
                before, after = measure(name, cmd, port, n, a.tls, a.h2)
                print(f"{name:8} {n:11d} {kind:>16} {before/2**20:9.1f}Mi {after/2**20:8.1f}Mi {(after-before)/n:10.0f}", flush=True)
    finally:
        stop_all([backend])

if __name__ == "__main__":
    main()
