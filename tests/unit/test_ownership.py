"""Stable VIP ownership: a member joining or leaving moves only the VIPs that change concerns (the
leaver's; those the joiner takes), never a VIP whose owner stays; survivors keep their relative
backup order; every node computes the same owners whatever the member order; and the spread of VIPs
per member that the method gives, with its bound."""

from __future__ import annotations

import itertools
import random
import statistics
from typing import Any

import proxytier_ownership as ownership
import proxytier_vrrp as vrrp_
import pytest
from formula import ProxytierError, build_model
from proxytier_schema import merge

#: id universes: numbered (homes), one that sorts and numbers before the others, unnumbered
UNIVERSES = {
    "numbered": [f"proxy{i}" for i in range(1, 9)],
    "sorts-first": ["aproxy0", *(f"proxy{i}" for i in range(1, 8))],
    "unnumbered": ["edge-a", "edge-b", "node-x", "aaa", "zz-top", "p-q", "lb-east", "lb-west"],
}


def member_list(ids: list[str]) -> list[dict[str, str]]:
    return [{"id": m, "address": f"198.18.0.{10 + k}"} for k, m in enumerate(sorted(ids))]


def vip_list(n_vips: int, owners: dict[int, str] | None = None) -> list[dict[str, Any]]:
    raw = [{"address": f"198.18.0.{100 + i}/24", "vrid": 50 + i} for i in range(1, n_vips + 1)]
    for i, owner in (owners or {}).items():
        raw[i]["owner"] = owner
    return vrrp_.vips(raw, "eth0")


def orders(vips: list[dict[str, Any]], ids: list[str]) -> list[list[str]]:
    """Per VIP, the member ids by descending priority, as the model computes them (the node computing
    it does not matter; checked in test_every_node_computes_the_same_owners)."""
    members = member_list(ids)
    random.Random(len(ids)).shuffle(members)  # member order must not matter
    settings = vrrp_.settings(merge(vrrp_.VRRP_DEFAULTS, None, ("vrrp",)), len(members))
    out = []
    for inst in vrrp_.instances(vips, members, settings, members[0]["id"]):
        prios = inst["priorities"]
        assert len(set(prios.values())) == len(ids), "no two members may tie for a VIP"
        assert all(1 <= p <= 254 for p in prios.values())
        ranked = sorted(prios, key=lambda m: -prios[m])
        assert ranked[0] == inst["owner"]
        out.append(ranked)
    return out


def check_leave(before: list[list[str]], after: list[list[str]], leaver: str) -> None:
    """`after` is the tier without `leaver`: only its VIPs change owner, survivors keep their order."""
    for b, a in zip(before, after, strict=True):
        if b[0] != leaver:
            assert a[0] == b[0], f"{leaver} left and a VIP of {b[0]} moved to {a[0]}"
        assert a == [m for m in b if m != leaver], "the survivors' relative backup order changed"


@pytest.mark.parametrize("universe", sorted(UNIVERSES))
@pytest.mark.parametrize("n_vips", range(1, 9))
def test_join_and_leave_move_only_the_vips_they_concern(universe: str, n_vips: int) -> None:
    """Every member set of up to 8 ids of the universe, every member leaving it (and so, read
    backwards, every member joining the smaller set)."""
    ids = UNIVERSES[universe]
    vips = vip_list(n_vips)
    memo: dict[frozenset[str], list[list[str]]] = {}

    def of(s: frozenset[str]) -> list[list[str]]:
        if s not in memo:
            memo[s] = orders(vips, sorted(s))
        return memo[s]

    for size in range(2, len(ids) + 1):
        for subset in itertools.combinations(ids, size):
            s = frozenset(subset)
            for leaver in s:
                check_leave(of(s), of(s - {leaver}), leaver)
                # the same pair read as a join: a VIP changes owner only to the joiner
                for small, big in zip(of(s - {leaver}), of(s), strict=True):
                    assert big[0] in (small[0], leaver), f"{leaver} joined and a VIP moved to {big[0]}"


def test_the_rotation_faults_are_gone() -> None:
    """What the member-index rotation did: a member whose id sorts first made every VIP move; the
    end of the list leaving moved VIPs between members that stay."""
    vips = vip_list(3)
    three = orders(vips, ["proxy1", "proxy2", "proxy3"])
    assert [o[0] for o in three] == ["proxy1", "proxy2", "proxy3"]  # homes
    joined = orders(vips, ["aproxy0", "proxy1", "proxy2", "proxy3"])
    assert [o[0] for o in joined] == ["proxy1", "proxy2", "proxy3"]
    without_2 = orders(vips, ["proxy1", "proxy3"])
    assert [o[0] for o in without_2][0::2] == ["proxy1", "proxy3"]


@pytest.mark.parametrize("n_vips", range(1, 9))
def test_explicit_owner_wins_and_stays_stable(n_vips: int) -> None:
    """Every other VIP pinned to a member; every member set holding the pinned members, every
    member leaving it. A pinned owner must be a member: when it leaves, its pin goes with it (a
    pillar change) and only its VIPs move."""
    ids = UNIVERSES["sorts-first"]
    pins = {i: ids[(3 * i + 1) % 5] for i in range(0, n_vips, 2)}
    pinned = set(pins.values())
    for size in range(len(pinned), len(ids) + 1):
        for subset in itertools.combinations(ids, size):
            if not pinned <= set(subset):
                continue
            present = sorted(subset)
            got = orders(vip_list(n_vips, pins), present)
            assert all(got[i][0] == owner for i, owner in pins.items())
            for leaver in present if size > 1 else []:
                rest = [m for m in present if m != leaver]
                check_leave(got, orders(vip_list(n_vips, {i: o for i, o in pins.items() if o != leaver}), rest), leaver)
    with pytest.raises(ProxytierError, match="owner = 'proxy4': the owner must be one of the members"):
        orders(vip_list(1, {0: "proxy4"}), ["proxy1"])


def test_every_node_computes_the_same_owners() -> None:
    for ids in UNIVERSES.values():
        for n_vips in (1, 3, 5, 8):
            p = {
                "interface": "eth0",
                "members": member_list(ids[:5]),
                "vips": [{"address": f"198.18.0.{100 + i}/24", "vrid": 50 + i} for i in range(1, n_vips + 1)],
                "sites": [{"name": "app", "backends": ["198.18.0.21:8080"]}],
            }
            shuffled = dict(p, members=list(reversed(p["members"])))
            seen = set()
            for pillar in (p, shuffled):
                for m in p["members"]:
                    insts = build_model(pillar, m["id"])["vrrp"]["instances"]
                    seen.add(tuple((i["owner"], tuple(i["priorities"].items())) for i in insts))
                    assert [i["is_owner"] for i in insts] == [i["owner"] == m["id"] for i in insts]
            assert len(seen) == 1, "nodes disagree on owners or priorities"


@pytest.mark.parametrize("n_members", range(1, 9))
@pytest.mark.parametrize("n_vips", range(1, 9))
def test_spread_of_numbered_members(n_members: int, n_vips: int) -> None:
    """Members proxy1..proxyN: every VIP up to N has its home present, so each member owns at most
    one of those and, with VIPs beyond N, at least its home. Bound: 0 with N VIPs, at most 1 with fewer
    (ceil/floor), at most V - N with more (the VIPs without a home go by hash)."""
    ids = [f"proxy{i}" for i in range(1, n_members + 1)]
    owners = [o[0] for o in orders(vip_list(n_vips), ids)]
    bound = 0 if n_vips == n_members else 1 if n_vips < n_members else n_vips - n_members
    assert ownership.spread(owners, ids) <= bound
    # each member is preferred MASTER of at least one VIP when there are enough VIPs
    assert set(owners) == set(ids[:n_vips])


def test_spread_of_unnumbered_members_is_even_only_on_average() -> None:
    """Ids without homes: each VIP's owner is a uniformly random member (rendezvous hashing), so the
    spread is that of throwing V balls into N bins. Measured over 300 random id sets each (seeded):
    the mean spread stays within 10% of the balls-into-bins expectation, and some sets are
    uneven (the price of stability), e.g. 3 members x 3 VIPs: mean 1.67, even (<= 1) in 2/9."""
    rng = random.Random(7)
    expected = {(3, 3): 1.67, (3, 5): 2.15, (5, 5): 2.25, (8, 8): 2.6}
    for (n, v), mean in expected.items():
        spreads = []
        for t in range(300):
            ids = [f"m{rng.getrandbits(32):x}-x" for _ in range(n)]
            owners = [ownership.order(f"198.18.{t % 250}.{k + 1}", ids)[0] for k in range(v)]
            spreads.append(ownership.spread(owners, ids))
        assert abs(statistics.mean(spreads) - mean) <= 0.1 * mean, (n, v, statistics.mean(spreads))
        assert max(spreads) >= 2


# --- the VIP pool: one VIP per member -----------------------------------------------------------

POOL = [f"198.18.0.{110 + k}/24" for k in range(1, 9)]


def pool_pillar(ids: list[str], pins: dict[str, str] | None = None, **pool: Any) -> dict[str, Any]:
    return {
        "interface": "eth0",
        "members": member_list(ids),
        "vips": [],
        "vip_pool": {"addresses": POOL, "vrid_base": 61, "pins": pins or {}, **pool},
        "dns_name": "www.example.com",
        "sites": [{"name": "app", "backends": ["198.18.0.21:8080"]}],
    }


def pool_model(ids: list[str], pins: dict[str, str] | None = None) -> dict[str, Any]:
    m = build_model(pool_pillar(ids, pins), ids[0])
    assert m["vip_pool"]["assigned"] == {i["owner"]: i["address"] for i in m["vrrp"]["instances"]}
    return m


def pool_owners(ids: list[str], pins: dict[str, str] | None = None) -> dict[str, str]:
    """{VIP address: owner} of the tier with a pool and no other VIPs."""
    return {i["address"]: i["owner"] for i in pool_model(ids, pins)["vrrp"]["instances"]}


@pytest.mark.parametrize("universe", ["numbered", "sorts-first", "unnumbered"])
def test_pool_join_adds_exactly_its_vip_and_moves_no_other(universe: str) -> None:
    """Every member set of the universe and every member joining it (read backwards: leaving):
    the joiner gets exactly one VIP; every member that was not reported contested keeps its VIP.
    Numbered members are never contested, so there nothing else moves at all."""
    ids = UNIVERSES[universe]
    for size in range(1, len(ids)):
        for subset in itertools.combinations(ids, size):
            m = pool_model(list(subset))
            before = {i["address"]: i["owner"] for i in m["vrrp"]["instances"]}
            assert sorted(before.values()) == sorted(subset), "one VIP per member"
            contested = {c["id"] for c in m["vip_pool"]["contested"]}
            if universe == "numbered":
                assert not contested
            for joiner in set(ids) - set(subset):
                after = pool_owners([*subset, joiner])
                assert sum(o == joiner for o in after.values()) == 1 and len(after) == len(before) + 1
                for address, owner in before.items():
                    if owner not in contested:
                        assert after[address] == owner, f"{joiner} joined and moved {owner}'s VIP"
                # leaving again restores the set before, exactly
                assert pool_owners(list(subset)) == before


def test_pool_numbered_members_get_their_home_address_and_vrid() -> None:
    m = build_model(pool_pillar(["proxy3", "proxy1"]), "proxy3")
    assert [(i["address"], i["vrid"], i["owner"]) for i in m["vrrp"]["instances"]] == [
        ("198.18.0.111", 61, "proxy1"), ("198.18.0.113", 63, "proxy3")
    ]
    assert m["mode"] == "active-active" and m["vips"] == ["198.18.0.111", "198.18.0.113"]
    assert m["vip_pool"]["contested"] == []
    assert m["dns"] == [
        {"name": "www.example.com", "type": "A", "address": "198.18.0.111", "owner": "proxy1"},
        {"name": "www.example.com", "type": "A", "address": "198.18.0.113", "owner": "proxy3"},
    ]


def test_pool_contested_members_are_reported_and_pins_make_them_stable() -> None:
    # two members numbered 1: one of them cannot have the first address
    ids = ["proxy1", "edge1", "proxy2"]
    m = pool_model(ids)
    (c,) = m["vip_pool"]["contested"]
    holder = next(i for i in ("proxy1", "edge1") if i != c["id"])
    assert c["why"] == f"its first choice 198.18.0.111 is held by {holder}"
    assert m["vip_pool"]["assigned"][c["id"]] == c["address"] != "198.18.0.111"
    # pinned where it is: nothing moves, and it keeps its address when the holder of its first
    # choice leaves (unpinned, it would move there)
    pins = {c["id"]: c["address"]}
    assert pool_owners(ids, pins) == pool_owners(ids)
    assert pool_model(ids, pins)["vip_pool"]["contested"] == []
    without_holder = [i for i in ids if i != holder]
    assert pool_owners(without_holder, pins)[c["address"]] == c["id"]
    assert pool_owners(without_holder)["198.18.0.111"] == c["id"]
    # an id without a home address is contested: a member numbered like its address may join
    (c,) = pool_model(["proxy1", "edge-a"])["vip_pool"]["contested"]
    assert c["id"] == "edge-a" and c["why"].startswith("no home address")


def test_pool_pins_win_and_stay_reserved() -> None:
    pins = {"proxy2": "198.18.0.115", "ghost9": "198.18.0.112/24"}
    owners = pool_owners(["proxy1", "proxy2", "proxy3", "edge-z"], pins)
    assert owners["198.18.0.115"] == "proxy2"
    assert "198.18.0.112" not in owners, "an absent member's pinned address is not handed out"


def test_pool_and_vips_together_and_ipv6_records() -> None:
    p = pool_pillar(["proxy1", "proxy2"])
    p["vips"] = [{"address": "2001:2::101/64", "vrid": 51}]
    for k, member in enumerate(p["members"]):  # an IPv6 VIP needs every member to have an IPv6 address
        member["address6"] = f"2001:2::1{k + 1}"
    m = build_model(p, "proxy1")
    assert m["vips"] == ["2001:2::101", "198.18.0.111", "198.18.0.112"]
    assert [(r["type"], r["address"]) for r in m["dns"]] == [
        ("AAAA", "2001:2::101"), ("A", "198.18.0.111"), ("A", "198.18.0.112")
    ]
    assert build_model(dict(p, vip_pool=None), "proxy1")["vip_pool"] == {"assigned": {}, "contested": []}


POOL_ERRORS = [
    ({"vrid_base": None}, "proxytier:vip_pool:vrid_base = None", "1..248"),
    ({"vrid_base": 250}, "proxytier:vip_pool:vrid_base = 250", "1..248"),
    ({"vrid_base": 51}, "proxytier:vip_pool:vrid_base = 51", "already used by proxytier:vips:0"),
    ({"addresses": [*POOL, "198.18.0.101/24"]}, "proxytier:vip_pool:addresses:8:address = '198.18.0.101'",
     "duplicate of proxytier:vips:0"),
    ({"addresses": ["198.18.0.300/24"]}, "proxytier:vip_pool:addresses:0 = '198.18.0.300/24'", "expected an address"),
    ({"addresses": "198.18.0.111/24"}, "proxytier:vip_pool:addresses = '198.18.0.111/24'", "list the pool"),
    ({"pins": {"proxy1": "198.18.0.99"}}, "proxytier:vip_pool:pins:proxy1 = '198.18.0.99'", "one of vip_pool"),
    ({"pins": {"proxy1": "198.18.0.111", "proxy2": "198.18.0.111"}}, "proxytier:vip_pool:pins:proxy2",
     "already pinned to proxy1"),
    ({"pins": {"bad id!": "198.18.0.111"}}, "proxytier:vip_pool:pins = 'bad id!'", ""),
    ({"interface": "eth0:1"}, "proxytier:vip_pool:interface = 'eth0:1'", "network interface name"),
    ({"addresses": POOL[:1]}, "proxytier:vip_pool:addresses = '1 addresses'", "add addresses to the pool"),
    ({"typo": 1}, "proxytier:vip_pool:typo: unknown key", ""),
]


@pytest.mark.parametrize(("pool", "where", "fix"), POOL_ERRORS, ids=[e[1] for e in POOL_ERRORS])
def test_pool_errors_name_key_value_and_fix(pool: dict[str, Any], where: str, fix: str) -> None:
    p = pool_pillar(["proxy1", "proxy2"])
    p["vips"] = [{"address": "198.18.0.101/24", "vrid": 51}]
    p["vip_pool"].update(pool)
    with pytest.raises(ProxytierError) as e:
        build_model(p, "proxy1")
    assert str(e.value).startswith(where) and fix in str(e.value), str(e.value)


@pytest.mark.parametrize("name", ["-www.example.com", "www..example.com", "a" * 64 + ".com", 7, "www example"])
def test_dns_name_is_validated(name: Any) -> None:
    with pytest.raises(ProxytierError, match=r"proxytier:dns_name = .*a DNS name like"):
        build_model(dict(pool_pillar(["proxy1"]), dns_name=name), "proxy1")


def test_pool_address_is_never_a_mine_members_address() -> None:
    p = pool_pillar(["proxy1"])
    del p["members"]
    p["members_from_mine"] = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    # proxy2 holds proxy1's pool VIP right now (failover): its own address is the other one
    mine = {"proxy1": ["198.18.0.11"], "proxy2": ["198.18.0.111", "198.18.0.12"]}
    m = build_model(p, "proxy1", mine=mine)
    assert [x["address"] for x in m["members"]] == ["198.18.0.11", "198.18.0.12"]
    assert m["vip_pool"]["assigned"] == {"proxy1": "198.18.0.111", "proxy2": "198.18.0.112"}
