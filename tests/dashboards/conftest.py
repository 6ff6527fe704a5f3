"""Shared fixtures of the dashboards and alert-rule tests."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from .dashboards_common import GOLDEN, RULES_FILE


def _type_lines(exposition: str) -> set[str]:
    names = set()
    for kind_name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(kind_name)
        if kind == "histogram":
            names |= {f"{kind_name}_bucket", f"{kind_name}_sum", f"{kind_name}_count"}
    return names


@pytest.fixture(scope="session")
def exporter_metrics() -> frozenset[str]:
    """Every metric name the exporter exposes: the daemons' golden expositions (built from the real daemons'
    output) plus a live exposition of the exporter's own self-metrics and process metrics, and `up`."""
    from proxytier_exporter.core import ScrapeCollector

    registry = CollectorRegistry()
    registry.register(ScrapeCollector([]))
    ProcessCollector(registry=registry)
    names = _type_lines(generate_latest(registry).decode())
    for path in GOLDEN.glob("*.prom"):
        names |= _type_lines(path.read_text(encoding="utf-8"))
    # process_* metrics exist only on Linux; the exporter runs there
    names |= {"process_cpu_seconds_total", "process_resident_memory_bytes", "up"}
    return frozenset(names)


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (sh lab/host-deps.sh)")
    return path


@pytest.fixture(scope="session")
def rules() -> list[dict[str, object]]:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="session")
def alerts(rules: list[dict[str, object]]) -> list[dict[str, object]]:
    return [rule for rule in rules if "alert" in rule]
