#!/usr/bin/env bash
# User-space instructions per request of one Sluice binary, counted by callgrind: deterministic where wall-clock and
# CPU time on a shared 2-core machine are not, so a change on the request path can be compared with its base within
# a fraction of a percent. One worker; wrk -c8 POSTs the iris body through the tag-host + 90/10 configuration to the
# nginx backend; instrumentation is on only while the measured wrk run lasts (after a 3 s warm-up).
#
#   benchmarks/instructions.sh BINARY [PORT]
#
# Valgrind 3.19 cannot read Swift's default DWARF 5: pass a stripped copy (totals only), or a build made with
#   swift build -c release --product sluice --scratch-path /tmp/prof -Xswiftc -dwarf-version=4 -Xcc -gdwarf-4
# for per-function figures (callgrind_annotate on the callgrind.out.* file it leaves in the working directory).
# Needs valgrind, wrk and nginx (make -C benchmarks deps; apt-get install valgrind).
set -euo pipefail
BIN=$1
# CONFIG=benchmarks/sluice-bench-log.yaml counts the same requests with the JSON access log on; LOAD=h2c counts
# HTTP/2 requests instead (h2load -c8 -m10, GET, prior knowledge; needs nghttp2-client).
CONFIG=${CONFIG:-$(cd "$(dirname "$0")" && pwd)/sluice-bench.yaml}
PORT=${2:-8190}
HERE=$(cd "$(dirname "$0")" && pwd)
HOST="Host: sklearn-iris.kserve-test.example.com"
URL=http://127.0.0.1:$PORT/v1/models/sklearn-iris:predict
work=$(mktemp -d)
nginx -c "$HERE/nginx-backend.conf" & backend=$!
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
  "$BIN" serve --config "$CONFIG" --listen 127.0.0.1:$PORT --admin 127.0.0.1:$((PORT + 7000)) \
  --state-dir "$work/state" >/dev/null 2>"$work/valgrind.err" & sluice=$!
trap 'kill $sluice $backend 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -s -o /dev/null -H "$HOST" "$URL" && break; sleep 0.2; done
load() {
  if [ "${LOAD:-http1}" = h2c ]; then
    h2load -c8 -m10 -D "$1" -H ":authority: ${HOST#Host: }" "$URL" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1 requests in/p'
  else
    wrk -t1 -c8 -d"$1"s -s "$HERE/post.lua" -H "$HOST" "$URL"
  fi
}
load 3 >/dev/null
callgrind_control -i on $sluice >/dev/null
out=$(load 8)
callgrind_control -i off $sluice >/dev/null
callgrind_control -d $sluice >/dev/null
requests=$(echo "$out" | grep -o "[0-9]* requests in" | grep -o "^[0-9]*")
cp "$work"/callgrind.out* . 2>/dev/null || true
# awk reads the whole annotation: `grep -m1` closing the pipe early failed the script (pipefail) on long outputs.
instructions=$(for f in "$work"/callgrind.out*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n {gsub(",", "", $1); print $1; n = 1}'; done | awk '{s += $1} END {print s}')
echo "requests=$requests instructions=$instructions per_request=$((instructions / requests))"
