# proxytier: `make demo` (the lab, end to end), `make test` (everything), `make lab-down`.
# Run as root on Debian 12: the lab uses network namespaces, a bridge and systemd-nspawn.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.proxytier-deps
# Unit, render and exporter tests first; the lab integration tests (slow, real cluster) last.
FAST_TESTS := $(filter-out tests/integration/ tests/node/ tests/__pycache__/,$(wildcard tests/*/)) $(wildcard tests/test_*.py)
PYTEST_ARGS ?=
# every test is bounded (the lab tests set their own, longer, limits)
PYTEST := $(PY) -m pytest --timeout=300

.PHONY: all venv host-deps test test-fast test-integration lint demo lab-up lab-down lab-status formula-files

all: test

$(STAMP): requirements-dev.txt $(wildcard exporter/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	@if [ -f exporter/pyproject.toml ]; then $(PY) -m pip install -q -e exporter/; fi
	@touch $@

venv: $(STAMP)

host-deps:
	@sh lab/host-deps.sh

# Each test folder runs in its own pytest process: folders import their own `conftest` module by
# name, which collides when they share one session. All folders run; the exit status is the worst.
define run_pytest_dirs
	@status=0; for d in $(1); do \
		echo "== pytest $$d"; $(PYTEST) $(PYTEST_ARGS) $$d; rc=$$?; \
		if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then status=1; fi; \
	done; exit $$status
endef

test: host-deps venv lint
	$(call run_pytest_dirs,$(FAST_TESTS) tests/integration)

test-fast: venv
	$(call run_pytest_dirs,$(FAST_TESTS))

test-integration: host-deps venv
	$(PYTEST) $(PYTEST_ARGS) tests/integration

# The formula directory holds real files, no symlink (gitfs and copied formula directories): the exporter
# package is copied into it, and the generator writes the rules template and the runbook page.
# tests/formula_files fails when they drift. Another venv: make formula-files PY=/path/to/python
FORMULA_EXPORTER := salt/proxytier/files/proxytier_exporter
formula-files:
	rm -rf $(FORMULA_EXPORTER)
	cp -R exporter/proxytier_exporter $(FORMULA_EXPORTER)
	find $(FORMULA_EXPORTER) \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
	cd dashboards && $(abspath $(PY)) -m proxytier_dashboards generate

# every Python file of the repository (salt/, exporter/, dashboards/, lab/, bench/, tests/)
lint: venv
	$(PY) -m ruff check .

demo: host-deps venv
	$(PY) -m lab demo

lab-up: host-deps venv
	$(PY) -m lab up

lab-status: venv
	$(PY) -m lab status

lab-down: venv
	$(PY) -m lab down
