#!/usr/bin/env bash
# Runs the Sluice microbenchmarks and prints the tables (see README.md).
#   Pass 1: every metric, per op (the `*` columns are divided by the 1,000 ops of an iteration).
#   Pass 2: malloc counts per raw iteration (1,000 ops), so a fraction of an allocation per op
#           cannot round down to 0; fails (exit 1) if any benchmark but the control allocates.
# Extra arguments go to both passes, e.g. ./run.sh --filter 'host lookup'
set -euo pipefail
cd "$(dirname "$0")"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Build chatter goes to $log; it is shown only if the command fails.
bench() {
    if ! swift package --allow-writing-to-package-directory benchmark --target SluiceMicro \
        --no-progress --grouping metric "$@" 2>"$log"; then
        cat "$log" >&2
        return 1
    fi
}

echo "== Pass 1: per op (wall clock, instructions where the CPU exposes a PMU, mallocs, throughput) =="
bench "$@" | sed -n '/^Host /,$p'

echo
echo "== Pass 2: mallocs per iteration of 1,000 ops (unscaled) =="
raw=$(bench --scale --metric mallocCountTotal "$@")
printf '%s\n' "$raw" | sed -n '/^Malloc/,$p'

# Rows look like: │ SluiceMicro:<name> │ p0 │ ... │ p100 │ Samples │ ; p100 is field 9 split on │.
offenders=$(printf '%s\n' "$raw" | awk -F'│' '
    /SluiceMicro:/ && $2 !~ /control/ {
        name = $2; gsub(/^ +| +$/, "", name); p100 = $9; gsub(/ /, "", p100)
        if (p100 != "0") print "  " name ": up to " p100 " mallocs per 1,000 ops"
    }')
rows=$(printf '%s\n' "$raw" | grep -c 'SluiceMicro:' || true)
if [ "$rows" -eq 0 ]; then
    echo "malloc check: FAIL (no benchmark rows in the output)"
    exit 1
fi
if [ -n "$offenders" ]; then
    echo "malloc check: FAIL (expected 0 allocations per op once warm)"
    printf '%s\n' "$offenders"
    exit 1
fi
echo "malloc check: PASS (0 allocations in every measured iteration; control shows the counter is live)"
