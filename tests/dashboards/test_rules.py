"""Alert and recording rules: promtool accepts them, every alert is unit-tested both ways, follows the
conventions, and links to a runbook section that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from proxytier_dashboards import rules as generator
from proxytier_dashboards import runbook
from proxytier_dashboards.lint import metric_selectors

from .dashboards_common import DASHBOARDS, PROMTOOL_TESTS, RULES_FILE

ALERT_NAME = re.compile(r"^Proxytier[A-Z][A-Za-z0-9]+$")
SEVERITIES = {"critical", "warning", "info"}


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub/GitLab generate for a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_tests_live_beside_the_rules() -> None:
    assert [p.name for p in PROMTOOL_TESTS] == ["bgp.test.yml", "exporter.test.yml", "haproxy.test.yml",
                                                "nginx.test.yml", "vrrp.test.yml"]
    for path in PROMTOOL_TESTS:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"] == ["../proxytier.rules.yml"]


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool: str, test_file: Path) -> None:
    result = subprocess.run([promtool, "test", "rules", test_file.name], cwd=test_file.parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_cases() -> dict[str, dict[str, int]]:
    cases: dict[str, dict[str, int]] = {}
    for path in PROMTOOL_TESTS:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in group.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                counts = cases.setdefault(case["alertname"], {"fires": 0, "silent": 0})
                counts[kind] += 1
    return cases


def test_every_alert_has_a_firing_and_a_silent_case(alerts: list[dict[str, object]]) -> None:
    cases = _alert_cases()
    missing = [f"{a['alert']}: {kind}" for a in alerts for kind in ("fires", "silent")
               if cases.get(str(a["alert"]), {}).get(kind, 0) == 0]
    assert not missing, f"promtool cases missing: {missing}"
    unknown = set(cases) - {str(a["alert"]) for a in alerts}
    assert not unknown, f"promtool tests name alerts that do not exist: {unknown}"


def test_alert_conventions(alerts: list[dict[str, object]]) -> None:
    assert len(alerts) >= 20
    names = [str(a["alert"]) for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts:
        name = str(alert["alert"])
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert ALERT_NAME.match(name), f"{name}: CamelCase with the Proxytier prefix"
        assert labels.get("severity") in SEVERITIES, f"{name}: severity"
        assert annotations.get("summary") and "{{" not in annotations["summary"], f"{name}: static summary"
        assert re.search(r"\{\{[^}]*\$", str(annotations.get("description", ""))), f"{name}: templated description"


def test_runbook_urls_point_at_existing_sections(alerts: list[dict[str, object]]) -> None:
    markdown = (DASHBOARDS / "RUNBOOK.md").read_text(encoding="utf-8")
    page = (DASHBOARDS / "consoles" / generator.RUNBOOK_PAGE).read_text(encoding="utf-8")
    for alert in alerts:
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        base, _, anchor = str(annotations["runbook_url"]).partition("#")
        assert base == "{{ $externalURL }}/consoles/proxytier-runbook.html", f"{alert['alert']}: {base}"
        assert anchor == str(alert["alert"]).lower(), f"{alert['alert']}: anchor is the alert's own section"
        assert anchor in github_anchors(markdown), f"{alert['alert']}: no #{anchor} in RUNBOOK.md"
        assert f'<h2 id="{anchor}">{alert["alert"]}</h2>' in page, f"{alert['alert']}: no #{anchor} on the page"


def test_anchor_slugs_follow_github() -> None:
    assert github_anchors("## ProxytierVRRPSplitBrain\n### N-1 (capacity)\n") == {
        "proxytiervrrpsplitbrain", "n-1-capacity"}
    assert {runbook.slug("ProxytierVRRPSplitBrain"), runbook.slug("N-1 (capacity)")} == {
        "proxytiervrrpsplitbrain", "n-1-capacity"}


def test_rules_use_only_exported_metrics_and_select_the_tier(rules: list[dict[str, object]],
                                                             exporter_metrics: frozenset[str]) -> None:
    recorded = {str(r["record"]) for r in rules if "record" in r}
    for rule in rules:
        for name, matchers in metric_selectors(str(rule["expr"])):
            assert name in exporter_metrics, f"{rule.get('alert') or rule.get('record')}: unknown metric {name}"
            assert 'job=~"proxytier.*"' in matchers, f"{rule.get('alert') or rule.get('record')}: {name} job"
        for name in re.findall(r"\b[a-z_]*:[a-z0-9_:]+\b", str(rule["expr"])):
            assert name in recorded, f"{rule.get('alert') or rule.get('record')}: {name} is never recorded"


def test_readme_lists_every_alert(alerts: list[dict[str, object]]) -> None:
    readme = (DASHBOARDS / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index(runbook.TABLE_BEGIN):readme.index(runbook.TABLE_END)]
    listed = re.findall(r"^\| \[(Proxytier\w+)\]\(RUNBOOK\.md#(\w+)\) \| (\w+) \|", table, re.MULTILINE)
    assert listed == [(str(a["alert"]), str(a["alert"]).lower(), a["labels"]["severity"])  # type: ignore[index]
                      for a in alerts]
    assert f"{len(alerts)} alerts" in table
