# proxytier: `make demo` (the lab, end to end), `make test` (everything), `make lab-down`.
# Run as root on Debian 12: the lab uses network namespaces, a bridge and systemd-nspawn.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.proxytier-deps
# Every suite but the lab runs first, in one pytest session (each test folder is a package, so
# their conftest modules do not collide); the lab integration tests (slow, a real cluster) last.
FAST_TESTS := tests --ignore=tests/integration
# every test is bounded (the lab tests set their own, longer, limits)
PYTEST := $(PY) -m pytest --timeout=300

.PHONY: all venv host-deps test test-fast test-integration test-matrix lint demo lab-up lab-down lab-status formula-files

all: test

$(STAMP): requirements-dev.txt $(wildcard exporter/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	@if [ -f exporter/pyproject.toml ]; then $(PY) -m pip install -q -e exporter/; fi
	@touch $@

venv: $(STAMP)

host-deps:
	@sh lab/host-deps.sh

# Every session runs, whatever the others say; the exit status is the worst. The lab runs the full suite on
# the default platform (Debian 12, Salt 3008, file_roots), then the reduced one (-m core) on the other
# platforms of the support matrix in README.md: Debian 13; the oldest Salt with the formula through gitfs.
# Each session leaves a JUnit report in $(REPORTS); the run ends with a summary of them (tests/summary.py),
# so the tail of a long log names the session and the tests that failed.
MATRIX := "PROXYTIER_LAB_RELEASE=trixie" "PROXYTIER_LAB_SALT=3006.29 PROXYTIER_LAB_FORMULA=gitfs"
REPORTS := .test-reports
# $(call SESSION,name,environment,pytest arguments): one pytest session, its status kept in $$status
SESSION = rc=0; env $(2) $(PYTEST) $(PYTEST_ARGS) --junitxml=$(REPORTS)/$(1).xml $(3) || rc=$$?; \
	echo "$(1) $$rc" >> $(REPORTS)/status; [ $$rc = 0 ] || status=$$rc
MATRIX_SESSIONS = for platform in $(MATRIX); do \
		echo "== lab, reduced suite: $$platform"; \
		$(call SESSION,3-lab-core-$$(echo $$platform | tr ' =' '+-'),$$platform,-m core tests/integration); \
	done
test: host-deps venv lint
	@rm -rf $(REPORTS); mkdir -p $(REPORTS); status=0; \
	$(call SESSION,1-not-lab,,$(FAST_TESTS)); \
	$(call SESSION,2-lab-full,,tests/integration); \
	$(MATRIX_SESSIONS); \
	$(PY) tests/summary.py $(REPORTS); exit $$status

# the reduced lab suite on the matrix's other platforms only
test-matrix: host-deps venv
	@rm -rf $(REPORTS); mkdir -p $(REPORTS); status=0; \
	$(MATRIX_SESSIONS); \
	$(PY) tests/summary.py $(REPORTS); exit $$status

test-fast: venv
	$(PYTEST) $(PYTEST_ARGS) $(FAST_TESTS)

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
# and the formula's SLS (salt-lint), the plain-YAML pillars and kitchen.yml (yamllint), the shell helpers
# (shellcheck); .pre-commit-config.yaml runs this same target
SHELL_SCRIPTS := salt/proxytier/files/check-haproxy salt/proxytier/files/check-haproxy-crt \
	salt/proxytier/files/check-keepalived lab/host-deps.sh lab/env .ci/run
lint: venv
	$(PY) -m ruff check .
	$(VENV)/bin/salt-lint $$(find salt -name '*.sls')
	$(VENV)/bin/yamllint --strict -d '{extends: relaxed, rules: {line-length: {max: 120}}}' \
		pillar tests/pillar tests/kitchen/pillar kitchen.yml
	shellcheck $(SHELL_SCRIPTS)

# the lab's node count: make demo NODES=5 (2..5; default 3); its platform: RELEASE=trixie (Debian 13;
# default bookworm) and SALT=3006.29 or 3007.16 (default 3008.3), for the nodes and the lab master
NODES ?=
LAB_NODES := $(if $(NODES),--nodes $(NODES))
LAB_PLATFORM := $(if $(RELEASE),PROXYTIER_LAB_RELEASE=$(RELEASE)) $(if $(SALT),PROXYTIER_LAB_SALT=$(SALT))
demo: host-deps venv
	$(LAB_PLATFORM) $(PY) -m lab demo $(LAB_NODES)

lab-up: host-deps venv
	$(LAB_PLATFORM) $(PY) -m lab up $(LAB_NODES)

lab-status: venv
	$(PY) -m lab status

lab-down: venv
	$(PY) -m lab down
