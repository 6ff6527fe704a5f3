"""tls.sls and haproxy.sls rendered by Salt's own Jinja renderer (as the master renders them) for a tier
whose sites share TLS port 443: the crt-list is a 0600 file next to the PEMs, checked by HAProxy
(check-haproxy-crt --list) after every certificate it names is written and before the HAProxy check
of the staged configs and the reload; its state data holds paths and host names, no key material."""

from __future__ import annotations

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
        assert {"file": f"proxytier-tls-{tls_dir}/{site}.pem"} in args["require"]
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
