# Sluice: `make run` starts the gateway with demo predictors; `make test` runs every test.
# Both install what is missing first (Debian packages, a Python venv), so a fresh Debian machine needs nothing else.
SHELL := /bin/bash
SWIFT ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
APT_PACKAGES := libssl-dev libnghttp2-dev pkg-config python3 python3-venv curl
# What only the tests need: the real Prometheus the metrics test scrapes the gateway with; jq for the seed's
# `kubectl get isvc ... -ojsonpath=... | jq`; etcd (server and etcdctl) for the scale-out tests, which start their own
# members on loopback. kubectl itself comes from the kubectl package when none is on PATH.
# debootstrap for the release test (a clean Debian root the tarball is installed into); systemd for
# `systemd-analyze verify` of the unit (no running systemd is needed for it).
TEST_APT_PACKAGES := prometheus jq etcd-server etcd-client debootstrap systemd
VENV := .venv
CONFIG ?= config/sluice.yaml

.PHONY: deps deps-test venv build build-debug dist run test test-unit test-asan test-tsan test-alloc test-e2e fuzz bench clean

# Installs the Debian packages of $(1) that are missing (the package's service is not started: policy-rc.d or no
# systemd on these machines; the tests start their own on loopback).
apt_install = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

deps:
	@$(call apt_install,$(APT_PACKAGES))
	@test -x "$(SWIFT)" || { echo "Swift 6 toolchain not found (looked for swift on PATH and /opt/swift/usr/bin/swift)"; exit 1; }

$(VENV)/.ready: Tests/e2e/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r Tests/e2e/requirements.txt
	touch $@

# sslyze pins cryptography<47 while kserve needs >=50: the TLS compliance check gets a venv of its own.
.venv-sslyze/.ready: Tests/e2e/requirements-sslyze.txt
	python3 -m venv .venv-sslyze
	.venv-sslyze/bin/pip install -q -r Tests/e2e/requirements-sslyze.txt
	touch $@

deps-test: deps
	@$(call apt_install,$(TEST_APT_PACKAGES))
	@command -v kubectl >/dev/null || { $(call apt_install,kubectl); }

venv: deps $(VENV)/.ready .venv-sslyze/.ready

build: deps
	$(SWIFT) build -c release --product sluice

build-debug: deps
	$(SWIFT) build --product sluice

# The release artifact: dist/sluice-<version>-linux-<arch>.tar.gz with sluice-<version>/{bin/sluice, config/,
# systemd/sluice.service, README}. Swift's runtime and Foundation are linked statically, so the machine it goes to
# needs only libssl3 and libnghttp2-14 (Tests/e2e/test_dist.py proves it in a clean debootstrap root). Its own
# scratch path: the static link would otherwise replace .build's release binary. The ldd check fails the target if
# the binary needs any library beyond glibc's, the C++ runtime's, OpenSSL's, nghttp2's and zlib's.
DIST_SCRATCH := .build-dist
DIST_BUILD := -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH)
DIST_ALLOWED_LIBS := linux-vdso\.so|ld-linux[-a-z0-9_]*\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so|libssl\.so|libcrypto\.so|libnghttp2\.so|libz\.so
dist: deps
	$(SWIFT) build $(DIST_BUILD) --product sluice
	@set -euo pipefail; bin=$$($(SWIFT) build $(DIST_BUILD) --show-bin-path)/sluice; \
	extra=$$(ldd $$bin | awk '{print $$1}' | grep -vE '^(/lib64/|/lib/)?($(DIST_ALLOWED_LIBS))' || true); \
	if [ -n "$$extra" ]; then echo "dist: $$bin needs libraries a clean machine lacks: $$extra"; exit 1; fi; \
	version=$$($$bin version | sed -n 's/^sluice //p'); test -n "$$version"; \
	name=sluice-$$version; stage=$(DIST_SCRATCH)/stage; tarball=dist/$$name-linux-$$(uname -m).tar.gz; \
	rm -rf $$stage && mkdir -p $$stage/$$name/bin $$stage/$$name/config/manifests $$stage/$$name/systemd dist; \
	strip -o $$stage/$$name/bin/sluice $$bin; \
	install -m 0644 config/sluice.yaml config/static.yaml $$stage/$$name/config/; \
	install -m 0644 config/manifests/*.yaml $$stage/$$name/config/manifests/; \
	install -m 0644 deploy/systemd/sluice.service $$stage/$$name/systemd/; \
	sed -e "s/@VERSION@/$$version/g" -e "s/@ARCH@/$$(uname -m)/g" deploy/dist/README > $$stage/$$name/README; \
	tar -C $$stage --owner=0 --group=0 --numeric-owner -czf $$tarball $$name; \
	echo "dist: $$tarball ($$(du -h $$tarball | cut -f1)); ldd: $$(ldd $$bin | awk '{print $$1}' | tr '\n' ' ')"

# Starts two demo iris predictors (model and model-2 of sklearn-iris), the gateway on $(CONFIG), and, when the state
# directory does not have sklearn-iris yet, applies the seed's create step then its tag-routing canary (10 % to 00002).
run: build
	@bin=$$($(SWIFT) build -c release --show-bin-path)/sluice; \
	$$bin demo & demo=$$!; \
	$$bin serve --config $(CONFIG) & serve=$$!; \
	trap "kill $$serve $$demo 2>/dev/null" EXIT INT TERM; \
	for i in $$(seq 1 100); do curl -sf http://127.0.0.1:15000/healthz >/dev/null && break; sleep 0.1; done; \
	if ! $$bin get isvc sklearn-iris -n kserve-test >/dev/null 2>&1; then \
	  $$bin apply -n kserve-test -f config/manifests/1-create.yaml && $$bin rollout status isvc sklearn-iris -n kserve-test && \
	  $$bin apply -n kserve-test -f config/manifests/5-tag-routing.yaml && $$bin rollout status isvc sklearn-iris -n kserve-test; \
	fi; \
	$$bin get isvc -n kserve-test; \
	wait $$serve

test: test-unit test-alloc test-asan test-tsan test-e2e

test-unit: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The allocation test again in a release build: the debug run in test-unit bounds the debug figure, this one the
# figure of the code that ships (AllocationTests.swift has both). Its own scratch path, so .build stays as it is.
# The release-only allocation tests: the request path, the access log on, a traced and exported request.
ALLOC_TESTS := SluiceProxyTests.AllocationTests|SluiceProxyTests.AccessLogTests/testSteadyStateRequestsWithTheAccessLogOnAllocateNothingOnTheGatewaysThreads|SluiceProxyTests.TracingAllocationTests
test-alloc: deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing --scratch-path .build-release
	$(SWIFT) test -c release --skip-build --scratch-path .build-release --filter '$(ALLOC_TESTS)'

# Sanitizer runs: the whole unit suite under AddressSanitizer and under ThreadSanitizer, each with its own scratch
# path. The proxy and gateway tests (SluiceProxyTests, SluiceControlTests) are what they are for; the other targets
# add about a second, and a new test target is covered without editing this file. AllocationTests skips itself
# there (the sanitizer runtime owns malloc). Suppressions (Tests/sanitizers/*.supp) cover runtime noise only.
# Left out of the ASan run, each with its reason:
#  - testSixtyFourMiBUploadAndDownloadStreamWithBoundedMemory asserts a resident-memory bound; ASan's quarantine
#    (256 MiB of freed blocks held back on purpose) and its shadow memory make RSS meaningless.
ASAN_SKIP := StreamingTests.testSixtyFourMiBUploadAndDownloadStreamWithBoundedMemory
# Run under ASan but without its exit-time leak check, because of a leak in Sources still open (issue 7): an h2
# upstream connection whose TLS handshake never finishes. Its large part (788 KB: the connection, its nghttp2 session,
# buffers and streams, kept by a cycle through the pool) is gone since a connect past its deadline is closed; 9 KB in
# 55 blocks remain, allocated inside libcrypto, where ASan cannot unwind (no frame pointers) to say by whom. Drop this
# line once that is found.
ASAN_KNOWN_LEAK := GRPCOverTLSTests.testAPodThatNeverFinishesTheHandshakeIsAConnectTimeout
# Leak checking is on (LeakSanitizer at exit): with the two runtime-noise suppressions it reports nothing but real
# leaks, and it found one (above).
ASAN_ENV = ASAN_OPTIONS=detect_leaks=$(1):halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp
TSAN_ENV := TSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp:halt_on_error=0

test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	$(call ASAN_ENV,1) $(SWIFT) test --skip-build --scratch-path .build-asan --skip '$(ASAN_SKIP)|$(ASAN_KNOWN_LEAK)'
	$(call ASAN_ENV,0) $(SWIFT) test --skip-build --scratch-path .build-asan --filter '$(ASAN_KNOWN_LEAK)'

# Every test but TSAN_SKIP under TSan, not only the multi-worker ones (most gateway tests run 2 workers; the single-worker ones
# are two-threaded as well: the test thread publishes, reloads and shuts down while the worker runs). The whole set
# takes about as long under TSan as the multi-worker part would, since these tests wait on sockets, not the CPU.
# Left out of the TSan run: the 64 MiB streaming test. TSan slows its byte-by-byte work (the gateway's chunked
# decoder, the test pod's parsing) about fifty-fold, to ~20 s on two cores — the test pod's own read timeout — while
# its threads and sockets are those of the other streaming tests, which run.
TSAN_SKIP := StreamingTests.testSixtyFourMiBUploadAndDownloadStreamWithBoundedMemory

test-tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	$(TSAN_ENV) $(SWIFT) test --skip-build --scratch-path .build-tsan --skip '$(TSAN_SKIP)'

# test_dist.py installs `make dist`'s tarball (SLUICE_DIST_TARBALL) into a clean Debian root; test_deploy.py validates
# deploy/ (and starts the Kubernetes ConfigMap's sluice.yaml on SLUICE_BIN).
test-e2e: venv deps-test build dist
	SLUICE_BIN=$$($(SWIFT) build -c release --show-bin-path)/sluice \
	SLUICE_DIST_TARBALL=$$(ls -t dist/sluice-*-linux-$$(uname -m).tar.gz | head -1) \
	$(VENV)/bin/python -m pytest -q Tests/e2e

# libFuzzer targets (Tests/Fuzz): each built with -sanitize=fuzzer,address (release, as shipped) in its own scratch
# path, then run for FUZZ_SECONDS on a working corpus in .build-fuzz seeded from Tests/Fuzz/corpus (libFuzzer adds
# what it finds to the first directory only, so the checked-in seeds stay as they are). A crash stops only its target;
# its reproducer lands in .build-fuzz/crashes and `make fuzz` fails at the end. Not part of `make test`: the unit
# tests replay the checked-in corpus through the same checks (SluiceFuzzTests).
FUZZ_SECONDS ?= 60
# target:corpus directory:dictionary:max input length
FUZZ_TARGETS := FuzzH1Request:h1-request:http.dict:16384 FuzzH1Response:h1-response:http.dict:16384 \
	FuzzChunked:chunked:http.dict:4096 FuzzH2Session:h2-session:h2.dict:65536
FUZZ_BUILD := -c release --scratch-path .build-fuzz -Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address
# The Swift runtime's own backtracer trips ASan and hides the report (hardening.md §6.2).
FUZZ_ENV := SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=halt_on_error=1:detect_leaks=1

fuzz: deps
	@set -o pipefail; for t in $(FUZZ_TARGETS); do \
	  $(SWIFT) build $(FUZZ_BUILD) --product $${t%%:*} 2>&1 | tail -3 || exit 1; done
	@bin=$$($(SWIFT) build $(FUZZ_BUILD) --show-bin-path); failed=""; mkdir -p .build-fuzz/crashes; \
	for t in $(FUZZ_TARGETS); do \
	  IFS=: read name dir dict len <<< "$$t"; mkdir -p .build-fuzz/corpus/$$dir; \
	  log=.build-fuzz/$$name.log; start=$$(date +%s); \
	  $(FUZZ_ENV) $$bin/$$name .build-fuzz/corpus/$$dir Tests/Fuzz/corpus/$$dir -dict=Tests/Fuzz/$$dict -max_len=$$len \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/$$name- >$$log 2>&1; \
	  rc=$$?; took=$$(( $$(date +%s) - start )); \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); eps=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log); \
	  cov=$$(grep -o 'cov: [0-9]*' $$log | tail -1); \
	  printf '%-15s %4ss  %9s runs  %7s exec/s  %s  corpus %s\n' $$name $$took "$${runs:-?}" "$${eps:-?}" "$$cov" "$$(ls .build-fuzz/corpus/$$dir | wc -l)"; \
	  if [ $$rc -ne 0 ]; then failed="$$failed $$name"; grep -m3 -E 'ERROR|Fatal error|violated' $$log; echo "  log: $$log"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in$$failed (reproducers in .build-fuzz/crashes)"; exit 1; fi

bench: build
	$(MAKE) -C benchmarks

clean:
	rm -rf .build .build-* $(VENV) .venv-sslyze dist
