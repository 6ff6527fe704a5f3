"""Membership from the mine is authorised, not self-declared: an explicit target and an allow-list
(ids and networks) in pillar; a minion outside it is ignored (reported), never a member."""

from __future__ import annotations

from typing import Any

import pytest
from formula import ProxytierError, build_model


def pillar(mine_cfg: Any) -> dict[str, Any]:
    return {
        "interface": "eth0",
        "members_from_mine": mine_cfg,
        "vips": [{"address": "198.18.0.101/24", "vrid": 51}, {"address": "198.18.0.102/24", "vrid": 52}],
        "sites": [{"name": "app", "backends": ["198.18.0.21:8080"]}],
    }


ALLOW = {"target": "proxy*", "allow": {"ids": ["proxy1", "proxy2"], "networks": ["198.18.0.0/24"]}}
MINE = {"proxy1": ["198.18.0.11"], "proxy2": ["198.18.0.12"]}


@pytest.mark.parametrize(("cfg", "key"), [
    ({}, "proxytier:members_from_mine:target"),
    ({"allow": ALLOW["allow"]}, "proxytier:members_from_mine:target"),
    ({"target": "proxy*"}, "proxytier:members_from_mine:allow:ids"),
    ({"target": "proxy*", "allow": {"ids": ["proxy*"]}}, "proxytier:members_from_mine:allow:networks"),
    ({"target": "proxy*", "allow": {"ids": [], "networks": ["198.18.0.0/24"]}},
     "proxytier:members_from_mine:allow:ids"),
    ({"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.11/24"]}},
     "proxytier:members_from_mine:allow:networks:0"),
    ({**ALLOW, "tgt_type": "globb"}, "proxytier:members_from_mine:tgt_type"),
])
def test_target_and_allow_list_are_required(cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(ProxytierError) as exc:
        build_model(pillar(cfg), "proxy1", mine=MINE)
    assert str(exc.value).startswith(key), str(exc.value)


def test_a_minion_outside_the_allow_list_is_ignored_never_a_member() -> None:
    mine = {**MINE, "evil": ["198.18.0.66"], "proxy3": ["203.0.113.9"], "proxy1\nx": ["198.18.0.67"]}
    cfg = {"target": "*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    m = build_model(pillar(cfg), "proxy1", mine=mine)
    assert [x["id"] for x in m["members"]] == ["proxy1", "proxy2"]
    assert m["peers"] == ["198.18.0.12"]
    servers = [s["name"] for s in m["haproxy"]["backends"][0]["servers"]]
    assert servers == ["proxy1", "proxy2"]
    why = {i["id"]: i["why"] for i in m["members_ignored"]}
    assert set(why) == {"evil", "proxy3", "'proxy1\\nx'"}
    assert why["evil"] == "id not in proxytier:members_from_mine:allow:ids"
    assert why["proxy3"] == "no address inside proxytier:members_from_mine:allow:networks"
    assert "not a valid member id" in why["'proxy1\\nx'"]


def test_the_first_address_inside_the_allowed_networks_is_chosen() -> None:
    mine = {"proxy1": ["198.19.0.1", "198.18.0.11"], "proxy2": ["198.18.0.12"]}  # a container bridge first
    m = build_model(pillar(ALLOW), "proxy1", mine=mine)
    assert m["node"]["address"] == "198.18.0.11"


def test_an_ignored_minion_is_told_why() -> None:
    mine = {**MINE, "proxy3": ["198.18.0.13"]}
    with pytest.raises(ProxytierError, match=r"'proxy3' is not a member.*id not in proxytier:members_from_mine"):
        build_model(pillar(ALLOW), "proxy3", mine=mine)


def test_two_minions_claiming_one_address_is_an_error() -> None:
    with pytest.raises(ProxytierError, match=r"proxy1 and proxy2 both publish"):
        build_model(pillar(ALLOW), "proxy1", mine={"proxy1": ["198.18.0.11"], "proxy2": ["198.18.0.11"]})


def test_no_allowed_minion_is_an_error_listing_why() -> None:
    with pytest.raises(ProxytierError, match=r"no minion of the target is allowed: evil: id not in"):
        build_model(pillar(ALLOW), "proxy1", mine={"evil": ["198.18.0.66"]})
