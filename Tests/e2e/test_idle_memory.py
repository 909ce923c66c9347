"""What an idle keep-alive client connection costs Sluice in resident memory, in front of real KServe servers.

4 000 connections (fewer only where the open-file limit is lower) each carry one real request and response and then
stay open and idle; Sluice's resident memory grows by at most 1.5 KB per connection (issue 13's target: buffers and
parser storage are held only while a connection has bytes in flight). The figure is measured from a warmed-up
gateway (256 connections served and closed first: pools, pod connections, allocator arenas), as
benchmarks/idle_memory.py measures it beside nginx and HAProxy.
"""
import resource
import socket

from conftest import LOOPBACK, SERVICE_HOST, MODEL_NAME, wait_until

TARGET_BYTES_PER_CONNECTION = 1536
BATCH = 64
REQUEST = f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: {SERVICE_HOST}\r\n\r\n".encode()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def read_response(s: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from an HTTP/1.1 keep-alive connection."""
    data = b""
    while True:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed before its response was complete: {data[:200]!r}"
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            continue
        length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
        if len(body) >= length:
            return head


def open_idle(port: int, n: int) -> list:
    """n connections, each with one request answered 200, in batches so that at most BATCH are in flight at once."""
    conns = []
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            s = socket.create_connection((LOOPBACK, port), timeout=30)
            s.sendall(REQUEST)
            batch.append(s)
        for s in batch:
            head = read_response(s)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        conns += batch
    return conns


def test_an_idle_keep_alive_connection_costs_at_most_1_5_kb(start_sluice):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(4000, hard - 512)
    assert n >= 1000, f"the open-file limit {hard} leaves too few connections for a measurement"
    sluice = start_sluice(workers=1)
    for s in open_idle(sluice.port, 256):
        s.close()
    # The warm-up's connections are gone from the gateway once its open-connection gauge says so.
    def open_gauge() -> float:
        import requests
        text = requests.get(f"http://{LOOPBACK}:{sluice.admin_port}/metrics", timeout=5).text
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("sluice_downstream_connections_open{"))
    wait_until(lambda: open_gauge() == 0, 10, "the warm-up connections closed on the gateway")
    before = rss(sluice.proc.pid)
    conns = open_idle(sluice.port, n)
    try:
        wait_until(lambda: open_gauge() == n, 10, f"the gateway holds the {n} connections")
        per_connection = (rss(sluice.proc.pid) - before) / n
        assert per_connection <= TARGET_BYTES_PER_CONNECTION, \
            f"{per_connection:.0f} bytes of resident memory per idle connection (target {TARGET_BYTES_PER_CONNECTION})"
        # Idle is not dead: every connection still serves its next request.
        for s in conns[:: max(1, n // 100)]:
            s.sendall(REQUEST)
            assert read_response(s).startswith(b"HTTP/1.1 200")
    finally:
        for s in conns:
            s.close()
