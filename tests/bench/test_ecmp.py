"""bench/ecmp's pure parts: BIRD's and ip's output read back, the `ip nexthop` commands of the
resilient helper, the graceful-leave drain decision (GRACEFUL_SHUTDOWN paths), the broken-connection counts
and the report; BIRD accepts the bench's node and router configs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench.ecmp import run as ecmp
from lab import resilient as res

SHOW_ROUTE = """BIRD 2.0.12 ready.
Table master4:
198.19.255.100/32    unicast [n1 21:00:23.833] * (100) [AS64512i]
\tvia 198.19.241.2 on r-n1
                     unicast [n2 21:00:23.791] (100) [AS64512i]
\tvia 198.19.242.2 on r-n2
                     unicast [n3 21:00:24.054] (100) [AS64512i]
\tvia 198.19.243.2 on r-n3
"""
SHOW_PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     21:00:23.321
ecmp4      Kernel     master4    up     21:00:23.321
n1         BGP        ---        up     21:00:23.791  Established
n2         BGP        ---        start  21:00:15.455  Active        Socket: Connection refused
"""
SHOW_ROUTE_ALL = """BIRD 2.0.12 ready.
Table master4:
198.19.255.100/32    unicast [n1 21:00:23.833] * (100) [AS64512i]
\tvia 198.19.241.2 on r-n1
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64512
\tBGP.next_hop: 198.19.241.2
\tBGP.local_pref: 100
\tBGP.community: (64512,100) (65535,1)
                     unicast [n2 21:00:23.791] (100) [AS64512i]
\tvia 198.19.242.2 on r-n2
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64512
\tBGP.next_hop: 198.19.242.2
\tBGP.local_pref: 0
\tBGP.community: (64512,100) (65535,0)
                     unicast [n3 21:00:24.054] (100) [AS64512i]
\tvia 198.19.243.2 on r-n3
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 64512
\tBGP.next_hop: 198.19.243.2
\tBGP.local_pref: 100
\tBGP.large_community: (65535, 0, 0)
"""
S = res.Settings("198.19.255.100/32", buckets=512, idle_timer=3, drain=True)


def routes(*vias: str) -> list[res.Route]:
    return [res.Route(f"n{v[-3]}", v, f"r-n{v[-3]}") for v in vias]


def test_birdc_routes_and_protocols_are_read_back() -> None:
    assert res.parse_routes(SHOW_ROUTE) == [res.Route("n1", "198.19.241.2", "r-n1"),
                                            res.Route("n2", "198.19.242.2", "r-n2"),
                                            res.Route("n3", "198.19.243.2", "r-n3")]
    assert res.parse_routes("BIRD 2.0.12 ready.\nTable master4:\n") == []
    p = res.parse_protocols(SHOW_PROTOCOLS)
    assert p["n1"] == {"proto": "BGP", "state": "up", "info": "Established"}
    assert p["n2"]["state"] == "start" and "Name" not in p and "BIRD" not in p


def test_graceful_shutdown_is_read_from_each_paths_communities() -> None:
    """`show route PREFIX all` as bird2 2.0.12 prints it (the router of tests/render/test_render_bgp.py's kind):
    GRACEFUL_SHUTDOWN marks only the path that lists (65535,0), not one with (65535,1) or a large community."""
    assert res.parse_routes(SHOW_ROUTE_ALL) == [
        res.Route("n1", "198.19.241.2", "r-n1", False),
        res.Route("n2", "198.19.242.2", "r-n2", True),
        res.Route("n3", "198.19.243.2", "r-n3", False),
    ]


def test_buckets_are_read_and_busy_ones_counted() -> None:
    text = ("id 100 index 0 idle_time 0.25 nhid 101\nid 100 index 1 idle_time 5.59 nhid 101\n"
            "id 100 index 2 idle_time 0.01 nhid 102\n")
    b = res.parse_buckets(text)
    assert b == [(0, 0.25, 101), (1, 5.59, 101), (2, 0.01, 102)]
    assert res.busy_buckets(b, 101, 3) == 1 and res.busy_buckets(b, 102, 3) == 1 and res.busy_buckets(b, 103, 3) == 0


def test_the_first_group_is_added_with_its_buckets_and_the_route_on_it() -> None:
    state = res.State()
    new = res.reconcile(state, routes("198.19.241.2", "198.19.242.2"), S, 0.0, [])
    assert [(m.nhid, m.weight) for m in new.values()] == [(101, 64), (102, 64)]
    assert res.commands(state, new, S) == [
        ["ip", "nexthop", "replace", "id", "101", "via", "198.19.241.2", "dev", "r-n1"],
        ["ip", "nexthop", "replace", "id", "102", "via", "198.19.242.2", "dev", "r-n2"],
        ["ip", "nexthop", "add", "id", "100", "group", "101,64/102,64", "type", "resilient", "buckets", "512",
         "idle_timer", "3", "unbalanced_timer", "0"],
        ["ip", "route", "replace", "198.19.255.100/32", "nhid", "100"],
    ]


def test_a_join_replaces_the_group_without_buckets_and_keeps_the_ids() -> None:
    state = res.State(res.reconcile(res.State(), routes("198.19.241.2", "198.19.242.2"), S, 0.0, []), True)
    new = res.reconcile(state, routes("198.19.241.2", "198.19.242.2", "198.19.244.2"), S, 1.0, [])
    assert res.commands(state, new, S) == [
        ["ip", "nexthop", "replace", "id", "103", "via", "198.19.244.2", "dev", "r-n4"],
        ["ip", "nexthop", "replace", "id", "100", "group", "101,64/102,64/103,64", "type", "resilient",
         "idle_timer", "3", "unbalanced_timer", "0"],
    ]
    assert res.commands(res.State(new, True), new, S) == []


def graceful(*vias: str) -> list[res.Route]:
    return [res.Route(f"n{v[-3]}", v, f"r-n{v[-3]}", True) for v in vias]


def test_a_graceful_shutdown_drains_at_weight_1_then_goes_and_a_withdraw_goes_at_once() -> None:
    state = res.State(res.reconcile(res.State(), routes("198.19.241.2", "198.19.242.2"), S, 0.0, []), True)
    leaving = [*routes("198.19.242.2"), *graceful("198.19.241.2")]
    draining = res.reconcile(state, leaving, S, 10.0, [])
    assert [(m.via, m.weight, m.draining_since) for m in draining.values()] == [
        ("198.19.242.2", 64, None), ("198.19.241.2", 1, 10.0)]
    assert res.commands(state, draining, S) == [
        ["ip", "nexthop", "replace", "id", "100", "group", "102,64/101,1", "type", "resilient", "idle_timer", "3",
         "unbalanced_timer", "0"]]
    state = res.State(draining, True)
    busy = [(0, 0.2, 101), (1, 9.0, 102)]
    assert "198.19.241.2" in res.reconcile(state, leaving, S, 11.0, busy)
    idle = [(0, 4.0, 101), (1, 0.1, 102)]
    gone = res.reconcile(state, leaving, S, 12.0, idle)
    assert list(gone) == ["198.19.242.2"]
    assert res.commands(state, gone, S) == [
        ["ip", "nexthop", "replace", "id", "100", "group", "102,64", "type", "resilient", "idle_timer", "3",
         "unbalanced_timer", "0"],
        ["ip", "nexthop", "del", "id", "101"],
    ]
    # drained and gone: its path, still graceful, does not bring it back
    assert list(res.reconcile(res.State(gone, True), leaving, S, 13.0, idle)) == ["198.19.242.2"]
    # withdrawn while draining (HAProxy dead: the gate withdraws), or the drain too long: removed at once, busy or not
    assert list(res.reconcile(state, routes("198.19.242.2"), S, 11.0, busy)) == ["198.19.242.2"]
    assert list(res.reconcile(state, leaving, S, 10.0 + S.drain_timeout, busy)) == ["198.19.242.2"]
    # a plain withdraw of a serving member is never drained
    serving = res.State(res.reconcile(res.State(), routes("198.19.241.2", "198.19.242.2"), S, 0.0, []), True)
    assert list(res.reconcile(serving, routes("198.19.242.2"), S, 1.0, busy)) == ["198.19.242.2"]
    # without --drain a graceful path is left out at once, like a less preferred one
    nodrain = res.Settings("198.19.255.100/32")
    assert list(res.reconcile(state, leaving, nodrain, 10.0, busy)) == ["198.19.242.2"]
    # every path graceful (the last nodes leaving): they all still serve (RFC 8326: the last resort)
    assert list(res.reconcile(serving, graceful("198.19.241.2", "198.19.242.2"), S, 1.0, [])) == [
        "198.19.241.2", "198.19.242.2"]


def test_no_route_left_removes_the_route_and_the_group() -> None:
    state = res.State(res.reconcile(res.State(), routes("198.19.241.2"), S, 0.0, []), True)
    assert res.commands(state, res.reconcile(state, [], S, 1.0, []), S) == [
        ["ip", "route", "del", "198.19.255.100/32"], ["ip", "nexthop", "del", "id", "100"],
        ["ip", "nexthop", "del", "id", "101"]]


def conns(spec: dict[str, tuple[int, int]]) -> list[dict]:
    out = []
    for node, (ok, reset) in spec.items():
        out += [{"node": node, "state": "ok", "at": None}] * ok + [{"node": node, "state": "reset", "at": 1.0}] * reset
    return out


def test_broken_connections_are_counted_per_node_and_for_the_leaver() -> None:
    timeout = {"node": "n2", "state": "timeout", "at": 2.5}
    c = ecmp.count([*conns({"n1": (100, 0), "n2": (60, 43), "n3": (0, 97)}), timeout], "n3")
    assert c["per_node"]["n2"] == {"conns": 104, "broken": 44, "reset": 43, "timeout": 1, "closed": 0}
    assert c["others"] == {"conns": 204, "broken": 44} and c["moved"] == {"conns": 97, "broken": 97}
    assert ecmp.count(conns({"n1": (10, 2)}), None)["moved"] == {"conns": 0, "broken": 0}


def test_the_report_has_a_row_per_scenario() -> None:
    def scen(event: str, node: str, profile: str, spec: dict[str, tuple[int, int]]) -> dict:
        return {"event": event, "node": node, "profile": profile, "new": {"n1": 30, "n2": 30},
                "count": ecmp.count(conns(spec), node if event == "leave" else None), "converged_s": 0.05}

    run = {"date": "2026-12-02T00:00:00Z", "git_commit": "abc", "machine": {"cpus": 2}, "bird": "2.0.12",
           "settings": {"connections": 300, "interval": 0.5, "observe": 6, "timeout": 2, "buckets": 512, "new": 60},
           "profiles": ecmp.PROFILES, "notes": ["a note"],
           "scenarios": [scen("leave", "n3", "plain", {"n1": (100, 0), "n2": (57, 43), "n3": (0, 100)}),
                         scen("join", "n4", "resilient", {"n1": (70, 30), "n2": (100, 0), "n3": (100, 0)})]}
    md = ecmp.render(run)
    assert ("| n3 | plain | n1 100 / n2 100 / n3 100 | 43 of 200 (22%) | 100 of 100 (100%) | n1 30 / n2 30 | "
            "0.05 |") in md
    assert "| resilient | n1 100 / n2 100 / n3 100 | 30 of 300 (10%) | n1 30 / n2 30 | 0.05 |" in md
    assert "- a note" in md and "idle_timer 3 s" in md


def test_addresses_stay_in_the_benchs_range() -> None:
    import ipaddress

    net = ipaddress.ip_network("198.19.240.0/20")
    for n in ecmp.NODES:
        assert ipaddress.ip_address(f"{ecmp.link_net(n)}.1") in net
    assert ipaddress.ip_address(ecmp.SERVICE) in net


@pytest.mark.skipif(not shutil.which("bird"), reason="needs bird (Debian's bird2)")
def test_bird_accepts_the_benchs_configs(tmp_path: Path) -> None:
    for name, text in (("node", ecmp.node_bird_conf("n2")), ("router", ecmp.router_bird_conf(ecmp.NODES))):
        path = tmp_path / f"{name}.conf"
        path.write_text(text)
        done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}\n{text}"
