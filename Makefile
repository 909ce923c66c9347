# Sluice: `make run` starts the gateway with demo predictors; `make test` runs every test.
# Both install what is missing first (Debian packages, a Python venv), so a fresh Debian machine needs nothing else.
SHELL := /bin/bash
SWIFT ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
APT_PACKAGES := libssl-dev libnghttp2-dev pkg-config python3 python3-venv curl
VENV := .venv
CONFIG ?= config/sluice.yaml

.PHONY: deps venv build build-debug run test test-unit test-e2e bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
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

venv: deps $(VENV)/.ready .venv-sslyze/.ready

build: deps
	$(SWIFT) build -c release --product sluice

build-debug: deps
	$(SWIFT) build --product sluice

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

test: test-unit test-e2e

test-unit: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

test-e2e: venv build
	SLUICE_BIN=$$($(SWIFT) build -c release --show-bin-path)/sluice $(VENV)/bin/python -m pytest -q Tests/e2e

bench: build
	$(MAKE) -C benchmarks

clean:
	rm -rf .build .build-* $(VENV) .venv-sslyze
