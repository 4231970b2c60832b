# Upwork Assistant: `make run` serves the app in sandbox mode, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast test-sqlite test-postgres lint sandbox install clean messages screenshots bench

# A virtual environment, made once. Debian's own python3 needs python3-venv for this;
# when it is missing and we are root, install it.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "Install python3-venv (Debian: apt-get install python3-venv)"; exit 1; fi; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

install: $(VENV)/.installed

# Served at http://localhost:PORT (APP_BASE_URL, unless you set it): browsers allow
# passkeys on localhost but never on an IP address; http://127.0.0.1:PORT redirects there.
run: $(VENV)/.installed
	$(BIN)/upwork-assistant db upgrade
	APP_BASE_URL=$${APP_BASE_URL:-http://localhost:$(PORT)} \
	  $(BIN)/upwork-assistant serve --host $(HOST) --port $(PORT)

sandbox: $(VENV)/.installed
	$(BIN)/upwork-assistant sandbox --host $(HOST) --port 8001

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The whole suite twice, both passes at once (a core each): on SQLite, and on PostgreSQL +
# Redis (throwaway servers that scripts/with-services.sh installs when missing, starts on
# loopback and removes). `make test-sqlite` / `make test-postgres` run one pass.
test: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	scripts/ensure-browser.sh
	scripts/with-services.sh true  # installs PostgreSQL and Redis first, once
	scripts/test-both.sh $(BIN)/pytest $(PYTEST_ARGS)

# The fast tier only: tests marked `inprocess` reach the app through httpx.ASGITransport
# (no uvicorn, no socket; see tests/fixtures.py). Seconds, on SQLite.
test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider -m inprocess $(PYTEST_ARGS)

test-sqlite: $(VENV)/.installed-test
	scripts/ensure-browser.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-postgres: $(VENV)/.installed-test
	scripts/ensure-browser.sh
	scripts/with-services.sh $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Bring the translation catalogs up to date with the pages (lists what is untranslated).
messages: $(VENV)/.installed
	$(BIN)/python -m upwork_assistant.web.i18n

# Refresh the screenshots under docs/screenshots (shown in the README) from the real pages.
screenshots: $(VENV)/.installed-test
	scripts/ensure-browser.sh
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:cacheprovider \
	  tests/test_browser.py tests/test_passkeys_browser.py -k "screenshot_set or passkey_screenshots"

# Benchmarks on SQLite and on PostgreSQL + Redis (throwaway servers), against the
# FastAPI-Users peer; writes docs/benchmarks.md. BENCH_ARGS=--quick for a short run.
bench: $(VENV)/.installed-bench
	command -v wrk >/dev/null || scripts/apt-install.sh wrk
	command -v taskset >/dev/null || scripts/apt-install.sh util-linux
	scripts/with-services.sh $(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
