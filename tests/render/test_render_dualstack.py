"""Dual stack and IPv6 only: for every node of a dual-stack tier (tests/pillar/dual-stack.sls: three
IPv4 and three IPv6 VIPs on three nodes, backends of both families and by host name) and of an
IPv6-only tier, the real daemons accept the rendered configs (nginx -t, which binds the listen
addresses; haproxy -c; keepalived -t; nft -c), and the configs keep one address family per VRRP
instance, with the node's own address of that family as unicast source and its peers' as peers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import ROOT, render

from .test_render import check, pytestmark, render_node
from .test_render_vip_pool import instances

__all__ = ["pytestmark"]

DUAL_STACK = ROOT / "tests" / "pillar" / "dual-stack.sls"
NODES = ["proxy1", "proxy2", "proxy3"]
# the host-name backend of the dual-stack pillar, resolved on the node as DNS would (both families)
HOSTS = "127.0.0.1 localhost\n198.18.0.23 backend3.example\n2001:2::23 backend3.example\n"


def dual_stack_pillar() -> dict[str, Any]:
    return yaml.safe_load(DUAL_STACK.read_text())["proxytier"]


def ipv6_only_pillar() -> dict[str, Any]:
    """Three IPv6-only nodes, three IPv6 VIPs, IPv6 backends (one site in X-Forwarded-For, one in PROXY v2)."""
    p = dual_stack_pillar()
    p["members"] = [{"id": f"proxy{i}", "address": f"2001:2::1{i}"} for i in (1, 2, 3)]
    p["vips"] = [v for v in p["vips"] if ":" in v["address"]]
    p["sites"][0]["backends"] = ["[2001:2::21]:8080", "[2001:2::22]:8080"]
    p["sites"][1]["backends"] = ["[2001:2::21]:9000"]
    return p


def unicast(block: str) -> tuple[str, list[str]]:
    """(unicast_src_ip, unicast peers) of one vrrp_instance block."""
    src = re.search(r"unicast_src_ip (\S+)", block)
    peers = re.search(r"unicast_peer \{\n(.*?)\n\s*\}", block, re.S)
    assert src and peers, block
    return src.group(1), peers.group(1).split()


def check_all(model: dict[str, Any], paths: dict[str, Path], tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    node = model["node"]
    for name, path in paths.items():
        res = check(name, path, node["address"], node.get("address6"), hosts)
        assert res.returncode == 0, f"{name} rejected {node['id']}'s config:\n{res.stdout}{res.stderr}"
    text = render("filter.nft.jinja", model)
    (tmp_path / "filter.nft").write_text(text)
    res = subprocess.run(["unshare", "--net", "nft", "-c", "-f", str(tmp_path / "filter.nft")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("node", NODES)
def test_dual_stack_tier_every_node(node: str, tmp_path: Path) -> None:
    model, paths = render_node(dual_stack_pillar(), node, tmp_path)
    check_all(model, paths, tmp_path)
    me = model["node"]
    others = [m for m in model["members"] if m["id"] != node]
    keepalived = instances(paths["keepalived"].read_text())
    assert sorted(keepalived) == ["VI6_51", "VI6_52", "VI6_53", "VI_51", "VI_52", "VI_53"]
    for name, block in keepalived.items():
        if name.startswith("VI6_"):
            # deprecated, so never the source of the node's own connections (found in the lab: nginx
            # reached an IPv6 backend from the VIP, a connection the next VIP move would break)
            assert "native_ipv6" in block and re.search(r"2001:2::10[1-3]/64 dev host0 preferred_lft 0\n", block)
            assert unicast(block) == (me["address6"], [m["address6"] for m in others])
        else:
            assert "native_ipv6" not in block and re.search(r"198\.18\.0\.10[1-3]/24 dev host0\n", block)
            assert unicast(block) == (me["address"], [m["address"] for m in others])
    # homes count per family: each node is the preferred MASTER of one VIP of each family
    owned = sorted(i["address"] for i in model["vrrp"]["instances"] if i["owner"] == node)
    n = node[-1]
    assert owned == [f"198.18.0.10{n}", f"2001:2::10{n}"]
    haproxy = paths["haproxy"].read_text()
    for port in (80, 8000):
        for k in (1, 2, 3):
            assert f"bind 198.18.0.10{k}:{port}\n" in haproxy and f"bind [2001:2::10{k}]:{port}\n" in haproxy
    nginx = paths["nginx"].read_text()
    assert f"listen {me['address']}:8080;" in nginx and f"listen [{me['address6']}]:8080;" in nginx
    assert f"listen [{me['address6']}]:8081 proxy_protocol;" in nginx
    for trusted in [*(m["address6"] for m in model["members"]), "2001:2::101", "198.18.0.101"]:
        assert f"set_real_ip_from {trusted};" in nginx
    assert "server [2001:2::22]:8080 " in nginx and "server backend3.example:8080 " in nginx
    assert [r["type"] for r in model["dns"]] == ["A"] * 3 + ["AAAA"] * 3


@pytest.mark.parametrize("node", NODES)
def test_ipv6_only_tier_every_node(node: str, tmp_path: Path) -> None:
    model, paths = render_node(ipv6_only_pillar(), node, tmp_path)
    check_all(model, paths, tmp_path)
    keepalived = instances(paths["keepalived"].read_text())
    assert sorted(keepalived) == ["VI6_51", "VI6_52", "VI6_53"]
    assert all(re.search(r"2001:2::10[1-3]/64 dev host0 preferred_lft 0\n", b) for b in keepalived.values())
    others = [m["address"] for m in model["members"] if m["id"] != node]
    assert all(unicast(b) == (model["node"]["address"], others) for b in keepalived.values())
    assert f"listen [2001:2::1{node[-1]}]:8080;" in paths["nginx"].read_text()
    assert "bind [2001:2::101]:80\n" in paths["haproxy"].read_text()
    assert "backend be_app" in paths["haproxy"].read_text()
    assert f"server {node} [2001:2::1{node[-1]}]:8080" in paths["haproxy"].read_text()


def test_keepalived_refuses_an_ipv6_vip_among_ipv4_unicast_peers(tmp_path: Path) -> None:
    """What the model now refuses (test_model_dualstack) is what keepalived refuses too: the old
    rendering, an IPv6 VIP in an instance whose unicast source and peers are IPv4."""
    _model, paths = render_node(dual_stack_pillar(), "proxy1", tmp_path)
    text = paths["keepalived"].read_text()
    broken = re.sub(r"unicast_src_ip 2001:2::11", "unicast_src_ip 198.18.0.11", text)
    assert broken != text
    paths["keepalived"].write_text(broken)
    res = check("keepalived", paths["keepalived"], "198.18.0.11", "2001:2::11")
    assert res.returncode != 0, res.stdout + res.stderr
    assert "VRRP instance[VI6_51] and src address[198.18.0.11] MUST be of the same family" in res.stderr

