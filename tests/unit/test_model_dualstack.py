"""Dual stack: IPv6 VIPs, members and backends with what IPv4 has (one address family per VRRP
instance, per-family unicast peers and VRIDs, homes counted per family, pool VIPs with IPv6
twins), and one clear error, naming the key, the value and the fix, for each mixed-family
mistake."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from formula import ROOT, ProxytierError, build_model, os_params, render

DUAL = yaml.safe_load((ROOT / "tests" / "pillar" / "dual-stack.sls").read_text())["proxytier"]


def dual(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(DUAL)
    p.update(changes)
    return p


def error(p: dict[str, Any], node: str = "proxy1", mine: dict[str, Any] | None = None) -> str:
    with pytest.raises(ProxytierError) as exc:
        build_model(p, node, mine=mine)
    return str(exc.value)


def v4_members() -> list[dict[str, str]]:
    return [{"id": m["id"], "address": m["address"]} for m in DUAL["members"]]


def v6_vips() -> list[dict[str, Any]]:
    return [v for v in DUAL["vips"] if ":" in v["address"]]


# --- the mixed-family mistakes, each one error naming the key path, the value and the fix ----------

MIXED = [
    # an IPv6 VIP, a member without an IPv6 address
    (lambda: dual(members=[*DUAL["members"][:2], v4_members()[2]]),
     "proxytier:members:2:address6 = None: proxytier:vips:3:address (2001:2::101/64) is IPv6",
     "set proxy3's address6 to its IPv6 address"),
    # an IPv6 VIP, no member with an IPv6 address at all
    (lambda: dual(members=v4_members()),
     "proxytier:members:0:address6 = None: proxytier:vips:3:address (2001:2::101/64) is IPv6",
     "or remove the IPv6 VIPs"),
    # an IPv4 VIP among IPv6-only members
    (lambda: dual(members=[{"id": f"proxy{i}", "address": f"2001:2::1{i}"} for i in (1, 2, 3)]),
     "proxytier:members:0:address = '2001:2::11': proxytier:vips:0:address (198.18.0.101/24) is IPv4",
     "give proxy1 an IPv4 address (its IPv6 one then goes in address6)"),
    # members' addresses of two families (the unicast peer set of either family would mix them)
    (lambda: dual(members=[*DUAL["members"][:2], {"id": "proxy3", "address": "2001:2::13"}], vips=v6_vips()),
     "proxytier:members:2:address = '2001:2::13': every member's address is of one family (proxy1's is IPv4",
     "give proxy3 an IPv4 address (an IPv6 address beside an IPv4 one goes in address6)"),
    # address6 that is not IPv6
    (lambda: dual(members=[{**DUAL["members"][0], "address6": "198.18.0.31"}, *DUAL["members"][1:]]),
     "proxytier:members:0:address6 = '198.18.0.31': address6 is the member's IPv6 address",
     "like 2001:2::11"),
    # a link-local address: no unicast source keepalived can use
    (lambda: dual(members=[{**DUAL["members"][0], "address6": "fe80::11"}, *DUAL["members"][1:]]),
     "proxytier:members:0:address6 = 'fe80::11': a link-local address (fe80::/10)", "global IPv6 address"),
    (lambda: dual(members=[{"id": "proxy1", "address": "fe80::11"}]),
     "proxytier:members:0:address = 'fe80::11': a link-local address", ""),
    # address6 beside an IPv6 address
    (lambda: dual(members=[{"id": "proxy1", "address": "2001:2::11", "address6": "2001:2::31"}]),
     "proxytier:members:0:address6 = '2001:2::31': address is already IPv6 (2001:2::11)",
     "remove address6"),
    # two members sharing an IPv6 address
    (lambda: dual(members=[*DUAL["members"][:2], {**DUAL["members"][2], "address6": "2001:2:0::12"}]),
     "proxytier:members:2:address6 = '2001:2::12': two members cannot share an address", ""),
    # a member's IPv6 address is a VIP
    (lambda: dual(members=[*DUAL["members"][:2], {**DUAL["members"][2], "address6": "2001:2::103"}]),
     "proxytier:members = '2001:2::103': member proxy3 uses a VIP as its own address", ""),
    # IPv6 VIPs with VRRPv2
    (lambda: dual(vrrp={"version": 2, "advert_interval": 1}),
     "proxytier:vrrp:version = 2: proxytier:vips:3:address (2001:2::101/64) is IPv6, and VRRP for IPv6 is "
     "version 3 only", "set version 3"),
    # IPv6 VIPs with multicast adverts
    (lambda: dual(vrrp={"unicast": False}),
     "proxytier:vrrp:unicast = False: proxytier:vips:3:address (2001:2::101/64) is IPv6: IPv6 VRRP multicast",
     "keep unicast: true with IPv6 VIPs"),
    # two IPv6 VIPs with one VRID on one interface
    (lambda: dual(vips=[*DUAL["vips"][:5], {"address": "2001:2::103/64", "vrid": 52}]),
     "proxytier:vips:5:vrid = 52: already used by proxytier:vips:4 on host0 (IPv6)", "its own VRID"),
    # a pool of two families in one list
    (lambda: dual(vips=[], vip_pool={"addresses": ["198.18.0.111/24", "2001:2::112/64"], "vrid_base": 61}),
     "proxytier:vip_pool:addresses:1 = '2001:2::112/64': the pool's addresses are of one family",
     "put IPv6 twins of IPv4 pool addresses in vip_pool:addresses6"),
    # IPv6 twins: one per pool address
    (lambda: dual(vips=[], vip_pool={"addresses": ["198.18.0.111/24", "198.18.0.112/24", "198.18.0.113/24"],
                                     "addresses6": ["2001:2::111/64"], "vrid_base": 61}),
     "proxytier:vip_pool:addresses6 = ['2001:2::111/64']: one IPv6 twin per pool address: 3 addresses, 1",
     "the k-th goes to the member that gets the k-th address"),
    (lambda: dual(vips=[], vip_pool={"addresses": ["198.18.0.111/24"], "addresses6": ["198.18.0.112/24"],
                                     "vrid_base": 61}),
     "proxytier:vip_pool:addresses6:0 = '198.18.0.112/24': addresses6 are IPv6 addresses", ""),
    (lambda: dual(vips=[], vip_pool={"addresses": ["2001:2::111/64"], "addresses6": ["2001:2::112/64"],
                                     "vrid_base": 61}),
     "proxytier:vip_pool:addresses6 = ['2001:2::112/64']: vip_pool:addresses are IPv6 already", ""),
    (lambda: dual(vip_pool={"addresses6": ["2001:2::111/64"], "vrid_base": 61}),
     "proxytier:vip_pool:addresses6 = ['2001:2::111/64']: addresses6 are the IPv6 twins of vip_pool:addresses", ""),
    # a pool twin's VRID taken by an IPv6 VIP (the IPv4 ones are another space)
    (lambda: dual(vips=[*DUAL["vips"][:3], *({**v, "vrid": v["vrid"] + 20} for v in v6_vips())],
                  vip_pool={"addresses": ["198.18.0.111/24"], "addresses6": ["2001:2::111/64"], "vrid_base": 71}),
     "proxytier:vip_pool:vrid_base = 71: proxytier:vip_pool:addresses6:0 would get VRID 71, already used by "
     "proxytier:vips:3 on host0 (IPv6)", "move vrid_base"),
]


@pytest.mark.parametrize(("make", "message", "fix"), MIXED, ids=lambda v: v[:60] if isinstance(v, str) else "")
def test_each_mixed_family_mistake_is_one_clear_error(make: Any, message: str, fix: str) -> None:
    text = error(make())
    assert text.startswith(message), text
    assert fix in text, text


def test_mine_members_need_an_address_of_each_vip_family() -> None:
    mine = {f"proxy{i}": [f"198.18.0.1{i}", f"2001:2::1{i}"] for i in (1, 2, 3)}
    cfg = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    p = dual(members=None, members_from_mine=cfg)
    text = error(p, mine=mine)
    assert text.startswith("proxytier:members_from_mine:allow:networks = '198.18.0.11': minion proxy1 publishes "
                           "no IPv6 address inside these networks"), text
    p["members_from_mine"]["allow"]["networks"].append("2001:2::/64")
    m = build_model(p, "proxy2", mine=mine)
    assert m["members"][1] == {"id": "proxy2", "address": "198.18.0.12", "address6": "2001:2::12"}
    assert next(i["unicast_peers"] for i in m["vrrp"]["instances"] if i["family"] == 6) == ["2001:2::11", "2001:2::13"]


def test_mine_prefers_an_ipv4_address_and_keeps_the_ipv6_one_beside_it() -> None:
    """Whatever order a minion publishes its addresses in, its address is IPv4 and its address6 IPv6
    (an IPv6-only minion's address is IPv6); link-local and VIP addresses are never chosen."""
    mine = {"proxy1": ["fe80::1", "2001:2::11", "2001:2::101", "198.18.0.11"], "proxy2": ["198.18.0.12", "2001:2::12"],
            "proxy3": ["2001:2::13", "198.18.0.13"]}
    cfg = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24", "2001:2::/64"]}}
    m = build_model(dual(members=None, members_from_mine=cfg), "proxy1", mine=mine)
    assert m["members"] == [{"id": f"proxy{i}", "address": f"198.18.0.1{i}", "address6": f"2001:2::1{i}"}
                            for i in (1, 2, 3)]
    only6 = {f"proxy{i}": [f"2001:2::1{i}"] for i in (1, 2, 3)}
    m6 = build_model(dual(members=None, members_from_mine=cfg, vips=v6_vips()), "proxy1", mine=only6)
    assert m6["members"][0] == {"id": "proxy1", "address": "2001:2::11"}


# --- what a dual-stack tier renders --------------------------------------------------------------


def test_homes_count_per_family_whatever_the_order_of_the_list() -> None:
    """The n-th VIP of each family is home of the member numbered n, so listing the IPv6 VIPs
    first, or interleaved, changes no owner."""
    mixed = [DUAL["vips"][i] for i in (3, 0, 4, 1, 5, 2)]
    for vips in (DUAL["vips"], mixed):
        owners = {i["address"]: i["owner"] for i in build_model(dual(vips=vips), "proxy1")["vrrp"]["instances"]}
        assert owners == {"198.18.0.101": "proxy1", "198.18.0.102": "proxy2", "198.18.0.103": "proxy3",
                          "2001:2::101": "proxy1", "2001:2::102": "proxy2", "2001:2::103": "proxy3"}


def test_each_instance_has_the_unicast_source_and_peers_of_its_family() -> None:
    m = build_model(DUAL, "proxy3")
    got = {i["name"]: (i["family"], i["unicast_src_ip"], i["unicast_peers"]) for i in m["vrrp"]["instances"]}
    assert got["VI_51"] == (4, "198.18.0.13", ["198.18.0.11", "198.18.0.12"])
    assert got["VI6_51"] == (6, "2001:2::13", ["2001:2::11", "2001:2::12"])
    assert m["peers"] == ["198.18.0.11", "198.18.0.12"]


def test_an_ipv4_tier_has_the_model_it_always_had() -> None:
    """No IPv6 anywhere: no ipv6 key, no per-instance family or unicast keys, no IPv6 listeners."""
    p = dual(members=v4_members(), vips=DUAL["vips"][:3])
    m = build_model(p, "proxy1")
    assert "ipv6" not in m
    assert not any({"family", "unicast_src_ip", "unicast_peers"} & set(i) for i in m["vrrp"]["instances"])
    assert not any("listen6" in s for s in m["nginx"]["sites"])


def test_an_ipv6_address_beside_ipv4_vips_only_adds_listeners_and_trust() -> None:
    """address6 without IPv6 VIPs: nginx also listens on it and trusts the members' IPv6 addresses
    (so another tier or an operator may reach it over IPv6); VRRP stays IPv4."""
    m = build_model(dual(vips=DUAL["vips"][:3]), "proxy2")
    assert m["ipv6"] == {"vips": [], "members": {"proxy1": "2001:2::11", "proxy2": "2001:2::12",
                                                 "proxy3": "2001:2::13"}}
    assert m["nginx"]["sites"][0]["listen6"] == "[2001:2::12]:8080"
    assert "2001:2::11" in m["nginx"]["real_ip_from"]
    assert {i["family"] for i in m["vrrp"]["instances"]} == {4}
    assert m["firewall"]["members6"] == ["2001:2::11", "2001:2::12", "2001:2::13"]


def test_a_dual_stack_pool_gives_each_member_one_vip_of_each_family() -> None:
    pool = {"addresses": [f"198.18.0.11{k}/24" for k in (1, 2, 3, 4)],
            "addresses6": [f"2001:2::11{k}/64" for k in (1, 2, 3, 4)], "vrid_base": 61}
    three = build_model(dual(vips=[], vip_pool=pool), "proxy1")
    records = {(r["type"], r["address"]): r["owner"] for r in three["dns"]}
    assert records == {("A", "198.18.0.111"): "proxy1", ("A", "198.18.0.112"): "proxy2",
                       ("A", "198.18.0.113"): "proxy3", ("AAAA", "2001:2::111"): "proxy1",
                       ("AAAA", "2001:2::112"): "proxy2", ("AAAA", "2001:2::113"): "proxy3"}
    # an IPv6 twin has its IPv4 address's VRID (a space of its own) and owner
    vrids = {i["name"]: i["owner"] for i in three["vrrp"]["instances"]}
    assert vrids == {"VI_61": "proxy1", "VI_62": "proxy2", "VI_63": "proxy3",
                     "VI6_61": "proxy1", "VI6_62": "proxy2", "VI6_63": "proxy3"}
    # a fourth member joins: it adds exactly its two VIPs; nobody else's moves
    p4 = dual(vips=[], vip_pool=pool, members=[*DUAL["members"], {"id": "proxy4", "address": "198.18.0.14",
                                                                  "address6": "2001:2::14"}])
    four = {i["name"]: i["owner"] for i in build_model(p4, "proxy1")["vrrp"]["instances"]}
    assert four == {**vrids, "VI_64": "proxy4", "VI6_64": "proxy4"}


def test_keepalived_removes_ipv6_vips_with_ip_6_when_it_stops() -> None:
    params = os_params()
    m = build_model(DUAL, "proxy1", params=params)
    (dropin,) = [d for d in m["systemd_dropins"] if d["service"] == params["services"]["keepalived"]]
    assert "-ip -6 addr del 2001:2::101/64 dev host0" in dropin["exec_stop_post"]
    assert "-ip -4 addr del 198.18.0.101/24 dev host0" in dropin["exec_stop_post"]
    assert "ExecStopPost=-ip -6 addr del 2001:2::103/64 dev host0" in render("restart.conf.jinja", m, dropin=dropin)


def test_one_vrid_on_two_interfaces_gives_two_instance_names() -> None:
    """VRIDs are per interface: the same VRID (of one family) on two interfaces is two instances,
    which keepalived accepts only under two names ("vrrp instance VI_51 already defined")."""
    vips = [{"address": "198.18.0.101/24", "vrid": 51}, {"address": "198.18.1.101/24", "vrid": 51, "interface": "eth1"},
            {"address": "2001:2::101/64", "vrid": 51}, {"address": "198.18.0.102/24", "vrid": 52}]
    names = [i["name"] for i in build_model(dual(vips=vips), "proxy1")["vrrp"]["instances"]]
    assert names == ["VI_51_host0", "VI_51_eth1", "VI6_51", "VI_52"]
