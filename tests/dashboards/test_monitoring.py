"""proxytier.monitoring applied by a masterless salt-call (this checkout's salt/ as file root) into a
temporary directory: file_sd targets from the mine or the pillar, the project's rules installed, promtool
checks before anything replaces a live file. Only the file states run (sls_id), never the host's service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .dashboards_common import DASHBOARDS, REPO, RULES_FILE

SALT_CALL = Path(sys.executable).parent / "salt-call"
# with manage_config, the config's requisites are the package (present: promtool comes with it), the rules
# and the targets; then the runbook page: every file state, and not the service
FILE_STATES = ("proxytier-monitoring-prometheus-config", "proxytier-monitoring-runbook")

pytestmark = pytest.mark.skipif(not SALT_CALL.exists(), reason="salt-call not in the venv (make venv)")


class Minion:
    """A masterless minion `monitor1` whose Prometheus paths all live under `root/out`."""

    def __init__(self, root: Path, file_root: Path = REPO / "salt"):
        self.root = root
        self.out = root / "out"
        (root / "pillar").mkdir(parents=True)
        (root / "etc").mkdir()
        (root / "etc" / "minion").write_text(yaml.safe_dump({
            "id": "monitor1", "file_client": "local", "file_roots": {"base": [str(file_root)]},
            "pillar_roots": {"base": [str(root / "pillar")]}, "cachedir": str(root / "cache"),
            "pki_dir": str(root / "pki"), "sock_dir": str(root / "sock"), "log_file": str(root / "minion.log"),
        }))
        (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - monitoring\n")

    def pillar(self, monitoring: dict[str, Any], mine_functions: dict[str, Any] | None = None) -> None:
        prometheus = {"config": str(self.out / "prometheus.yml"), "rules_dir": str(self.out / "rules"),
                      "consoles_dir": str(self.out / "consoles"),
                      "targets_file": str(self.out / "file_sd" / "proxytier.json"), "manage_config": True}
        data: dict[str, Any] = {"proxytier_monitoring": {**monitoring, "prometheus": prometheus}}
        if mine_functions:
            data["mine_functions"] = mine_functions
        (self.root / "pillar" / "monitoring.sls").write_text(yaml.safe_dump(data))

    def call(self, *args: str) -> Any:
        result = subprocess.run([str(SALT_CALL), "-c", str(self.root / "etc"), "--local", "--out=json", *args],
                                capture_output=True, text=True, timeout=180)
        try:
            return json.loads(result.stdout)["local"]
        except ValueError as error:
            raise AssertionError(f"salt-call {' '.join(args)}: {result.stdout}{result.stderr}") from error

    def apply_files(self) -> dict[str, Any]:
        # the states read the proxytier.monitoring execution module (salt/_modules over salt/_utils)
        self.call("saltutil.sync_modules")
        self.call("saltutil.sync_utils")
        applied = {}
        for state_id in FILE_STATES:
            states = self.call("state.sls_id", state_id, "proxytier.monitoring")
            assert isinstance(states, dict), states
            applied.update({v["__id__"]: v for v in states.values()})
        return applied

    def targets(self) -> Any:
        return json.loads((self.out / "file_sd" / "proxytier.json").read_text())


def test_targets_from_the_mine(tmp_path: Path) -> None:
    minion = Minion(tmp_path)
    # the mine alias returns this minion's addresses, primary first, like network.ip_addrs
    minion.pillar({"target": "monitor*", "port": 9999},
                  {"proxytier_address": [{"mine_function": "test.outputter"}, ["198.18.0.21", "198.18.0.121"]]})
    minion.call("mine.update")
    states = minion.apply_files()
    assert all(s["result"] for s in states.values()), states
    assert minion.targets() == [
        {"targets": ["198.18.0.21:9999"], "labels": {"job": "proxytier", "instance": "monitor1"}},
    ]


def test_explicit_nodes_rules_and_config(tmp_path: Path, promtool: str) -> None:
    minion = Minion(tmp_path)
    minion.pillar({"job": "proxytier-eu", "nodes": [{"id": "proxy1", "address": "198.18.0.11"},
                                                    {"id": "proxy2", "address": "::1"}]})
    states = minion.apply_files()
    assert all(s["result"] for s in states.values()), states
    assert minion.targets() == [
        {"targets": ["198.18.0.11:8408"], "labels": {"job": "proxytier-eu", "instance": "proxy1"}},
        {"targets": ["[::1]:8408"], "labels": {"job": "proxytier-eu", "instance": "proxy2"}},
    ]
    assert (minion.out / "rules" / "proxytier.rules.yml").read_text() == RULES_FILE.read_text()
    page = DASHBOARDS / "consoles" / "proxytier-runbook.html"
    assert (minion.out / "consoles" / "proxytier-runbook.html").read_text() == page.read_text()
    config = minion.out / "prometheus.yml"
    assert yaml.safe_load(config.read_text())["scrape_configs"][1]["job_name"] == "proxytier-eu"
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "31 rules found" in checked.stdout


def test_runbook_url_from_the_pillar(tmp_path: Path) -> None:
    minion = Minion(tmp_path)
    minion.pillar({"nodes": [], "runbook_url": "https://wiki.example.com/ops/proxytier.html"})
    states = minion.apply_files()
    assert all(s["result"] for s in states.values()), states
    installed = yaml.safe_load((minion.out / "rules" / "proxytier.rules.yml").read_text())
    urls = [r["annotations"]["runbook_url"] for g in installed["groups"] for r in g["rules"] if "alert" in r]
    assert len(urls) == 24
    assert urls[0] == "https://wiki.example.com/ops/proxytier.html#proxytiervrrpsplitbrain"
    assert all(url.startswith("https://wiki.example.com/ops/proxytier.html#proxytier") for url in urls)


def test_broken_rules_never_replace_the_live_file(tmp_path: Path) -> None:
    file_root = tmp_path / "salt"
    shutil.copytree(REPO / "salt", file_root, symlinks=False)
    broken = file_root / "proxytier" / "templates" / "monitoring" / "proxytier.rules.yml.jinja"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(up\n")
    minion = Minion(tmp_path / "minion", file_root)
    minion.pillar({"nodes": []})
    live = minion.out / "rules" / "proxytier.rules.yml"
    live.parent.mkdir(parents=True)
    live.write_text("groups: []\n")
    states = minion.apply_files()
    rules = states["proxytier-monitoring-rules"]
    assert rules["result"] is False
    assert "could not parse expression" in rules["comment"]
    assert live.read_text() == "groups: []\n"
    assert states["proxytier-monitoring-prometheus-config"]["result"] is False  # requires the rules


def test_a_bad_pillar_key_fails_with_its_name(tmp_path: Path) -> None:
    minion = Minion(tmp_path)
    minion.pillar({"job": "web"})
    minion.call("saltutil.sync_modules")
    minion.call("saltutil.sync_utils")
    result = minion.call("state.sls_id", "proxytier-monitoring-targets", "proxytier.monitoring")
    text = json.dumps(result)
    assert "proxytier_monitoring:job = 'web': the rules select job=~" in text, text
    assert "Traceback" not in text
    assert not (minion.out / "file_sd" / "proxytier.json").exists()
