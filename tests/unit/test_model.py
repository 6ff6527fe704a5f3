"""The model: who owns which VIP, priorities, peers, members from pillar or mine,
and one clear error for each kind of bad pillar."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from formula import ProxytierError, build_model, example_pillar


def pillar(n_nodes: int, n_vips: int, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "interface": "eth0",
        "members": [{"id": f"proxy{i}", "address": f"198.18.0.{10 + i}"} for i in range(1, n_nodes + 1)],
        "vips": [{"address": f"198.18.0.{100 + i}/24", "vrid": 50 + i} for i in range(1, n_vips + 1)],
        "sites": [{"name": "app", "backends": [{"address": "198.18.0.21:8080"}, "198.18.0.22:8080"]}],
    }
    p.update(extra)
    return p


def models(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: build_model(p, m["id"]) for m in p["members"]}


def test_peers_exclude_self() -> None:
    ms = models(pillar(4, 1))
    for node, m in ms.items():
        assert m["node"]["id"] == node
        assert m["node"]["address"] not in m["peers"]
        assert len(m["peers"]) == 3
        assert sorted([*m["peers"], m["node"]["address"]]) == sorted(x["address"] for x in m["members"])


def test_seed_versus_active_active() -> None:
    seed = build_model(pillar(2, 1), "proxy2")
    assert seed["mode"] == "seed"
    assert [fe["binds"][0]["address"] for fe in seed["haproxy"]["frontends"]] == ["198.18.0.101:80"]
    aa = build_model(pillar(3, 3), "proxy2")
    assert aa["mode"] == "active-active"
    # every HAProxy binds every VIP, and balances over nginx on every member (itself included)
    assert [b["address"] for b in aa["haproxy"]["frontends"][0]["binds"]] == [
        "198.18.0.101:80", "198.18.0.102:80", "198.18.0.103:80"
    ]
    assert [s["address"] for s in aa["haproxy"]["backends"][0]["servers"]] == [
        "198.18.0.11:8080", "198.18.0.12:8080", "198.18.0.13:8080"
    ]
    assert aa["nginx"]["sites"][0]["listen"] == "198.18.0.12:8080"
    assert [s["address"] for s in aa["nginx"]["sites"][0]["servers"]] == ["198.18.0.21:8080", "198.18.0.22:8080"]


def test_members_from_mine_match_pillar_members() -> None:
    listed = pillar(3, 3)
    from_mine = copy.deepcopy(listed)
    del from_mine["members"]
    from_mine["members_from_mine"] = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    # mine data as network.ip_addrs returns it: the node's address, plus any VIP it holds
    mine = {
        "proxy3": ["198.18.0.13"],
        "proxy1": ["198.18.0.101", "198.18.0.11"],
        "proxy2": ["198.18.0.12", "198.18.0.102", "198.18.0.103"],
    }
    for node in ("proxy1", "proxy2", "proxy3"):
        a = build_model(listed, node)
        b = build_model(from_mine, node, mine=mine)
        assert b["members_source"] == "mine" and a["members_source"] == "pillar"
        for key in ("members", "peers", "vrrp", "haproxy", "nginx"):
            assert a[key] == b[key], key


def test_mine_orders_members_naturally_and_new_minion_joins() -> None:
    p = pillar(1, 2)
    del p["members"]
    p["members_from_mine"] = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    mine = {f"proxy{i}": [f"198.18.0.{10 + i}"] for i in (10, 2, 1)}
    m = build_model(p, "proxy2", mine=mine)
    assert [x["id"] for x in m["members"]] == ["proxy1", "proxy2", "proxy10"]
    mine["proxy3"] = ["198.18.0.13"]
    m2 = build_model(p, "proxy2", mine=mine)
    assert [s["name"] for s in m2["haproxy"]["backends"][0]["servers"]] == ["proxy1", "proxy2", "proxy3", "proxy10"]


def test_tls_inline_and_files() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    p = pillar(2, 1)
    p["sites"][0]["tls"] = {"certificate": cert, "key": key}
    m = build_model(p, "proxy1", params={"tls_dir": "/etc/haproxy/proxytier-tls"}, with_secrets=True)
    assert m["tls_files"] == [{"path": "/etc/haproxy/proxytier-tls/app.pem", "contents": cert + key}]
    binds = m["haproxy"]["frontends"][0]["binds"]
    assert binds[-1] == {"address": "198.18.0.101:443", "tls": True, "crt": "/etc/haproxy/proxytier-tls/app.pem",
                         "alpn": "h2,http/1.1"}
    p["sites"][0]["tls"] = {"certificate_file": "/etc/ssl/app.pem", "key_file": "/etc/ssl/app.pem.key"}
    m = build_model(p, "proxy1", file_exists=lambda path: True)
    assert m["tls_files"] == [] and m["haproxy"]["frontends"][0]["binds"][-1]["crt"] == "/etc/ssl/app.pem"


def test_order_of_sites_and_backends_is_kept() -> None:
    p = pillar(2, 1)
    p["sites"] = [
        {"name": "zeta", "port": 81, "nginx_port": 8081, "backends": ["198.18.0.29:80", "198.18.0.21:80"]},
        {"name": "alpha", "port": 82, "nginx_port": 8082, "backends": ["198.18.0.22:80"]},
    ]
    m = build_model(p, "proxy1")
    assert [s["name"] for s in m["nginx"]["sites"]] == ["zeta", "alpha"]
    assert [s["address"] for s in m["nginx"]["sites"][0]["servers"]] == ["198.18.0.29:80", "198.18.0.21:80"]


def set_path(p: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    p = copy.deepcopy(p)
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(":")]
    node: Any = p
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return p


DELETE = object()

BAD = [
    # (pillar path, value, minion, expected message fragments)
    ("vips:1:vrid", 300, "proxy1", ["proxytier:vips:1:vrid = 300", "1..255"]),
    ("vips:1:vrid", 51, "proxy1", ["proxytier:vips:1:vrid = 51", "already used by proxytier:vips:0"]),
    ("vips:2:address", "198.18.0.101/24", "proxy1", ["proxytier:vips:2:address", "duplicate of proxytier:vips:0"]),
    ("vips:0:address", "198.18.0.300/24", "proxy1", ["proxytier:vips:0:address", "198.18.0.101/24"]),
    ("vips:0:address", "198.18.0.0/24", "proxy1", ["network or broadcast"]),
    ("vips:0:owner", "proxy9", "proxy1", ["proxytier:vips:0:owner = 'proxy9'", "proxy1, proxy2, proxy3"]),
    ("members:1:address", "198.18.0.11", "proxy1", ["proxytier:members:1:address", "share an address"]),
    ("members:1:address", "not-an-ip", "proxy1", ["proxytier:members:1:address = 'not-an-ip'"]),
    ("members:2:id", "proxy1", "proxy1", ["proxytier:members:2:id", "unique"]),
    ("sites:0:backends", [], "proxy1", ["proxytier:sites:0:backends = []", "at least one backend"]),
    ("sites:0:backends:1", "198.18.0.21:8080", "proxy1", ["proxytier:sites:0:backends:1:address", "duplicate"]),
    ("sites:0:backends:0:address", "198.18.0.21", "proxy1", ["proxytier:sites:0:backends:0:address", "host:port"]),
    ("sites:0:backends:0:address", "198.18.0.21:70000", "proxy1", ["1..65535"]),
    ("sites:0:port", 8080, "proxy1", ["proxytier:sites:0:nginx_port = 8080: port clash with proxytier:sites:0:port"]),
    ("sites:0:nginx_port", 8405, "proxy1", ["port clash", "proxytier:haproxy:monitor_port"]),
    ("sites:0:port", 0, "proxy1", ["proxytier:sites:0:port = 0", "1..65535"]),
    ("sites:0:bakends", [], "proxy1", ["proxytier:sites:0:bakends: unknown key", "did you mean 'backends'"]),
    ("vrrp", {"advert_intervall": 1}, "proxy1", ["proxytier:vrrp:advert_intervall", "'advert_interval'"]),
    ("vrrp", {"version": 2, "advert_interval": 0.5}, "proxy1", ["proxytier:vrrp:advert_interval", "whole seconds"]),
    ("vrrp", {"auth_pass": "secret"}, "proxy1", ["proxytier:vrrp:auth_pass", "VRRPv3 has no authentication"]),
    ("vrrp", {"track": "pid"}, "proxy1", ["proxytier:vrrp:track = 'pid'"]),
    ("vrrp", {"priority_step": 100}, "proxy1", ["proxytier:vrrp:priority_step = 100", "lowest priority"]),
    ("vrrp", {"priority_step": "wide"}, "proxy1", ["proxytier:vrrp:priority_step = 'wide'", "(or auto)"]),
    ("sites:0:tls", {"port": 443}, "proxy1", ["proxytier:sites:0:tls", "no certificate"]),
    ("sites:0:tls", {"certificate_file": "/nope.pem", "key_file": "/nope.pem"}, "proxy1",
     ["proxytier:sites:0:tls:certificate_file = '/nope.pem'", "no such file"]),
    ("sites:0:client_address", "x-real-ip", "proxy1", ["proxytier:sites:0:client_address", "forwardfor"]),
    ("sites:0:extra", {"location": "a\nb"}, "proxy1", ["proxytier:sites:0:extra:location", "one configuration line"]),
    ("haproxy", {"timeouts": {"connect": "soon"}}, "proxy1", ["proxytier:haproxy:timeouts:connect = 'soon'"]),
    ("haproxy", {"check": {"on_error": "markdown"}}, "proxy1",
     ["proxytier:haproxy:check:on_error = 'markdown'", "mark-down, sudden-death"]),
    ("haproxy", {"log_requests": "none"}, "proxy1", ["proxytier:haproxy:log_requests = 'none'", "abnormal", "all"]),
    ("haproxy", {"check": {"error_limit": 0}}, "proxy1", ["proxytier:haproxy:check:error_limit = 0", "1..1000"]),
    ("haproxy", {"nbthread": 65}, "proxy1", ["proxytier:haproxy:nbthread = 65", "'auto' or", "1..64"]),
    ("haproxy", {"nbthread": "2; nbproc 2"}, "proxy1", ["proxytier:haproxy:nbthread = '2; nbproc 2'"]),
    ("nginx", {"access_log": "main"}, "proxy1", ["proxytier:nginx:access_log = 'main'", "combined", "off"]),
    ("vips", [], "proxy1", ["proxytier:vips = []", "at least one VIP"]),
    ("interface", "eth0 ; rm", "proxy1", ["proxytier:interface"]),
    ("members", DELETE, "proxy1", ["proxytier:members is not set"]),
    ("members", [{"id": "proxy1", "adress": "198.18.0.11"}], "proxy1", ["did you mean 'address'"]),
]


@pytest.mark.parametrize(("path", "value", "minion", "fragments"), BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_pillar_names_key_value_and_fix(path: str, value: Any, minion: str, fragments: list[str]) -> None:
    p = set_path(pillar(3, 3), path, value)
    with pytest.raises(ProxytierError) as exc:
        build_model(p, minion, file_exists=lambda _: False)
    msg = str(exc.value)
    for frag in fragments:
        assert frag in msg, msg


def test_minion_not_a_member() -> None:
    with pytest.raises(ProxytierError, match=r"minion 'proxy7' is not a member of the tier \(proxy1, proxy2\)"):
        build_model(pillar(2, 1), "proxy7")


def test_mine_without_data_says_how_to_fix() -> None:
    p = pillar(2, 1)
    del p["members"]
    p["members_from_mine"] = {"target": "proxy*", "allow": {"ids": ["proxy*"], "networks": ["198.18.0.0/24"]}}
    with pytest.raises(ProxytierError, match=r"mine\.update"):
        build_model(p, "proxy1", mine={})


def test_example_pillar_is_valid_for_every_lab_node() -> None:
    for node in ("proxy1", "proxy2", "proxy3"):
        m = build_model(example_pillar(), node)
        assert m["mode"] == "active-active"
        assert sum(i["is_owner"] for i in m["vrrp"]["instances"]) == 1


@pytest.mark.parametrize(("n_nodes", "expected"), [
    (2, [150, 100]), (3, [150, 100, 50]), (4, [150, 101, 52, 3]), (5, [150, 113, 76, 39, 2]),
])
def test_auto_priority_step_spreads_the_backups_as_wide_as_the_base_allows(n_nodes: int, expected: list[int]) -> None:
    """priority_step auto (the default): the backups' master-down timers end step x advert / 256 apart
    (RFC 5798 skew), so the step is as wide as the base allows (at most 50), the lowest at 2 or more:
    above a handover's held node (priority 1)."""
    m = build_model(pillar(n_nodes, n_nodes), "proxy1")
    for inst in m["vrrp"]["instances"]:
        assert sorted(inst["priorities"].values(), reverse=True) == expected, inst["priorities"]


def test_auto_priority_step_follows_the_base_and_an_explicit_step_wins() -> None:
    low = build_model(pillar(3, 3, vrrp={"priority_base": 42}), "proxy1")
    assert sorted(low["vrrp"]["instances"][0]["priorities"].values()) == [2, 22, 42]
    many = build_model(pillar(40, 1), "proxy1")  # 148 // 39 = 3
    assert sorted(many["vrrp"]["instances"][0]["priorities"].values())[:2] == [33, 36]
    explicit = build_model(pillar(3, 3, vrrp={"priority_step": 10}), "proxy1")
    assert sorted(explicit["vrrp"]["instances"][0]["priorities"].values()) == [130, 140, 150]
