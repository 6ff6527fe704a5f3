"""The model's whole output for every example and kitchen pillar and every node, compared with
golden JSON files (tests/golden/model/<pillar>/<node>.json), in key order, so that a change of the model's code
that is meant to change nothing shows as an empty diff of those files.

After an intended change of the model's output, regenerate them with
`PROXYTIER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_model_golden.py` and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import ROOT, build_model, os_params

GOLDEN = ROOT / "tests" / "golden" / "model"
PILLARS = {
    "lab": ROOT / "pillar" / "proxytier.sls",
    "pillar-example": ROOT / "pillar.example",
    **{f"kitchen-{p.stem}": p for p in sorted((ROOT / "tests" / "kitchen" / "pillar").glob("*.sls"))},
}


def _pillar(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["proxytier"]


def _mine_variant() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The lab pillar with members from the mine instead of a list, within an allow-list: the mine
    answers each node's addresses (a VIP it holds and a link-local one among them, which are
    skipped), and two minions the allow-list keeps out (an id not allowed, an address outside the
    allowed network), which are reported in members_ignored. Returns (pillar, mine, member ids)."""
    p = _pillar(PILLARS["lab"])
    members = p.pop("members")
    p["members_from_mine"] = {"target": "proxy*", "allow": {"ids": ["proxy[0-9]*"], "networks": ["198.18.0.0/24"]}}
    mine = {m["id"]: ["fe80::1", "198.18.0.101", m["address"]] for m in reversed(members)}
    mine["proxy-rogue"] = ["198.18.0.66"]
    mine["proxy4"] = ["198.18.1.14"]
    return p, mine, [m["id"] for m in reversed(members)]


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None, str]]:
    out = []
    for name, path in PILLARS.items():
        p = _pillar(path)
        out += [(name, p, None, m["id"]) for m in p["members"]]
    p, mine, nodes = _mine_variant()
    out += [("lab-mine", p, mine, node) for node in nodes]
    return out


def _dump(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=1) + "\n"


@pytest.mark.parametrize(("case", "pillar", "mine", "node"), _cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_model_matches_golden(case: str, pillar: dict[str, Any], mine: dict[str, Any] | None, node: str) -> None:
    got = _dump(build_model(pillar, node, mine=mine, params=os_params()))
    path = GOLDEN / case / f"{node}.json"
    if os.environ.get("PROXYTIER_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"{path} is missing: run with PROXYTIER_UPDATE_GOLDEN=1 and review it"
    assert got == path.read_text(), f"the model for {node} of {case} differs from {path}"
