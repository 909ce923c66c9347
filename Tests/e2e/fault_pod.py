"""A model server stand-in whose faults are known in advance, for the metrics tests: it answers KServe's V1
predict and model-ready paths, fails with 500 when the request carries `X-Test-Fail: 1`, and delays every answer
by --delay-ms. HTTP/1.1 keep-alive, one thread per connection, 127.0.0.1 only.

Real KServe servers cannot be told to fail or to take a fixed time; the gateway's numbers need both to be checked.
"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:  # quiet: the test reads the gateway's numbers, not ours
            pass

        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path in (f"/v1/models/{args.model_name}", "/v2/health/ready"):
                self.send_response(200)
                data = json.dumps({"name": args.model_name, "ready": True}).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.answer(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.headers.get("X-Test-Fail") == "1":
                self.answer(500, {"error": "failure asked for by X-Test-Fail"})
                return
            instances = json.loads(body or b"{}").get("instances", [])
            self.answer(200, {"predictions": [1 for _ in instances]})

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
