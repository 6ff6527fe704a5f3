"""Helpers shared by the formula tests: load the model module and render the
templates the way Salt does (plain Jinja, the model passed as `pt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml
from proxytier_model import build_model
from proxytier_params import load_params
from proxytier_schema import ProxytierError

ROOT = Path(__file__).resolve().parent.parent
FORMULA = ROOT / "salt" / "proxytier"
TEMPLATES = FORMULA / "templates"

__all__ = [
    "FORMULA", "HOST_CHECK_USER", "ROOT", "STATIC_PILLAR", "ProxytierError", "build_model", "example_pillar",
    "gate_module", "os_params", "render",
]

# keepalived -t refuses a script_user that does not exist: configs checked on this host (not a
# node, where the formula creates the check user first) run the check script as "nobody"
HOST_CHECK_USER = {"check_user": "nobody"}

DEBIAN_12 = {"os_family": "Debian", "os": "Debian", "osfinger": "Debian-12"}


def read_parameters(rel: str) -> str | None:
    """A file under the formula's parameters/ directory, as the master would serve it."""
    path = FORMULA / "parameters" / rel
    return path.read_text() if path.is_file() else None


def os_params(grains: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The formula's parameters for a node with these grains (default Debian 12), layered as on a
    minion (proxytier_params.load_params), with top-level overrides."""
    return {**load_params(read_parameters, grains or DEBIAN_12), **overrides}


STATIC_PILLAR = ROOT / "tests" / "pillar" / "lab-static.sls"


def example_pillar() -> dict[str, Any]:
    """The lab's tier with explicit member and VIP lists (tests/pillar/lab-static.sls): proxy1..proxy3 at
    198.18.0.11..13, VIPs 198.18.0.101..103 (VRIDs 51..53), one site on port 80 over three backends."""
    return yaml.safe_load(STATIC_PILLAR.read_text())["proxytier"]


_env = jinja2.Environment(
    # templates by their name under templates/; what they import (proxytier/map.jinja) from salt/
    loader=jinja2.FileSystemLoader([str(TEMPLATES), str(ROOT / "salt")]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render(template: str, pt: dict[str, Any], **context: Any) -> str:
    """A template rendered as its file state renders it, with the model `pt` (and any other context its
    state passes): a template that imports map.jinja gets `pt` from it, through stand-ins for
    proxytier.params and proxytier.model (with any other execution functions given as `salt`)."""
    salt = {
        "proxytier.params": lambda tplroot="proxytier", cache=False: {},
        "proxytier.model": lambda params=None, cache=False: pt,
        **context.pop("salt", {}),
    }
    return _env.get_template(template).render(pt=pt, tplroot="proxytier", salt=salt, **context)


def gate_module() -> Any:
    """The BGP health gate (files/proxytier_bgp_gate.py, a script, not a package) loaded as a module, fresh
    each call (tests patch its functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("proxytier_bgp_gate", FORMULA / "files" / "proxytier_bgp_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
