#!/usr/bin/env bash
# The metrics scrape benchmark: 1 000 revisions with traffic on each on every worker, in-process on the release build
# (Tests/SluiceProxyTests/MetricsScrapeBenchmark.swift): the time and size of one scrape (Prometheus text), and the
# traffic's p50/p99 with no scrapes, a scrape every 250 ms, and scrapes back to back. SLUICE_SCRAPE_ISTIO=0: without
# the Istio families.
#
#   benchmarks/scrape.sh            (SLUICE_SCRAPE_REVISIONS, SLUICE_SCRAPE_WORKERS to change the shape)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --build-tests -Xswiftc -enable-testing --scratch-path .build-release >/dev/null
SLUICE_SCRAPE_BENCH=1 swift test -c release --skip-build --scratch-path .build-release \
  --filter SluiceProxyTests.MetricsScrapeBenchmark 2>&1 | grep "scrape bench"
