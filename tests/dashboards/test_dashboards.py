"""Grafana dashboards: the committed JSON is what the generator produces, matches the pinned Grafana 11.6
schema, passes the lint, and every panel query parses and uses only metrics the exporter exposes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from proxytier_dashboards import lint, promql, render, schema

from .dashboards_common import DASHBOARDS

FILES = sorted((DASHBOARDS / "grafana").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_committed_json_is_generated() -> None:
    assert [p.name for p in FILES] == sorted(render.DASHBOARDS)
    assert render.stale() == [], "run: cd dashboards && ../.venv/bin/python -m proxytier_dashboards generate"


def test_stale_detects_a_hand_edit(tmp_path: Path) -> None:
    render.write(tmp_path)
    assert render.stale(tmp_path) == []
    edited = tmp_path / "proxytier-node.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("proxytier / Node", "my node"), encoding="utf-8")
    assert render.stale(tmp_path) == ["proxytier-node.json"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_matches_pinned_grafana_schema(path: Path) -> None:
    assert schema.schema_errors(_load(path)) == []


def test_schema_check_reports_unknown_keys() -> None:
    data = _load(FILES[0])
    broken = copy.deepcopy(data)
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["colour"] = "red"
    broken["templating"]["list"][0]["hidden"] = True
    errors = schema.schema_errors(broken)
    assert any(".options.legend.colour: not in the schema" in e for e in errors), errors
    assert any("$.templating.list[0].hidden: not in the schema" in e for e in errors), errors


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_lint(path: Path, exporter_metrics: frozenset[str]) -> None:
    assert lint.dashboard_problems(_load(path), exporter_metrics) == []


def test_lint_reports_what_conventions_forbid(exporter_metrics: frozenset[str]) -> None:
    data = copy.deepcopy(_load(FILES[0]))
    data["__inputs"] = []
    panel = next(p for p in data["panels"] if p["type"] == "timeseries")
    panel["datasource"] = {"type": "prometheus", "uid": "abc123"}
    panel["description"] = ""
    panel["fieldConfig"]["defaults"].pop("unit")
    panel["targets"][0]["expr"] = 'sum(rate(nginx_http_requests_total{job=~"$job"}[5m])) + nginx_bogus'
    problems = "\n".join(lint.dashboard_problems(data, exporter_metrics))
    for expected in ("__inputs", "datasource is not the $datasource variable", "no description", "no unit",
                     'nginx_http_requests_total does not filter instance=~"$instance"',
                     "range [5m] instead of [$__rate_interval]", "metric nginx_bogus is not exposed"):
        assert expected in problems


def test_variables() -> None:
    for path in FILES:
        variables = {v["name"]: v for v in _load(path)["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert "proxytier_build_info" in variables["job"]["query"]
        assert '{job=~"$job"}' in variables["instance"]["query"]
    overview = {v["name"]: v for v in _load(DASHBOARDS / "grafana" / "proxytier-overview.json")["templating"]["list"]}
    assert overview["instance"]["multi"] and overview["instance"]["includeAll"]


def test_uids_are_stable_and_unique() -> None:
    uids = [_load(path)["uid"] for path in FILES]
    assert uids == ["proxytier-node", "proxytier-overview"]


def test_overview_shows_what_the_issue_asks() -> None:
    titles = {p["title"] for p in _load(DASHBOARDS / "grafana" / "proxytier-overview.json")["panels"]}
    for title in ("MASTERs per VRRP instance", "Nodes holding each VIP", "Nodes reporting",
                  "VRRP state per node and instance", "VRRP effective priority", "Requests per node",
                  "Each node's share of requests", "N-1 headroom (connections)", "Upstream 5xx ratio",
                  "Upstream latency", "Backend health matrix", "Servers the nodes disagree about",
                  "nginx active connections per node", "Collector success"):
        assert title in titles


def test_every_query_parses(promtool: str) -> None:
    expressions = {f"{q.dashboard}/{q.panel}/{q.ref_id}": lint.substitute(q.expr)
                   for path in FILES for q in lint.queries(_load(path))}
    assert len(expressions) > 50
    assert promql.parse_errors(expressions) == {}


def test_parse_check_reports_a_broken_query(promtool: str) -> None:
    errors = promql.parse_errors({"ok": "up", "broken": 'sum(rate(up{job=~".+"}[1m])'})
    assert list(errors) == ["broken"]
    assert "unclosed left parenthesis" in errors["broken"]


def test_substitute() -> None:
    expr = 'rate(x{job=~"$job", instance=~"$instance"}[$__rate_interval])'
    assert lint.substitute(expr) == 'rate(x{job=~".+", instance=~".+"}[1m])'


def test_provisioning_matches_the_dashboards() -> None:
    datasources = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "proxytier.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    for path in FILES:
        variable = _load(path)["templating"]["list"][0]
        assert variable["current"] == {"text": source["name"], "value": source["uid"]}, path.name
    providers = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "proxytier.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    readme = (DASHBOARDS / "README.md").read_text()
    assert provider["options"]["path"] in readme, "README documents where the JSON files go"
