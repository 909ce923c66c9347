#!/usr/bin/env bash
# Sticky-key microbenchmark (main.swift): ns and mallocs per request for reading and hashing a sticky key.
# SluiceHTTP1 and SluiceRouting are compiled as their own optimised modules (as in the release build: -O, whole
# module, exclusivity checks off), so the calls cross a module boundary as the worker's do; the malloc counter is the
# allocation test's (Tests/CMallocCounter). Needs only the Swift toolchain (benchmarks/micro needs its package from
# the network). Prints the figures; asserts nothing about speed.
#   benchmarks/sticky/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# KEEP=DIR leaves the binary in DIR (e.g. to count instructions per op: valgrind --tool=callgrind DIR/sticky-bench 1000 1).
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
flags=(-O -wmo -enforce-exclusivity=unchecked -parse-as-library)
for module in SluiceHTTP1 SluiceRouting; do
    swiftc "${flags[@]}" -emit-module -emit-library -static -module-name $module -emit-module-path "$work/$module.swiftmodule" \
        -o "$work/lib$module.a" "$ROOT"/Sources/$module/*.swift
done
clang -O2 -I "$ROOT/Tests/CMallocCounter/include" -c "$ROOT/Tests/CMallocCounter/CMallocCounter.c" -o "$work/CMallocCounter.o"
cat > "$work/module.modulemap" <<MAP
module CMallocCounter { header "$ROOT/Tests/CMallocCounter/include/CMallocCounter.h" export * }
MAP
swiftc -O -wmo -enforce-exclusivity=unchecked -I "$work" -L "$work" -lSluiceHTTP1 -lSluiceRouting "$work/CMallocCounter.o" \
    "$HERE/main.swift" -o "$work/sticky-bench"
"$work/sticky-bench" "$@"
