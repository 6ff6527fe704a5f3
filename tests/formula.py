"""Helpers shared by the formula tests: load the model module and render the
templates the way Salt does (plain Jinja, the model passed as `pt`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
FORMULA = ROOT / "salt" / "proxytier"
TEMPLATES = FORMULA / "templates"


def _load_module():
    spec = importlib.util.spec_from_file_location("proxytier_model", ROOT / "salt" / "_modules" / "proxytier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["proxytier_model"] = module
    spec.loader.exec_module(module)
    return module


model_module = _load_module()
build_model = model_module.build_model
ProxytierError = model_module.ProxytierError


def os_params(**overrides: Any) -> dict[str, Any]:
    """The formula's Debian parameters (defaults.yaml + os_family/Debian.yaml), with overrides."""
    params = yaml.safe_load((FORMULA / "parameters" / "defaults.yaml").read_text())["values"]
    params.update(yaml.safe_load((FORMULA / "parameters" / "os_family" / "Debian.yaml").read_text())["values"] or {})
    params.update(overrides)
    return params


def example_pillar() -> dict[str, Any]:
    """The example pillar served to the lab (pillar/proxytier.sls)."""
    return yaml.safe_load((ROOT / "pillar" / "proxytier.sls").read_text())["proxytier"]


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render(template: str, pt: dict[str, Any]) -> str:
    return _env.get_template(template).render(pt=pt)
