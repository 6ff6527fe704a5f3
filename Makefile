# proxytier: `make demo` (the lab, end to end), `make test` (everything), `make lab-down`.
# Run as root on Debian 12: the lab uses network namespaces, a bridge and systemd-nspawn.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.proxytier-deps
# Unit, render and exporter tests first; the lab integration tests (slow, real cluster) last.
FAST_TESTS := $(filter-out tests/integration/ tests/__pycache__/,$(wildcard tests/*/)) $(wildcard tests/test_*.py)
PYTEST_ARGS ?=
# every test is bounded (the lab tests set their own, longer, limits)
PYTEST := $(PY) -m pytest --timeout=300

.PHONY: all venv host-deps test test-fast test-integration lint demo lab-up lab-down lab-status

all: test

$(STAMP): requirements-dev.txt $(wildcard exporter/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	@if [ -f exporter/pyproject.toml ]; then $(PY) -m pip install -q -e exporter/; fi
	@touch $@

venv: $(STAMP)

host-deps:
	@sh lab/host-deps.sh

test: host-deps venv
	$(PYTEST) $(PYTEST_ARGS) $(FAST_TESTS) tests/integration

test-fast: venv
	$(PYTEST) $(PYTEST_ARGS) $(FAST_TESTS)

test-integration: host-deps venv
	$(PYTEST) $(PYTEST_ARGS) tests/integration

lint: venv
	$(PY) -m ruff check lab tests/integration

demo: host-deps venv
	$(PY) -m lab demo

lab-up: host-deps venv
	$(PY) -m lab up

lab-status: venv
	$(PY) -m lab status

lab-down: venv
	$(PY) -m lab down
