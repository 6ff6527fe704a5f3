"""The mine function proxytier.address (salt/_modules/proxytier.py) over Salt's network functions:
both families, IPv4 first, VIPs and link-local addresses left out, one family on request."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from formula import ROOT, ProxytierError


def module(pillar: dict[str, Any]) -> Any:
    spec = importlib.util.spec_from_file_location("proxytier_salt_module", ROOT / "salt" / "_modules" / "proxytier.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # what Salt injects: the pillar and network.ip_addrs / ip_addrs6 as they answer on a dual-stack node
    # holding its IPv4 VIP and its IPv6 pool VIP (its link-local address listed too, as Salt does)
    mod.__pillar__ = {"proxytier": pillar}
    mod.__salt__ = {
        "network.ip_addrs": lambda interface=None: ["198.18.0.11", "198.18.0.101"],
        "network.ip_addrs6": lambda interface=None: ["fe80::1c2:3ff:fe04:506", "2001:2::11", "2001:2::111"],
    }
    return mod


PILLAR = {"interface": "host0", "vips": [{"address": "198.18.0.101/24", "vrid": 51}],
          "vip_pool": {"addresses": ["198.18.0.111/24"], "addresses6": ["2001:2:0::111/64"], "vrid_base": 61}}


def test_both_families_ipv4_first_without_vips_or_link_local() -> None:
    assert module(PILLAR).address() == ["198.18.0.11", "2001:2::11"]


@pytest.mark.parametrize(("family", "want"), [(4, ["198.18.0.11"]), ("6", ["2001:2::11"])])
def test_one_family_on_request(family: Any, want: list[str]) -> None:
    assert module(PILLAR).address(family=family) == want


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(ProxytierError, match="family 5"):
        module(PILLAR).address(family=5)
