"""A tier whose VIPs all come from proxytier:vip_pool renders, for every node, configs the real
daemons accept, with one VRRP instance and one HAProxy bind per member's pool VIP; a member that
joins adds exactly its own instance to every node's keepalived.conf and changes no other one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from formula import example_pillar

from .test_render import check, pytestmark, render_node

__all__ = ["pytestmark"]


def pool_pillar(n_members: int) -> dict[str, Any]:
    p = example_pillar()
    p["members"] = [{"id": f"proxy{i}", "address": f"198.18.0.{10 + i}"} for i in range(1, n_members + 1)]
    p["vips"] = []
    p["vip_pool"] = {"addresses": [f"198.18.0.{110 + k}/24" for k in range(1, 6)], "vrid_base": 61}
    p["dns_name"] = "app.example"
    return p


def instances(conf: str) -> dict[str, str]:
    """{instance name: its block} of a rendered keepalived.conf."""
    return dict(re.findall(r"^vrrp_instance (\S+) \{\n(.*?)^\}", conf, re.M | re.S))


def test_pool_tier_renders_and_a_join_adds_only_its_instance(tmp_path: Path) -> None:
    before: dict[str, dict[str, str]] = {}
    for n_members in (3, 4):
        for k in range(1, n_members + 1):
            node = f"proxy{k}"
            model, paths = render_node(pool_pillar(n_members), node, tmp_path)
            assert [r["address"] for r in model["dns"]] == [f"198.18.0.{110 + i}" for i in range(1, n_members + 1)]
            for name, path in paths.items():
                res = check(name, path, model["node"]["address"])
                assert res.returncode == 0, f"{name} rejected {node}'s config:\n{res.stdout}{res.stderr}"
            assert all(f"198.18.0.{110 + i}:80" in paths["haproxy"].read_text() for i in range(1, n_members + 1))
            got = instances(paths["keepalived"].read_text())
            assert sorted(got) == [f"VI_{60 + i}" for i in range(1, n_members + 1)]
            if n_members == 3:
                before[node] = got
            elif node in before:
                # proxy4 joined: its own instance is new; every other one keeps its owner, VRID,
                # address and the relative order of the other members (proxy4 may take a backup
                # place, which shifts the numbers below it: no VIP moves)
                for name, block in before[node].items():
                    assert owner_and_vip(got[name]) == owner_and_vip(block), f"{node} {name} changed"
                    assert [m for m in order(got[name]) if m != "proxy4"] == order(block)


def owner_and_vip(block: str) -> tuple[str, ...]:
    owner = re.search(r"# owner (\S+);", block)
    assert owner
    keep = ("virtual_router_id", "interface", "state")
    return (owner.group(1), *(line.strip() for line in block.splitlines() if line.strip().startswith(keep)),
            re.sub(r"\s+", " ", re.search(r"virtual_ipaddress \{(.*?)\}", block, re.S).group(1)))  # type: ignore[union-attr]


def order(block: str) -> list[str]:
    prios = dict(re.findall(r"(\S+)=(\d+)", block.splitlines()[0]))
    return sorted(prios, key=lambda m: -int(prios[m]))
