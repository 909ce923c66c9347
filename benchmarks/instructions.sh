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
PORT=${2:-8190}
HERE=$(cd "$(dirname "$0")" && pwd)
HOST="Host: sklearn-iris.kserve-test.example.com"
URL=http://127.0.0.1:$PORT/v1/models/sklearn-iris:predict
work=$(mktemp -d)
nginx -c "$HERE/nginx-backend.conf" & backend=$!
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
  "$BIN" serve --config "$HERE/sluice-bench.yaml" --listen 127.0.0.1:$PORT --admin 127.0.0.1:$((PORT + 7000)) \
  --state-dir "$work/state" >/dev/null 2>"$work/valgrind.err" & sluice=$!
trap 'kill $sluice $backend 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -s -o /dev/null -H "$HOST" "$URL" && break; sleep 0.2; done
wrk -t1 -c8 -d3s -s "$HERE/post.lua" -H "$HOST" "$URL" >/dev/null
callgrind_control -i on $sluice >/dev/null
out=$(wrk -t1 -c8 -d8s -s "$HERE/post.lua" -H "$HOST" "$URL")
callgrind_control -i off $sluice >/dev/null
callgrind_control -d $sluice >/dev/null
requests=$(echo "$out" | grep -o "[0-9]* requests in" | grep -o "^[0-9]*")
# Each annotation goes to a file first: `grep -m1` on the pipe ended callgrind_annotate with SIGPIPE, which pipefail
# turned into a silent exit of the whole script now and then.
instructions=$(for f in "$work"/callgrind.out*; do callgrind_annotate "$f" >"$f.txt" 2>/dev/null || true; grep -m1 "PROGRAM TOTALS" "$f.txt" | grep -o "^[0-9,]*" | tr -d ,; done | awk '{s += $1} END {print s}')
cp "$work"/callgrind.out* . 2>/dev/null || true
echo "requests=$requests instructions=$instructions per_request=$((instructions / requests))"
