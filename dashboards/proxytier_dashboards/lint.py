"""Lint of the generated dashboards (CONVENTIONS.md, dashboards and alerts) and extraction of their PromQL.

Checks: the datasource/job/instance variables exist; every panel uses the datasource variable, has a
description and a unit; every metric selector filters by job and instance; every range is $__rate_interval;
every metric name is one the exporter (or Prometheus: `up`) exposes; uids are stable; no `__inputs`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
REQUIRED_VARIABLES = ("datasource", "job", "instance")
# Values a query gets for the variables when it is checked or evaluated outside Grafana.
DEFAULT_SUBSTITUTIONS = {"$__rate_interval": "1m", "$job": ".+", "$instance": ".+"}
# Names from these families are metrics; anything else in an expression is a function, keyword or label.
METRIC_PREFIXES = ("proxytier_", "haproxy_", "nginx_", "process_")
PROMETHEUS_METRICS = frozenset({"up"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)")
_RANGE = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


def queries(data: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every Prometheus expression of every panel (rows' nested panels included)."""
    for panel in _panels(data):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield PanelQuery(data.get("uid", ""), panel.get("title", ""), target.get("refId", ""), target["expr"])


def _panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """The expression with dashboard variables replaced (longest names first: $instance before $i...)."""
    values = values or DEFAULT_SUBSTITUTIONS
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def metric_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matcher text) for each metric referenced in an expression; matcher text "" if none."""
    found = []
    unquoted = _STRING.sub(lambda m: '"' + "x" * (len(m.group()) - 2) + '"', expr)
    for match in _IDENT.finditer(unquoted):
        name = match.group(1)
        if name not in PROMETHEUS_METRICS and not name.startswith(METRIC_PREFIXES):
            continue
        rest = unquoted[match.end():]
        if rest.startswith("{"):
            end = rest.index("}")
            found.append((name, expr[match.end() + 1: match.end() + end]))
        else:
            found.append((name, ""))
    return found


def expr_problems(expr: str, known_metrics: Collection[str] | None = None) -> list[str]:
    """Lint of one expression; metric names are checked against `known_metrics` when given."""
    problems = []
    for name, matchers in metric_selectors(expr):
        if known_metrics is not None and name not in known_metrics:
            problems.append(f"metric {name} is not exposed by the exporter")
        for label, variable in (("job", "$job"), ("instance", "$instance")):
            if f'{label}=~"{variable}"' not in matchers:
                problems.append(f'{name} does not filter {label}=~"{variable}"')
    for window in _RANGE.findall(expr):
        if window != "$__rate_interval":
            problems.append(f"range [{window}] instead of [$__rate_interval]")
    return problems


def dashboard_problems(data: dict[str, Any], known_metrics: Collection[str] | None = None) -> list[str]:
    """Everything wrong with one dashboard, one readable line each (empty when it passes)."""
    title = data.get("title", "?")
    problems = []
    if "__inputs" in data or "${DS_" in str(data):
        problems.append("uses __inputs / ${DS_...}: breaks file provisioning")
    if not str(data.get("uid", "")).startswith("proxytier-"):
        problems.append(f"uid {data.get('uid')!r} is not a stable proxytier-* uid")
    variables = {v.get("name"): v for v in data.get("templating", {}).get("list", [])}
    for name in REQUIRED_VARIABLES:
        if name not in variables:
            problems.append(f"variable ${name} is missing")
    for name in ("job", "instance"):
        if variables.get(name, {}).get("datasource") != DATASOURCE_REF:
            problems.append(f"variable ${name} does not query the datasource variable")
    for panel in _panels(data):
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('title')!r}"
        if panel.get("datasource") != DATASOURCE_REF:
            problems.append(f"{where}: datasource is not the $datasource variable")
        if not panel.get("description"):
            problems.append(f"{where}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{where}: no unit")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        for target in targets:
            if target.get("datasource", DATASOURCE_REF) != DATASOURCE_REF:
                problems.append(f"{where} {target.get('refId')}: query datasource is not $datasource")
            problems.extend(f"{where} {target.get('refId')}: {p}"
                            for p in expr_problems(target.get("expr", ""), known_metrics))
    return [f"{title}: {p}" for p in problems]
