"""The formula's OS parameters (package, service and path names): ONE layering, used by
map.jinja (through ``proxytier.params``), the model and the tests alike.

Layers, each merged recursively over the previous one (mappings merge key by key; lists and
scalars replace): ``parameters/defaults.yaml``, then ``parameters/os_family/<os_family>.yaml``,
then ``parameters/os/<os>.yaml``, then ``parameters/osfinger/<osfinger>.yaml`` (e.g.
``Debian-13``), each only if it exists, then the pillar's ``proxytier:lookup``. Each file holds
its values under a top-level ``values:`` key, as saltstack-formulas' template-formula does.
Pure Python (PyYAML); files are read through a callable so that Salt (the master's file server)
and the tests (the checkout) use the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml
from proxytier_schema import ProxytierError

#: the grains that pick a layer, in the order the layers apply
LAYER_GRAINS = ("os_family", "os", "osfinger")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: nested mappings key by key, anything else replaced
    (Salt's ``slsutil.merge(strategy="recurse")`` semantics)."""
    out = copy.deepcopy(base)
    for k, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], value)
        else:
            out[k] = copy.deepcopy(value)
    return out


def layer_files(grains: dict[str, Any]) -> list[str]:
    """Parameter files to try, relative to the formula's ``parameters/`` directory."""
    files = ["defaults.yaml"]
    for grain in LAYER_GRAINS:
        value = grains.get(grain)
        if isinstance(value, str) and value and "/" not in value and not value.startswith("."):
            files.append(f"{grain}/{value}.yaml")
    return files


def load_params(
    read: Callable[[str], str | None], grains: dict[str, Any], lookup: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The merged parameters for a node with these grains.

    read: relative path under ``parameters/`` -> the file's text, or None when it does not exist.
    lookup: the pillar's ``proxytier:lookup`` (applied last).
    Raises ProxytierError when defaults.yaml is missing or a file is not a mapping with ``values``.
    """
    merged: dict[str, Any] = {}
    for rel in layer_files(grains):
        text = read(rel)
        if text is None:
            if rel == "defaults.yaml":
                raise ProxytierError(
                    "parameters/defaults.yaml is missing: the proxytier formula is not in the master's file_roots"
                )
            continue
        doc = yaml.safe_load(text) or {}
        values = doc.get("values") if isinstance(doc, dict) else None
        if values is not None and not isinstance(values, dict):
            raise ProxytierError(f"parameters/{rel}: expected a mapping under 'values:'")
        merged = deep_merge(merged, values or {})
    if lookup is not None and not isinstance(lookup, dict):
        raise ProxytierError(f"proxytier:lookup = {lookup!r}: expected a mapping of parameter overrides")
    return deep_merge(merged, lookup or {})
