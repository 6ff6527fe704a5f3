"""proxytier.model and proxytier.params with cache=True (what map.jinja asks for), as the execution module
(salt/_modules/proxytier.py) runs them under Salt: built once per state run however many SLS files import
map.jinja, rebuilt for a new run or other inputs, never cached outside a state run; the CLI and the runtime
functions (cache=False, the default) always build afresh.

A state run is a ``salt.state.State``: its ``__context__`` is a dict of its own (``dict(__context__)`` of
the minion's) holding the run's file client under "fileclient" (salt/state.py, ``State.__init__``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jinja2
import proxytier_model
import pytest
import yaml
from formula import DEBIAN_12, FORMULA, ROOT, example_pillar
from proxytier_params import layer_files

MEMBERS_FROM_MINE = {
    "interface": "host0",
    "members_from_mine": {"target": "proxy*", "allow": {"ids": ["proxy[0-9]*"], "networks": ["198.18.0.0/24"]}},
    "vip_pool": {"addresses": ["198.18.0.101/24", "198.18.0.102/24", "198.18.0.103/24"], "vrid_base": 51},
    "sites": [{"name": "app", "port": 80, "nginx_port": 8080, "backends": ["198.18.0.21:8080"]}],
}


class Minion:
    """The module loaded as Salt loads it, with what Salt injects: pillar, grains, opts, __context__ and the
    functions it calls (cp.get_file_str from the checkout's formula, pillar.get, mine.get), each call counted."""

    def __init__(self, pillar: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        spec = importlib.util.spec_from_file_location("proxytier_run_cache_module",
                                                      ROOT / "salt" / "_modules" / "proxytier.py")
        assert spec and spec.loader
        self.mod = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.calls = {"build_model": 0, "cp.get_file_str": 0, "mine.get": 0}
        self.record = tmp_path / "nginx-ports.json"
        self.set_pillar(pillar)
        mod.__grains__ = DEBIAN_12
        mod.__opts__ = {"id": "proxy1"}
        mod.__context__ = {}
        mod.__salt__ = {"cp.get_file_str": self._get_file_str, "pillar.get": self._pillar_get,
                        "mine.get": self._mine_get}
        real = proxytier_model.build_model

        def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls["build_model"] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(proxytier_model, "build_model", counted)

    def set_pillar(self, pillar: dict[str, Any]) -> None:
        # the record where the parameters put it (a node's /var/lib/proxytier/nginx-ports.json)
        self.mod.__pillar__ = {"proxytier": {**pillar, "lookup": {"nginx_ports_file": str(self.record)}}}

    def state_run(self) -> dict[str, Any]:
        """A new state run: the minion's context copied, the run's own file client in it."""
        self.mod.__context__ = {**self.mod.__context__, "fileclient": object()}
        return self.mod.__context__

    def _get_file_str(self, url: str) -> str | None:
        self.calls["cp.get_file_str"] += 1
        path = FORMULA / url.removeprefix("salt://proxytier/")
        return path.read_text() if path.is_file() else None

    def _pillar_get(self, key: str, default: Any = None) -> Any:
        value: Any = self.mod.__pillar__
        for part in key.split(":"):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    def _mine_get(self, target: str, function: str, tgt_type: str = "glob") -> dict[str, list[str]]:
        self.calls["mine.get"] += 1
        return {"proxy1": ["198.18.0.11"], "proxy2": ["198.18.0.12"], "proxy3": ["198.18.0.13"]}

    def map_jinja(self) -> dict[str, Any]:
        """What map.jinja sets `pt` to, with `salt` the functions of this module (map.jinja rendered by Jinja
        as an SLS of the formula imports it: tpldir "proxytier")."""
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(FORMULA.parent)), undefined=jinja2.StrictUndefined)
        sls = env.from_string('{%- from "proxytier/map.jinja" import pt with context %}{{ pt | tojson }}')
        salt = {"proxytier.params": self.mod.params, "proxytier.model": self.mod.model}
        return json.loads(sls.render(salt=salt, tpldir="proxytier"))


SLS_FILES = 11  # the SLS files of `state.apply proxytier` that import map.jinja
FETCHES = len(layer_files(DEBIAN_12))  # files one proxytier.params asks the master for (those that exist or not)


def test_one_state_run_builds_the_model_and_fetches_the_parameters_once(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    fresh = minion.mod.model()  # what the CLI sees: built now, nothing cached
    assert minion.calls == {"build_model": 1, "cp.get_file_str": FETCHES, "mine.get": 1}
    minion.state_run()
    models = [minion.map_jinja() for _ in range(SLS_FILES)]
    assert minion.calls == {"build_model": 2, "cp.get_file_str": 2 * FETCHES, "mine.get": 2}
    assert all(m == fresh for m in models)
    assert json.dumps(models[0], sort_keys=True) == json.dumps(fresh, sort_keys=True)


def test_each_caller_gets_its_own_copy(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    minion.state_run()

    def model() -> dict[str, Any]:  # the module's answer itself, not map.jinja's JSON of it
        return minion.mod.model(params=minion.mod.params(cache=True), cache=True)

    for _ in range(3):  # the one that built it, then copies
        changed = model()
        changed["vips"].clear()
        changed["params"]["services"]["haproxy"] = "changed"
    last = model()
    assert last["vips"] and last["params"]["services"]["haproxy"] == "haproxy"
    assert last == minion.mod.model() and minion.calls["build_model"] == 2


def test_a_new_state_run_builds_again(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    minion.state_run()
    minion.map_jinja()
    # the next run: Salt copies the minion's context (the daemon's threads share one when multiprocessing is
    # off); even a copy that still held this run's cache is not used by a run with another file client
    minion.state_run()
    minion.map_jinja()
    minion.map_jinja()
    assert minion.calls["build_model"] == 2 and minion.calls["mine.get"] == 2


def test_a_state_nested_in_the_run_leaves_the_runs_cache_alone(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    outer = minion.state_run()
    minion.map_jinja()
    minion.state_run()  # state.sls called by a state of the run: dict(__context__), its own file client
    minion.map_jinja()
    minion.mod.__context__ = outer
    minion.map_jinja()
    assert minion.calls["build_model"] == 2


def test_another_pillar_builds_again(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    minion.state_run()
    assert minion.map_jinja()["vrrp"]["instances"][0]["vrid"] == 51
    minion.set_pillar({**MEMBERS_FROM_MINE, "vip_pool": {**MEMBERS_FROM_MINE["vip_pool"], "vrid_base": 61}})
    assert minion.map_jinja()["vrrp"]["instances"][0]["vrid"] == 61
    assert minion.calls["build_model"] == 2


def test_a_changed_nginx_ports_record_builds_again(tmp_path, monkeypatch) -> None:
    minion = Minion(example_pillar(), tmp_path, monkeypatch)
    minion.state_run()
    assert minion.map_jinja()["nginx"]["sites"][0]["listen_also"] == []
    minion.record.write_text(json.dumps({"app": [8081]}))
    assert minion.map_jinja()["nginx"]["sites"][0]["listen_also"] == ["198.18.0.11:8081"]
    assert minion.calls["build_model"] == 2


def test_nothing_is_cached_outside_a_state_run_or_without_cache(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    minion.map_jinja()
    minion.map_jinja()  # the CLI or a daemon job: no state run, so no cache even when asked
    assert minion.calls["build_model"] == 2 and minion.mod.__context__ == {}
    minion.state_run()
    minion.mod.model()
    minion.mod.model()  # member_state, verify, haproxy_reloaded... within a run: always fresh
    assert minion.calls["build_model"] == 4 and minion.calls["mine.get"] == 4


def test_tls_files_of_one_run_fetch_the_parameters_once(tmp_path, monkeypatch) -> None:
    vhosts = yaml.safe_load((ROOT / "tests" / "pillar" / "vhosts.sls").read_text())["proxytier"]
    minion = Minion(vhosts, tmp_path, monkeypatch)
    paths = [f["path"] for f in minion.mod.model()["tls_files"]]
    assert len(paths) > 1
    outside = [minion.mod.tls_pem(path) for path in paths]  # outside a state run: fetched for each file
    assert minion.calls["cp.get_file_str"] == FETCHES * (1 + len(paths))
    minion.state_run()
    minion.map_jinja()
    fetched = minion.calls["cp.get_file_str"]
    assert [minion.mod.tls_pem(path) for path in paths] == outside  # proxytier.tls_file, once per TLS file
    assert minion.calls["cp.get_file_str"] == fetched == FETCHES * (2 + len(paths))


def test_templates_take_the_model_from_map_jinja_and_no_state_carries_it() -> None:
    """A template that reads the model imports map.jinja itself (the run's cached model), and no SLS passes
    the model in a state's context: a copy there is dumped into the SLS as YAML and loaded again for each such
    state (~1.5 s per state at 200 TLS sites x 10 backends)."""
    importer = '{%- from tplroot ~ "/map.jinja" import pt with context -%}'
    templates = sorted((FORMULA / "templates").rglob("*.jinja"))
    readers = [t for t in templates if "pt." in t.read_text()]
    assert len(readers) >= 10
    assert [t.name for t in readers if not t.read_text().startswith(importer)] == []
    passing = [f"{s.relative_to(FORMULA)}:{n}" for s in sorted(FORMULA.rglob("*.sls"))
               for n, line in enumerate(s.read_text().splitlines(), 1) if line.strip().startswith("pt:")]
    assert passing == []


def test_a_template_importing_map_jinja_gets_the_runs_model_without_building_it_again(tmp_path, monkeypatch) -> None:
    minion = Minion(MEMBERS_FROM_MINE, tmp_path, monkeypatch)
    minion.state_run()
    model = minion.map_jinja()  # the first SLS of the run builds it
    built = minion.calls["build_model"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(FORMULA.parent)), undefined=jinja2.StrictUndefined)
    template = env.from_string((FORMULA / "templates" / "exporter" / "tmpfiles.conf.jinja").read_text())
    salt = {"proxytier.params": minion.mod.params, "proxytier.model": minion.mod.model}
    text = template.render(salt=salt, tplroot="proxytier")  # what file.managed renders: its state's context
    assert f"p {model['exporter']['fifo']} 0600" in text
    assert minion.calls["build_model"] == built
