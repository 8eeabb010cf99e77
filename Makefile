# marketlog developer and CI entry points (GNU make).
#
#   make test      lint, start services, run the whole pytest suite (what CI runs via .ci/run)
#   make demo      run the CLI demo
#   make serve     run the API on MARKETLOG_HOST:MARKETLOG_PORT (default 127.0.0.1:8000)
#   make bench     start services, run the benchmarks
#   make services  install/start the local services the tests need (idempotent)
#   make lint      ruff and mypy
#   make clean     remove ./data (keeps .state/: the generated service passwords)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PG_ENV := .state/postgres.env
KAFKA_ENV := .state/kafka.env

# Export the generated service addresses (MARKETLOG_TEST_PG_URL, MARKETLOG_TEST_KAFKA_BOOTSTRAP,
# ...) into a recipe line.
LOAD_ENV = set -a; . ./$(PG_ENV); . ./$(KAFKA_ENV); set +a;

.PHONY: venv demo serve services services-postgres services-kafka services-tools test bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

demo: venv
	$(VENV)/bin/marketlog demo

# --- services --------------------------------------------------------------------------------
services: services-postgres services-kafka services-tools

# pdftotext (poppler-utils) for the report PDF tests, Chromium and its driver for the browser test.
services-tools:
	bash infrastructure/tools.sh

services-postgres:
	bash infrastructure/postgres.sh

# A real single-node Kafka (KRaft) from Maven Central's jars; writes .state/kafka.env.
services-kafka: venv
	bash infrastructure/kafka.sh start

# --- checks ----------------------------------------------------------------------------------
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: venv services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(LOAD_ENV) $(VENV)/bin/python -m pytest -q -p no:cacheprovider

serve: venv
	$(VENV)/bin/marketlog serve

bench: venv services
	$(LOAD_ENV) $(VENV)/bin/python -m bench

clean:
	rm -rf ./data
