"""The monitoring model (salt/_utils/proxytier_monitoring.py): every key of pillar proxytier_monitoring is
validated with a message naming its key path, the value and the fix; targets come from explicit nodes or the
mine, one per node, IPv6 in brackets."""

from __future__ import annotations

from typing import Any

import proxytier_monitoring as monitoring
import pytest
from formula import FORMULA, ProxytierError

DEFAULTS_TEXT = (FORMULA / "templates" / "monitoring" / "defaults.yaml").read_text()


class Mine:
    """Records mine.get calls and answers with `data`."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data = data or {}
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, target: str, function: str, tgt_type: str = "glob") -> dict[str, Any]:
        self.calls.append((target, function, tgt_type))
        return self.data


def build(pillar: Any, mine: Mine | None = None) -> dict[str, Any]:
    return monitoring.build(pillar, DEFAULTS_TEXT, mine or Mine())


def test_defaults() -> None:
    mine = Mine()
    model = build(None, mine)
    assert mine.calls == [("proxy*", "proxytier_address", "glob")]
    assert model["job"] == "proxytier" and model["port"] == 8408 and model["targets"] == []
    assert model["runbook_url"] == "{{ $externalURL }}/consoles/proxytier-runbook.html"
    assert model["rules_file"] == "/etc/prometheus/rules/proxytier.rules.yml"
    assert model["console_page"] == "/etc/prometheus/consoles/proxytier-runbook.html"
    assert model["prometheus"]["manage_config"] is False
    assert model["prometheus"]["targets_file"] == "/etc/prometheus/file_sd/proxytier.json"


def test_targets_from_the_mine_first_address_natural_order() -> None:
    mine = Mine({"proxy10": ["198.18.0.20"], "proxy2": ["2001:2::12", "198.18.0.12"], "proxy1": "198.18.0.11",
                 "proxy3": []})
    model = build({"target": "edge*", "tgt_type": "glob", "mine_function": "edge_address", "port": 9100}, mine)
    assert mine.calls == [("edge*", "edge_address", "glob")]
    assert model["targets"] == [
        {"targets": ["198.18.0.11:9100"], "labels": {"job": "proxytier", "instance": "proxy1"}},
        {"targets": ["[2001:2::12]:9100"], "labels": {"job": "proxytier", "instance": "proxy2"}},
        {"targets": ["198.18.0.20:9100"], "labels": {"job": "proxytier", "instance": "proxy10"}},
    ]


def test_explicit_nodes_do_not_read_the_mine() -> None:
    mine = Mine({"other": ["198.18.0.99"]})
    model = build({"job": "proxytier-eu", "nodes": [{"id": "proxy1", "address": "198.18.0.11"},
                                                    {"id": "proxy2", "address": "2001:2:0:0::12"}]}, mine)
    assert mine.calls == []
    assert model["targets"] == [
        {"targets": ["198.18.0.11:8408"], "labels": {"job": "proxytier-eu", "instance": "proxy1"}},
        {"targets": ["[2001:2::12]:8408"], "labels": {"job": "proxytier-eu", "instance": "proxy2"}},
    ]


def test_runbook_url_and_paths_from_the_pillar() -> None:
    model = build({"runbook_url": "https://wiki.example.com/proxytier/RUNBOOK.html",
                   "prometheus": {"rules_dir": "/srv/prom/rules/", "consoles_dir": "/srv/prom/consoles"}})
    assert model["runbook_url"] == "https://wiki.example.com/proxytier/RUNBOOK.html"
    assert model["rules_file"] == "/srv/prom/rules/proxytier.rules.yml"
    assert model["console_page"] == "/srv/prom/consoles/proxytier-runbook.html"
    assert model["prometheus"]["config"] == "/etc/prometheus/prometheus.yml"  # the rest stays default


@pytest.mark.parametrize(("pillar", "message"), [
    ([], r"^proxytier_monitoring = \[\]: expected a mapping"),
    ({"jbo": "proxytier"}, r"^proxytier_monitoring:jbo: unknown key; did you mean 'job'\?"),
    ({"prometheus": {"rule_dir": "/x"}}, r"^proxytier_monitoring:prometheus:rule_dir: unknown key; did you mean "
                                         r"'rules_dir'\?"),
    ({"job": "web"}, r"^proxytier_monitoring:job = 'web': the rules select job=~\"proxytier\.\*\""),
    ({"job": "proxytier eu"}, r"^proxytier_monitoring:job = 'proxytier eu':"),
    ({"port": 0}, r"^proxytier_monitoring:port = 0: a TCP port must be a whole number 1\.\.65535"),
    ({"port": "8408"}, r"^proxytier_monitoring:port = '8408': a TCP port"),
    ({"target": ""}, r"^proxytier_monitoring:target = '': expected a Salt target"),
    ({"tgt_type": "globb"}, r"^proxytier_monitoring:tgt_type = 'globb': expected one of glob, pcre"),
    ({"mine_function": "proxytier.address x"}, r"^proxytier_monitoring:mine_function = 'proxytier.address x':"),
    ({"nodes": "proxy1"}, r"^proxytier_monitoring:nodes = 'proxy1': expected a list"),
    ({"nodes": [{"id": "proxy1"}]}, r"^proxytier_monitoring:nodes:0 = \{'id': 'proxy1'\}: expected \{id:"),
    ({"nodes": [{"id": "proxy1", "address": "198.18.0.300"}]},
     r"^proxytier_monitoring:nodes:0:address = '198\.18\.0\.300': expected an IP address"),
    ({"nodes": [{"id": "-x", "address": "198.18.0.1"}]}, r"^proxytier_monitoring:nodes:0:id = '-x':"),
    ({"nodes": [{"id": "p1", "address": "198.18.0.1"}, {"id": "p1", "address": "198.18.0.2"}]},
     r"^proxytier_monitoring:nodes:1:id = 'p1': each node once"),
    ({"runbook_url": "dashboards/RUNBOOK.md"}, r"^proxytier_monitoring:runbook_url = 'dashboards/RUNBOOK.md': "
                                               r"expected the URL where RUNBOOK.md is published"),
    ({"runbook_url": "https://wiki.example.com/x#y"}, r"^proxytier_monitoring:runbook_url = .*without '#'"),
    ({"runbook_url": "{{ $externalURL }}/it's"}, r"^proxytier_monitoring:runbook_url = "),
    ({"prometheus": {"package": "Prometheus!"}}, r"^proxytier_monitoring:prometheus:package = 'Prometheus!':"),
    ({"prometheus": {"service": "prom etheus"}}, r"^proxytier_monitoring:prometheus:service = 'prom etheus':"),
    ({"prometheus": {"promtool": "promtool"}}, r"^proxytier_monitoring:prometheus:promtool = 'promtool': expected "
                                               r"an absolute path"),
    ({"prometheus": {"config": "/etc/p rom.yml"}}, r"^proxytier_monitoring:prometheus:config = '/etc/p rom.yml':"),
    ({"prometheus": {"rules_dir": "rules"}}, r"^proxytier_monitoring:prometheus:rules_dir = 'rules':"),
    ({"prometheus": {"consoles_dir": ""}}, r"^proxytier_monitoring:prometheus:consoles_dir = '':"),
    ({"prometheus": {"targets_file": "x.json"}}, r"^proxytier_monitoring:prometheus:targets_file = 'x.json':"),
    ({"prometheus": {"manage_config": "yes"}}, r"^proxytier_monitoring:prometheus:manage_config = 'yes': expected "
                                               r"true or false"),
    ({"prometheus": {"scrape_interval": "15"}}, r"^proxytier_monitoring:prometheus:scrape_interval = '15': "
                                                r"expected a Prometheus duration"),
    ({"prometheus": {"evaluation_interval": "1 m"}}, r"^proxytier_monitoring:prometheus:evaluation_interval ="),
    ({"prometheus": []}, r"^proxytier_monitoring:prometheus = \[\]: expected a mapping"),
])
def test_each_bad_key_is_named(pillar: Any, message: str) -> None:
    with pytest.raises(ProxytierError, match=message):
        build(pillar)


def test_every_default_key_has_a_bad_value_case() -> None:
    """Each key of defaults.yaml is exercised by test_each_bad_key_is_named (a new key needs a case)."""
    defaults = monitoring.load_defaults(DEFAULTS_TEXT)
    keys = {k for k in defaults if k != "prometheus"} | {f"prometheus:{k}" for k in defaults["prometheus"]}
    source = (FORMULA.parent.parent / "tests" / "unit" / "test_monitoring_model.py").read_text()
    covered = {k for k in keys if f"proxytier_monitoring:{k} =" in source}
    assert covered == keys, f"no bad-value case for {sorted(keys - covered)}"


def test_bad_mine_data_names_the_minion() -> None:
    with pytest.raises(ProxytierError, match=r"^mine proxytier_address of proxy2 = 'not-an-ip': expected an IP"):
        build(None, Mine({"proxy1": ["198.18.0.11"], "proxy2": ["not-an-ip"]}))
    with pytest.raises(ProxytierError, match=r"^mine proxytier_address of proxy1 = 5: expected a list"):
        build(None, Mine({"proxy1": 5}))


def test_errors_are_proxytier_errors_and_value_errors() -> None:
    with pytest.raises(ValueError, match="proxytier_monitoring:port"):
        build({"port": 70000})


def test_defaults_file_is_plain_yaml() -> None:
    assert "{%" not in DEFAULTS_TEXT
    with pytest.raises(ProxytierError, match=r"defaults\.yaml"):
        monitoring.build(None, "", Mine())
