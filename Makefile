# The two commands that matter: `make run` (demo dashboard) and `make test`. Both work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8080

# Debian packages the tests drive for real: a browser, sshd, supervisord's peers, the broker, linters, and for
# the system tests a Debian root file system (mmdebstrap) booted with systemd-nspawn and a headless sway + grim.
APT_PACKAGES := chromium chromium-driver openssh-server openssh-client rsync shellcheck wrk mosquitto \
	systemd fonts-dejavu-core procps strace iproute2 python3-venv curl openssl fonts-noto-color-emoji \
	mmdebstrap systemd-container sway grim
# make test-arm64 also runs a Debian arm64 machine: its programs through qemu-user (binfmt_misc), its root file
# system built by mmdebstrap for a foreign architecture (arch-test).
ARM64_APT_PACKAGES := qemu-user-static arch-test

.PHONY: run test test-arm64 soak bench lint format system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dev]'
	touch $@

run: $(STAMP)  ## the demo dashboard on http://127.0.0.1:8080 (no keys, no hardware, no internet)
	$(PY) -m server --demo --port $(PORT)

test: $(STAMP)  ## lint, then the whole quick suite
	$(MAKE) --no-print-directory system-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -m "not soak and not arm64"

test-arm64: $(STAMP)  ## provision an emulated Debian arm64 over SSH, install without a compiler (slow: its own tier)
	$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(APT_PACKAGES) $(ARM64_APT_PACKAGES)"
	$(PY) -m pytest -q -m arm64 tests/test_provision_arm64.py

soak: $(STAMP)  ## the long fault and load runs
	$(PY) -m pytest -q -m soak

bench: $(STAMP)  ## figures on this machine: throughput, latency, memory; then the calendar reader's
	$(PY) bench/run.py
	$(PY) bench/bench_calendar.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

system-deps:  ## Debian packages the tests use; installs only what is missing (needs root and apt-get)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; fi; \
	fi

clean:
	rm -rf $(VENV) var tests/artifacts .pytest_cache .ruff_cache
