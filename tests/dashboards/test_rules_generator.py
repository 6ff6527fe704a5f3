"""The rules generator (proxytier_dashboards/rules.py): the committed files are what it writes, the selector and
the runbook base are parameters that reach every expression and every runbook_url, and with the defaults of
the time the generator produces the rules exactly as they were written by hand."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from proxytier_dashboards import generated, rules, runbook
from proxytier_dashboards.lint import metric_selectors

from .dashboards_common import REPO, RULES_FILE

FROZEN = Path(__file__).parent / "frozen" / "proxytier.rules.before-generator.yml"
REGENERATE = "run: cd dashboards && ../.venv/bin/python -m proxytier_dashboards generate"


#: rule groups written after the generator (not in the frozen file)
LATER_GROUPS = ("proxytier-bgp",)


def _comparable(text: str) -> dict[str, object]:
    """Parsed rules with each expression's whitespace runs made one space (PromQL ignores whitespace; no string
    literal of these rules holds any), without the groups added since the frozen file (LATER_GROUPS)."""
    data = yaml.safe_load(text)
    data["groups"] = [group for group in data["groups"] if group["name"] not in LATER_GROUPS]
    for group in data["groups"]:
        for rule in group["rules"]:
            rule["expr"] = " ".join(rule["expr"].split())
    return data


def test_generator_reproduces_the_hand_written_rules() -> None:
    assert _comparable(rules.render(runbook_url="dashboards/RUNBOOK.md")) == _comparable(FROZEN.read_text())


def test_frozen_comparison_sees_a_changed_rule() -> None:
    changed = rules.render(runbook_url="dashboards/RUNBOOK.md").replace("for: 15m", "for: 10m", 1)
    assert _comparable(changed) != _comparable(FROZEN.read_text())


def test_committed_files_are_what_the_generator_writes() -> None:
    assert generated.stale() == [], REGENERATE
    assert RULES_FILE.read_text(encoding="utf-8") == rules.render()


def test_stale_names_a_hand_edited_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edited = tmp_path / "proxytier.rules.yml"
    edited.write_text(rules.render().replace("for: 30s", "for: 31s", 1))
    monkeypatch.setattr(generated, "outputs", lambda: {edited: rules.render()})
    monkeypatch.setattr(generated, "REPO", tmp_path)
    assert generated.stale() == ["proxytier.rules.yml"]


def test_the_selector_is_written_once() -> None:
    source = (REPO / "dashboards" / "proxytier_dashboards" / "rules.py").read_text(encoding="utf-8")
    assert source.count('job=~"proxytier.*"') == 1, "the selector is a parameter, written once"


@pytest.mark.parametrize("selector", ['job="edge"', 'job=~"edge-.+", env="prod"'])
def test_a_selector_reaches_every_metric_selector(selector: str, tmp_path: Path, promtool: str) -> None:
    text = rules.render(selector=selector)
    assert "proxytier.*" not in text
    data = yaml.safe_load(text)
    selectors = [(name, matchers) for group in data["groups"] for rule in group["rules"]
                 for name, matchers in metric_selectors(rule["expr"])]
    assert len(selectors) >= 30
    assert all(selector in matchers for _, matchers in selectors), selectors
    path = tmp_path / "edge.rules.yml"
    path.write_text(text)
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("base", [rules.DEFAULT_RUNBOOK_URL, "https://wiki.example.com/ops/proxytier.html",
                                  "{{ $externalURL }}/consoles/x.html"])
def test_runbook_base_is_a_parameter(base: str) -> None:
    alerts = [r for g in yaml.safe_load(rules.render(runbook_url=base))["groups"] for r in g["rules"] if "alert" in r]
    assert [a["annotations"]["runbook_url"] for a in alerts] == [f"{base}#{a['alert'].lower()}" for a in alerts]


@pytest.mark.parametrize("base", ["", "https://wiki.example.com/a b", "https://wiki.example.com/x#y",
                                  "https://wiki.example.com/it's", "{{ $externalURL }}/{x"])
def test_a_bad_runbook_base_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match="runbook URL"):
        rules.render(runbook_url=base)


def _salt_jinja(template: str, runbook_url: str) -> str:
    """The formula's template as Salt's file.managed renders it: Jinja with Salt's own yaml_squote filter,
    the final newline dropped by Jinja and put back by Salt."""
    from salt.utils.yamlencoding import yaml_squote

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["yaml_squote"] = yaml_squote
    return env.from_string(template).render(runbook_url=runbook_url) + "\n"


@pytest.mark.parametrize("base", [rules.DEFAULT_RUNBOOK_URL, "https://wiki.example.com/ops/proxytier.html"])
def test_formula_template_renders_the_rules(base: str) -> None:
    template = generated.FORMULA_RULES_TEMPLATE.read_text(encoding="utf-8")
    assert _salt_jinja(template, base) == rules.render(runbook_url=base)


def test_readme_table_follows_the_rules() -> None:
    table = runbook.alert_table()
    for alert in rules.alerts():
        row = f"| [{alert.alert}](RUNBOOK.md#{alert.anchor}) | {alert.severity} | {alert.for_ or 'at once'} |"
        assert row in table
    with pytest.raises(ValueError, match="markers"):
        runbook.readme("no table here\n")


def test_console_page_escapes_go_template_braces() -> None:
    page = runbook.console_page("# T\n\n## ProxytierX\n\n`{{ $value }}`\n")
    assert '<h2 id="proxytierx">ProxytierX</h2>' in page
    assert re.search(r'<code>\{\{ "\{\{" \}\} \$value }}</code>', page)
