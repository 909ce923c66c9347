#!/usr/bin/env python3
"""Writes the fuzz seed corpora under Tests/Fuzz/corpus/ (checked in; run again after the sources change).

h1-request, h1-response: every llhttp case (Tests/SluiceHTTP1Tests/Fixtures/llhttp-cases.json) and every request or
response string literal of the HTTP/1.1 unit tests. chunked: the bodies after the head of every chunked llhttp case,
and the chunked literals of ChunkedDecoderTests. h2-session: client connections built here frame by frame.
Seeds are named seed-*; crash reproducers kept as regressions are named crash-* and this script leaves them alone.
"""
import base64
import json
import re
import struct
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent.parent
CORPUS = FUZZ / "corpus"


def swift_literals(path):
    """The plain string literals of a Swift file (no interpolation), unescaped."""
    text = path.read_text()
    out = []
    for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text):
        body = m.group(1)
        if "\\(" in body or "\\u" in body:
            continue
        s = re.sub(r"\\(.)", lambda e: {"r": "\r", "n": "\n", "t": "\t", "0": "\0", "\\": "\\", '"': '"'}.get(e.group(1), e.group(0)), body)
        out.append(s.encode("latin-1", "replace"))
    return out


def write(directory, seeds):
    target = CORPUS / directory
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("seed-*"):
        old.unlink()
    unique = {}
    for name, data in seeds:
        if data and data not in unique.values():
            unique[name] = data
    for i, (name, data) in enumerate(sorted(unique.items())):
        (target / f"seed-{name}").write_bytes(data)
    print(f"{directory}: {len(unique)} seeds, {sum(map(len, unique.values()))} bytes")


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:60]


def http1():
    cases = json.loads((ROOT / "Tests/SluiceHTTP1Tests/Fixtures/llhttp-cases.json").read_text())["cases"]
    requests, responses, chunked = [], [], []
    for i, c in enumerate(cases):
        raw = base64.b64decode(c["raw_b64"])
        name = f"llhttp-{i:03d}-{slug(c['id'])}"
        (responses if c["type"].startswith("response") else requests).append((name, raw))
        head_end = raw.find(b"\r\n\r\n")
        if b"chunked" in raw.lower() and head_end >= 0 and head_end + 4 < len(raw):
            chunked.append((name, raw[head_end + 4:]))
    tests = ROOT / "Tests/SluiceHTTP1Tests"
    methods = re.compile(rb"^(\r\n)*[A-Z][A-Z-]* \S")
    for path in [tests / "RequestParserTests.swift", tests / "StorageReuseTests.swift"]:
        for j, lit in enumerate(swift_literals(path)):
            if b"\r\n" in lit and methods.match(lit):
                requests.append((f"test-{path.stem}-{j:03d}", lit))
    for j, lit in enumerate(swift_literals(tests / "ResponseParserTests.swift")):
        if b"\r\n" in lit and lit.lstrip(b"\r\n").startswith(b"HTTP/"):
            responses.append((f"test-ResponseParserTests-{j:03d}", lit))
    for j, lit in enumerate(swift_literals(tests / "ChunkedDecoderTests.swift")):
        if b"\r\n" in lit and re.match(rb"^[0-9a-fA-F]", lit):
            chunked.append((f"test-ChunkedDecoderTests-{j:03d}", lit))
    # The gateway's own traffic: KServe v1/v2 predictions, uploads, keep-alive pipelines.
    json_body = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
    requests += [
        ("gateway-v1-predict", b"POST /v1/models/sklearn-iris:predict HTTP/1.1\r\nHost: sklearn-iris.kserve-test.example.com\r\n"
         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(json_body), json_body)),
        ("gateway-chunked-upload", b"POST /v2/models/m/infer HTTP/1.1\r\nHost: m.example.com\r\nTransfer-Encoding: chunked\r\n"
         b"Expect: 100-continue\r\n\r\n10;ext=1\r\n0123456789abcdef\r\n3\r\nxyz\r\n0\r\nX-Checksum: 1\r\n\r\n"
         b"GET /v2/health/ready HTTP/1.1\r\nHost: m.example.com\r\nConnection: close\r\n\r\n"),
        ("gateway-pipeline", b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
         b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET http://b.example.com:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n"),
        ("gateway-http10", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"),
        ("gateway-forwarding", b"GET /v1/models/m HTTP/1.1\r\nHost: m\r\nX-Forwarded-For: 10.0.0.1\r\nX-Request-Id: abc\r\n"
         b"Knative-Serving-Tag: canary\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX_Under: 1\r\nTE: trailers\r\n\r\n"),
    ]
    responses += [
        ("gateway-json", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"predictions\": [1, 1]}\n"),
        ("gateway-continue-chunked", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
         b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        ("gateway-until-close", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close"),
    ]
    chunked += [
        ("gateway-extensions", b'4;a=b;c="q\\"x";d\r\nwiki\r\n5 ;e\r\npedia\r\n0\r\nA: b\r\nC:d\r\n\r\n'),
        ("gateway-large-size", b"FFFFFFFFFFFFFFF\r\nx\r\n"),
        ("gateway-pipelined", b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
    ]
    write("h1-request", requests)
    write("h1-response", responses)
    write("chunked", chunked)


# HTTP/2 (RFC 9113 §4.1 frames, RFC 7541 HPACK literals without indexing and without Huffman coding).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream & 0x7FFFFFFF) + payload


def hpack(fields):
    out = b""
    for name, value in fields:
        out += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return out


def request(method=b"GET", path=b"/", extra=()):
    return hpack([(b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", b"m.example.com")] + list(extra))


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def http2():
    start = PREFACE + settings((0x3, 100), (0x4, 1 << 20)) + frame(SETTINGS, ACK, 0)
    body = b'{"instances": [[1, 2, 3, 4]]}'
    grpc = b"\x00" + struct.pack(">I", 5) + b"hello"
    seeds = [
        ("get", start + frame(HEADERS, END_STREAM | END_HEADERS, 1, request())),
        ("post-body", start + frame(HEADERS, END_HEADERS, 1, request(b"POST", b"/v1/models/m:predict",
                                                                 [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]))
         + frame(DATA, 0, 1, body[:10]) + frame(DATA, END_STREAM, 1, body[10:])),
        ("many-streams", start + b"".join(frame(HEADERS, END_STREAM | END_HEADERS, i, request(path=b"/%d" % i)) for i in range(1, 30, 2))),
        ("grpc-trailers", start + frame(HEADERS, END_HEADERS, 5, request(b"POST", b"/inference.GRPCInferenceService/ModelInfer",
                                                                        [(b"content-type", b"application/grpc"), (b"te", b"trailers")]))
         + frame(DATA, 0, 5, grpc) + frame(HEADERS, END_STREAM | END_HEADERS, 5, hpack([(b"x-trailer", b"1")]))),
        ("continuation", start + frame(HEADERS, 0, 1, request()[:20]) + frame(CONTINUATION, 0, 1, request()[20:40])
         + frame(CONTINUATION, END_HEADERS, 1, request()[40:])),
        ("padded-priority", start + frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, 3,
                                          b"\x04" + struct.pack(">IB", 1, 16) + request() + b"\0" * 4)
         + frame(PRIORITY, 0, 5, struct.pack(">IB", 3, 1))),
        ("reset-ping-window", start + frame(HEADERS, END_HEADERS, 1, request(b"POST")) + frame(WINDOW, 0, 0, struct.pack(">I", 1 << 16))
         + frame(WINDOW, 0, 1, struct.pack(">I", 100)) + frame(PING, 0, 0, b"12345678") + frame(RST, 0, 1, struct.pack(">I", 8))
         + frame(HEADERS, END_STREAM | END_HEADERS, 3, request())),
        ("rapid-reset", start + b"".join(frame(HEADERS, END_HEADERS, i, request()) + frame(RST, 0, i, struct.pack(">I", 8)) for i in range(1, 60, 2))),
        ("goaway", start + frame(HEADERS, END_STREAM | END_HEADERS, 1, request()) + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))),
        ("window-exhausted", start + frame(HEADERS, END_HEADERS, 1, request(b"PUT")) + b"".join(frame(DATA, 0, 1, b"x" * 16384) for _ in range(5))),
        ("bad-pseudo", start + frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack([(b":path", b"/"), (b":method", b"GET")]))
         + frame(HEADERS, END_STREAM | END_HEADERS, 3, request(extra=[(b"Upper", b"x")]))
         + frame(HEADERS, END_STREAM | END_HEADERS, 5, request(extra=[(b"connection", b"close")]))),
        ("header-bomb", start + frame(HEADERS, END_STREAM | END_HEADERS, 1, request(extra=[(b"x-%d" % i, b"v" * 100) for i in range(30)]))
         + frame(HEADERS, END_STREAM | END_HEADERS, 3, request())),
        ("indexed-hpack", start + frame(HEADERS, END_STREAM | END_HEADERS, 1, bytes([0x82, 0x86, 0x84, 0x41, 0x01, 0x61]))
         + frame(HEADERS, END_STREAM | END_HEADERS, 3, bytes([0x82, 0x86, 0x84, 0xBE]))),
        ("settings-flood", start + b"".join(settings((0x1, 4096)) for _ in range(40))),
        ("bad-preface", b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n" + settings()),
    ]
    write("h2-session", seeds)


if __name__ == "__main__":
    http1()
    http2()
    sys.exit(0)
