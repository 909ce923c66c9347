#!/usr/bin/env python3
"""Resident memory of Sluice holding N idle keep-alive client connections.

Starts an nginx backend and Sluice (one worker), makes one request on each of N connections so every
connection has been through a full request (buffers taken and given back), leaves them open and idle,
and reports Sluice's RSS before and after, and per connection.
"""
import argparse, os, resource, signal, socket, subprocess, sys, time
from proxybench import stop_all, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--connections", type=int, default=10000)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    procs = []
    try:
        procs.append(subprocess.Popen(["nginx", "-c", f"{HERE}/nginx-backend.conf"], start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sl = subprocess.Popen([a.sluice, "serve", "--config", f"{HERE}/sluice-bench.yaml"], start_new_session=True,
                              stdout=subprocess.DEVNULL)
        procs.append(sl)
        assert wait_port(9001) and wait_port(8090)
        time.sleep(0.2)
        before = rss(sl.pid)
        conns = []
        req = (b"GET /v1/models/sklearn-iris HTTP/1.1\r\nHost: sklearn-iris.kserve-test.example.com\r\n\r\n")
        for i in range(a.connections):
            s = socket.create_connection(("127.0.0.1", 8090))
            s.sendall(req)
            conns.append(s)
        for s in conns:
            s.settimeout(10)
            data = s.recv(65536)
            if not data.startswith(b"HTTP/1.1 200"):
                sys.exit(f"unexpected answer: {data[:80]!r}")
        time.sleep(0.5)
        after = rss(sl.pid)
        print(f"sluice RSS: {before/2**20:.1f} MiB before, {after/2**20:.1f} MiB with {a.connections} idle keep-alive connections "
              f"({(after-before)/a.connections:.0f} bytes per connection); target: at most 80 MiB in total")
        for s in conns: s.close()
        return 0 if after <= 80 * 2**20 else 1
    finally:
        stop_all(procs)

if __name__ == "__main__":
    sys.exit(main())
