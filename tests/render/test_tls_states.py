"""tls.sls and haproxy.sls rendered by Salt's own Jinja renderer (as the master renders them) for a tier
whose sites share TLS port 443: the crt-list is a 0600 file next to the PEMs, checked by HAProxy
(check-haproxy-crt --list) after every certificate it names is written and before the HAProxy check
of the staged configs and the reload; its state data holds paths and host names, no key material."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import salt.config
import salt.utils.templates
import yaml
from formula import FORMULA, ROOT, build_model, os_params

VHOSTS = ROOT / "tests" / "pillar" / "vhosts.sls"


def render_sls(name: str, model: dict[str, Any], functions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SLS `name` rendered for `model`, as YAML data; `functions`: the execution functions it calls
    (``salt["proxytier.x"]``), by name."""
    opts = salt.config.minion_config(None)
    text = (FORMULA / f"{name}.sls").read_text()
    # map.jinja asks the execution module for the model: answer with the one built here
    text = text.replace('{%- from tplroot ~ "/map.jinja" import pt with context %}', "")
    out = salt.utils.templates.render_jinja_tmpl(
        text, {"salt": functions or {}, "pillar": {}, "grains": {}, "opts": opts, "saltenv": "base",
               "sls": f"proxytier.{name}", "tpldir": "proxytier", "pt": model},
    )
    return yaml.safe_load(out)


def _args(state: dict[str, Any]) -> dict[str, Any]:
    [(_fun, items)] = state.items()
    args: dict[str, Any] = {}
    for item in items:
        args.update(item)
    return args


def test_the_crt_list_is_written_after_its_certificates_and_checked_by_haproxy() -> None:
    model = build_model(yaml.safe_load(VHOSTS.read_text())["proxytier"], "proxy1", params=os_params())
    tls_dir = model["params"]["tls_dir"]
    states = render_sls("tls", model)
    crt_list = f"{tls_dir}/port443.crt-list"
    args = _args(states[f"proxytier-tls-{crt_list}"])
    assert args["name"] == crt_list and args["mode"] == "0600"
    assert args["source"] == "salt://proxytier/templates/crt-list.jinja"
    assert args["check_cmd"].endswith("/check-haproxy-crt --list")
    for site in ("www", "shop", "api"):
        assert {"proxytier": f"proxytier-tls-{tls_dir}/{site}.pem"} in args["require"]
    assert args["require_in"] == [{"test": "proxytier-tls-files"}]
    assert "PRIVATE KEY" not in str(states)
    haproxy = render_sls("haproxy", model)
    watch = _args(haproxy["proxytier-haproxy-service"])["watch"]
    assert {"file": f"proxytier-tls-{crt_list}"} in watch


def test_no_crt_list_state_without_a_shared_tls_port() -> None:
    model = build_model(yaml.safe_load((ROOT / "tests" / "pillar" / "lab-static.sls").read_text())["proxytier"],
                        "proxy1", params=os_params())
    assert not any(sid.endswith(".crt-list") for sid in render_sls("tls", model))


def test_the_crt_list_template_renders_the_models_lines(tmp_path: Path) -> None:
    from formula import render

    model = build_model(yaml.safe_load(VHOSTS.read_text())["proxytier"], "proxy1", params=os_params())
    [c] = model["crt_lists"]
    lines = [line for line in render("crt-list.jinja", model, crt_list=c).splitlines() if not line.startswith("#")]
    assert lines == c["lines"]


def test_each_certificate_is_a_proxytier_tls_file_state_checked_by_haproxy_and_watched_by_its_reload() -> None:
    model = build_model(yaml.safe_load(VHOSTS.read_text())["proxytier"], "proxy1", params=os_params())
    states = render_sls("tls", model)
    paths = [f["path"] for f in model["tls_files"]]
    assert len(paths) == 3
    watch = _args(render_sls("haproxy", model)["proxytier-haproxy-service"])["watch"]
    for path in paths:
        [(fun, _items)] = states[f"proxytier-tls-{path}"].items()
        args = _args(states[f"proxytier-tls-{path}"])
        assert fun == "proxytier.tls_file"
        assert args["name"] == path and args["mode"] == "0600" and args["user"] == args["group"] == "root"
        assert args["check"].endswith("/check-haproxy-crt") and "check_cmd" not in args
        assert {"proxytier": f"proxytier-tls-{path}"} in watch
    assert "PRIVATE KEY" not in str(states)


def _state_module(salt: dict[str, Any], states: dict[str, Any]) -> Any:
    """salt/_states/proxytier.py loaded with these stand-ins for Salt's __salt__ and __states__."""
    spec = importlib.util.spec_from_file_location("proxytier_states", ROOT / "salt" / "_states" / "proxytier.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.__salt__, mod.__states__ = salt, states
    return mod


def test_tls_file_hands_the_pem_to_file_managed_in_process_with_show_changes_off() -> None:
    calls: list[dict[str, Any]] = []

    def managed(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"name": kwargs["name"], "result": True, "changes": {"diff": "<show_changes=False>"}, "comment": ""}

    mod = _state_module({"proxytier.tls_pem": lambda path: f"PEM of {path}\n"}, {"file.managed": managed})
    ret = mod.tls_file("/etc/haproxy/proxytier-tls/www.pem", check="/check www", mode="0600")
    assert ret["result"] is True
    path = "/etc/haproxy/proxytier-tls/www.pem"
    assert calls == [{"name": path, "contents": f"PEM of {path}\n", "user": "root", "group": "root",
                      "mode": "0600", "show_changes": False, "check_cmd": "/check www"}]


def test_tls_file_for_a_path_no_site_writes_fails_and_writes_nothing() -> None:
    def pem(path: str) -> str:
        raise ValueError(f"{path}: no TLS file of this node's model is written there")

    def managed(**kwargs: Any) -> dict[str, Any]:
        raise AssertionError("file.managed must not run")

    ret = _state_module({"proxytier.tls_pem": pem}, {"file.managed": managed}).tls_file("/tmp/nobody.pem")
    assert ret["result"] is False and ret["changes"] == {}
    assert "/tmp/nobody.pem: no TLS file of this node's model is written there" in ret["comment"]
