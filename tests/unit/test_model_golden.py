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
    "lab-static": ROOT / "tests" / "pillar" / "lab-static.sls",
    "pillar-example": ROOT / "pillar.example",
    # many sites on ports 80 and 443 by host name, named pools, a path route (fixture certificates valid until 9999)
    "vhosts": ROOT / "tests" / "pillar" / "vhosts.sls",
    # dual stack: members with address6, three IPv4 and three IPv6 VIPs, backends of both families and a name
    "dual-stack": ROOT / "tests" / "pillar" / "dual-stack.sls",
    # vip_mode bgp: every node announces an IPv4 and an IPv6 address to two routers, one node in maintenance
    "bgp": ROOT / "tests" / "pillar" / "bgp.sls",
    **{f"kitchen-{p.stem}": p for p in sorted((ROOT / "tests" / "kitchen" / "pillar").glob("*.sls"))},
}
LAB = ROOT / "pillar" / "proxytier.sls"  # members from the mine, a VIP per member from the pool


def _pillar(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["proxytier"]


def _lab_mine(count: int) -> dict[str, Any]:
    """What the lab's mine answers with `count` nodes up: each node's addresses (a VIP it holds and a
    link-local one among them, which are skipped), listed in reverse, plus two minions the allow-list
    keeps out (an id not allowed, an address outside the allowed network), reported in members_ignored."""
    mine: dict[str, Any] = {f"proxy{i}": ["fe80::1", "198.18.0.101", f"198.18.0.{10 + i}"]
                            for i in range(count, 0, -1)}
    mine["proxy-rogue"] = ["198.18.0.66"]
    mine[f"proxy{count + 1}"] = [f"198.18.1.{11 + count}"]
    return mine


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None, str]]:
    out = []
    for name, path in PILLARS.items():
        p = _pillar(path)
        out += [(name, p, None, m["id"]) for m in p["members"]]
    for count in (3, 2, 4):  # the lab's default size, its seed size, and after a join
        mine = _lab_mine(count)
        out += [(f"lab-{count}-nodes", _pillar(LAB), mine, f"proxy{i}") for i in range(1, count + 1)]
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
