"""vip_mode bgp: the model of a tier whose nodes announce the service addresses over BGP (BIRD),
and one clear error (key, value, fix) for each kind of bad value in the bgp section."""

from __future__ import annotations

import copy
import json
from typing import Any

import proxytier_bgp
import pytest
import yaml
from formula import ROOT, ProxytierError, build_model, example_pillar, os_params

BGP = ROOT / "tests" / "pillar" / "bgp.sls"
SECRET = "lab-secret"


def bgp_pillar() -> dict[str, Any]:
    return yaml.safe_load(BGP.read_text())["proxytier"]


def test_every_node_announces_every_address_and_keepalived_holds_none() -> None:
    for node, rid in (("proxy1", "198.18.0.11"), ("proxy2", "198.18.0.12"), ("proxy3", "198.18.0.13")):
        m = build_model(bgp_pillar(), node, params=os_params())
        assert m["vip_mode"] == "bgp" and m["mode"] == "active-active"
        assert m["vips"] == ["198.18.0.100", "2001:2::100"]
        assert m["bgp"]["addresses4"] == ["198.18.0.100"] and m["bgp"]["addresses6"] == ["2001:2::100"]
        assert m["bgp"]["router_id"] == rid
        assert [(p["address"], p["local"]) for p in m["bgp"]["peers"]] == [
            ("198.18.0.1", rid), ("2001:2::1", f"2001:2::{rid.rsplit('.', 1)[1]}")]
        # proxy3 is in maintenance: it withdraws everything
        assert m["bgp"]["maintenance"] is (node == "proxy3")
        assert m["vrrp"]["instances"] == []
        # HAProxy binds every address on every node
        assert [b["address"] for b in m["haproxy"]["frontends"][0]["binds"]] == ["198.18.0.100:80", "[2001:2::100]:80"]
        assert [d["service"] for d in m["systemd_dropins"]] == ["nginx", "bird"]
        assert "--keepalived.source=none" in m["exporter"]["args"]
        assert [(r["address"], r["owner"]) for r in m["dns"]] == [("198.18.0.100", None), ("2001:2::100", None)]


def test_a_vrrp_tier_has_no_bgp_part() -> None:
    m = build_model(example_pillar(), "proxy1")
    assert "bgp" not in m and "vip_mode" not in m
    assert len(m["vrrp"]["instances"]) == 3


def test_the_password_never_enters_the_model() -> None:
    m = build_model(bgp_pillar(), "proxy1", with_secrets=True)
    assert SECRET not in json.dumps(m)
    assert m["bgp"]["peers"][0]["password"]["sha256"]
    assert m["bgp"]["peers"][1]["password"] is None
    assert proxytier_bgp.password(bgp_pillar()["bgp"], "peer1") == SECRET
    with pytest.raises(ProxytierError, match="no peer 'peer2' with a password"):
        proxytier_bgp.password(bgp_pillar()["bgp"], "peer2")


def test_a_changed_password_changes_the_model() -> None:
    p = bgp_pillar()
    p["bgp"]["peers"][0]["password"] = "other-secret"
    assert build_model(p, "proxy1")["bgp"] != build_model(bgp_pillar(), "proxy1")["bgp"]


def test_router_id_can_be_set_and_an_ipv6_only_node_needs_it() -> None:
    p = bgp_pillar()
    p["bgp"]["router_id"] = "198.18.7.1"
    assert build_model(p, "proxy1")["bgp"]["router_id"] == "198.18.7.1"
    p = bgp_pillar()
    p["members"] = [{"id": f"proxy{i}", "address": f"2001:2::1{i}"} for i in (1, 2, 3)]
    p["vips"] = ["2001:2::100"]
    p["bgp"]["peers"] = [{"address": "2001:2::1", "asn": 64496}]
    p["bgp"]["maintenance"] = []
    p["sites"][0]["backends"] = [{"address": "[2001:2::21]:8080"}]
    with pytest.raises(ProxytierError, match=r"proxytier:bgp:router_id = None: proxy1 has no IPv4 address"):
        build_model(p, "proxy1")


def set_path(p: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    p = copy.deepcopy(p)
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(":")]
    node: Any = p
    for k in keys[:-1]:
        node = node.setdefault(k, {}) if isinstance(node, dict) else node[k]
    node[keys[-1]] = value
    return p


BAD = [
    # (pillar path, value, expected message fragments)
    ("vip_mode", "ospf", ["proxytier:vip_mode = 'ospf'", "'vrrp'", "'bgp'"]),
    ("bgp:asn", None, ["proxytier:bgp:asn = None", "set this node's AS number"]),
    ("bgp:asn", 0, ["proxytier:bgp:asn = 0", "1..4294967294"]),
    ("bgp:asn", 23456, ["proxytier:bgp:asn = 23456", "AS_TRANS"]),
    ("bgp:asn", 4294967295, ["proxytier:bgp:asn = 4294967295", "1..4294967294"]),
    ("bgp:asn", "64512", ["proxytier:bgp:asn = '64512'", "whole number"]),
    ("bgp:asn", True, ["proxytier:bgp:asn = True"]),
    ("bgp:router_id", "0.0.0.0", ["proxytier:bgp:router_id = '0.0.0.0'", "RFC 6286"]),
    ("bgp:router_id", "2001:2::11", ["proxytier:bgp:router_id = '2001:2::11'", "IPv4 address"]),
    ("bgp:interface", "lo ; x", ["proxytier:bgp:interface = 'lo ; x'", "interface name"]),
    ("bgp:hold_time", 2, ["proxytier:bgp:hold_time = 2", "0 (no keepalives) or 3..65535", "refuses 1 and 2"]),
    ("bgp:hold_time", 70000, ["proxytier:bgp:hold_time = 70000", "3..65535"]),
    ("bgp:keepalive_time", 0, ["proxytier:bgp:keepalive_time = 0", "1..65535"]),
    ("bgp:keepalive_time", 4, ["proxytier:bgp:keepalive_time = 4", "a third of hold_time (9 s", "use 3 or less"]),
    ("bgp:connect_retry_time", 0, ["proxytier:bgp:connect_retry_time = 0", "1..65535"]),
    ("bgp:bfd:min_rx_interval", 5, ["proxytier:bgp:bfd:min_rx_interval = 5", "10..10000", "milliseconds"]),
    ("bgp:bfd:min_tx_interval", "100ms", ["proxytier:bgp:bfd:min_tx_interval = '100ms'", "whole number"]),
    ("bgp:bfd:multiplier", 0, ["proxytier:bgp:bfd:multiplier = 0", "1..255", "RFC 5880"]),
    ("bgp:bfd:multipler", 3, ["proxytier:bgp:bfd:multipler: unknown key", "did you mean 'multiplier'"]),
    ("bgp:communities", "64512:100", ["proxytier:bgp:communities = '64512:100'", "a list"]),
    ("bgp:communities:0", "64512:70000", ["proxytier:bgp:communities:0 = '64512:70000'", "each 0..65535"]),
    ("bgp:communities:0", "65536:1", ["proxytier:bgp:communities:0 = '65536:1'", "'ASN:value'"]),
    ("bgp:communities:1", "4294967296:1:2", ["proxytier:bgp:communities:1 = '4294967296:1:2'", "0..4294967295"]),
    ("bgp:communities:0", "no-export", ["proxytier:bgp:communities:0 = 'no-export'"]),
    ("bgp:peers", [], ["proxytier:bgp:peers = []", "list the routers"]),
    ("bgp:peers:0:address", "198.18.0.300", ["proxytier:bgp:peers:0:address = '198.18.0.300'", "IP address"]),
    ("bgp:peers:0:address", "fe80::1", ["proxytier:bgp:peers:0:address = 'fe80::1'", "link-local"]),
    ("bgp:peers:0:address", "224.0.0.5", ["proxytier:bgp:peers:0:address = '224.0.0.5'", "multicast"]),
    ("bgp:peers:1:address", "198.18.0.1", ["proxytier:bgp:peers:1:address = '198.18.0.1'", "duplicate of "
                                           "proxytier:bgp:peers:0"]),
    ("bgp:peers:0:asn", None, ["proxytier:bgp:peers:0:asn = None", "the router's AS number"]),
    ("bgp:peers:0:asn", 23456, ["proxytier:bgp:peers:0:asn = 23456", "AS_TRANS"]),
    ("bgp:peers:0:bfd", "yes", ["proxytier:bgp:peers:0:bfd = 'yes'", "true or false"]),
    ("bgp:peers:0:password", 'sec"ret', ["proxytier:bgp:peers:0:password = '***'", "without '\"'"]),
    ("bgp:peers:0:password", "x" * 81, ["proxytier:bgp:peers:0:password = '***'", "1..80"]),
    ("bgp:peers:0:pasword", "x", ["proxytier:bgp:peers:0:pasword: unknown key", "did you mean 'password'"]),
    ("bgp:maintenance", "proxy3", ["proxytier:bgp:maintenance = 'proxy3'", "a list of member ids"]),
    ("bgp:maintenance:0", "proxy9", ["proxytier:bgp:maintenance:0 = 'proxy9'",
                                     "not a member (proxy1, proxy2, proxy3)"]),
    ("bgp:gate:table", 254, ["proxytier:bgp:gate:table = 254", "except 253, 254 and 255"]),
    ("bgp:gate:table", 0, ["proxytier:bgp:gate:table = 0"]),
    ("bgp:gate:interval", 0.01, ["proxytier:bgp:gate:interval = 0.01", "0.05..5"]),
    ("bgp:gate:fall", 0, ["proxytier:bgp:gate:fall = 0", "1..100"]),
    ("bgp:gate:rise", 101, ["proxytier:bgp:gate:rise = 101", "1..100"]),
    ("bgp:extra:peer", ["a\nb"], ["proxytier:bgp:extra:peer", "one configuration line"]),
    ("vips:0:vrid", 51, ["proxytier:vips:0:vrid = 51", "VRRP setting", "remove it"]),
    ("vips:0:owner", "proxy1", ["proxytier:vips:0:owner = 'proxy1'", "VRRP setting"]),
    ("vips:0:address", "198.18.0.100/24", ["proxytier:vips:0:address = '198.18.0.100/24'", "host route",
                                           "198.18.0.100/32"]),
    ("vips:1:address", "198.18.0.100", ["proxytier:vips:1:address = '198.18.0.100'", "duplicate of proxytier:vips:0"]),
    ("vips", [], ["proxytier:vips = []", "at least one service address"]),
    ("vip_pool", {"addresses": ["198.18.0.111/24"], "vrid_base": 60}, ["proxytier:vip_pool", "remove vip_pool"]),
    ("exporter:keepalived_source", "fifo", ["proxytier:exporter:keepalived_source = 'fifo'", "no keepalived runs"]),
]


@pytest.mark.parametrize(("path", "value", "fragments"), BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_bgp_pillar_names_key_value_and_fix(path: str, value: Any, fragments: list[str]) -> None:
    with pytest.raises(ProxytierError) as exc:
        build_model(set_path(bgp_pillar(), path, value), "proxy1")
    msg = str(exc.value)
    for frag in fragments:
        assert frag in msg, msg


def test_each_family_of_addresses_needs_a_peer_of_its_family() -> None:
    p = bgp_pillar()
    p["bgp"]["peers"] = p["bgp"]["peers"][:1]
    with pytest.raises(ProxytierError, match=r"proxytier:vips:1:address = '2001:2::100': no IPv6 peer"):
        build_model(p, "proxy1")


def test_every_member_needs_an_address_of_each_peers_family() -> None:
    p = bgp_pillar()
    del p["members"][1]["address6"]
    with pytest.raises(ProxytierError, match=r"proxytier:bgp:peers:1:address = '2001:2::1': member proxy2 has no IPv6"):
        build_model(p, "proxy1")


def test_a_bgp_section_beside_vrrp_is_refused() -> None:
    p = example_pillar()
    p["bgp"] = {"asn": 64512}
    with pytest.raises(ProxytierError, match=r"proxytier:vip_mode = 'vrrp': proxytier:bgp is set"):
        build_model(p, "proxy1")


def test_ibgp_is_recognised_and_asns_of_every_range_pass() -> None:
    for local, peer in ((64512, 64512), (4200000000, 64496), (65551, 1)):
        p = bgp_pillar()
        p["bgp"]["asn"] = local
        p["bgp"]["peers"][0]["asn"] = peer
        m = build_model(p, "proxy1")
        assert m["bgp"]["asn"] == local and m["bgp"]["peers"][0]["ibgp"] is (local == peer)


def test_verify_in_bgp_mode_asks_bird_the_gate_and_its_state(tmp_path: Any) -> None:
    import proxytier_handover
    import proxytier_runtime

    model = build_model(bgp_pillar(), "proxy1")
    model["bgp"]["gate"] = {**model["bgp"]["gate"], "hold_file": str(tmp_path / "hold"),
                            "state_file": str(tmp_path / "state.json")}
    running = {"bird": True, "proxytier-bgp-gate": True}
    checks = proxytier_runtime.bgp_checks(model, lambda unit: running[unit],
                                          lambda: proxytier_handover.gate_state(model))
    assert sorted(checks) == ["bird running", "proxytier-bgp-gate running",
                              "the gate announces 198.18.0.100, 2001:2::100"]
    announces = checks["the gate announces 198.18.0.100, 2001:2::100"]
    assert not announces()  # no state file yet
    (tmp_path / "state.json").write_text('{"announced": tr')  # torn: unreadable
    assert not announces()
    state = {"announced": False, "addresses": ["198.18.0.100", "2001:2::100"]}
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert not announces()
    (tmp_path / "hold").write_text("1\n")
    assert announces()  # held: announcing nothing is right
    (tmp_path / "hold").unlink()
    (tmp_path / "state.json").write_text(json.dumps({**state, "announced": True}))
    assert announces()
    running["bird"] = False
    assert not checks["bird running"]()


def test_the_exporter_reads_bird_and_the_gate_in_bgp_mode_and_no_vrrp_view() -> None:
    """The exporter's flags in BGP mode give it the bgp collector (BIRD's socket, the gate's state file) and no
    VIP or keepalived view (every node holds every service address on lo: VIP holder alerts would fire); its
    unit gets BIRD's group for the socket, and BIRD's configuration (group-readable, with the passwords) is
    hidden from it. In VRRP mode nothing of it."""
    from formula import render
    from proxytier_exporter.cli import build, parser

    pillar = yaml.safe_load(BGP.read_text())["proxytier"]
    exp = build_model(pillar, "proxy1", params=os_params(bird_socket="/run/bird2/ctl"))["exporter"]
    args = parser().parse_args(exp["args"])
    assert (args.bgp_source, args.bird_socket, args.bgp_state_file) == (
        "birdc", "/run/bird2/ctl", "/run/proxytier-bgp-gate/state.json")
    assert args.vips == [] and args.keepalived_config == "" and args.keepalived_source == "none"
    collectors, stops = build(parser().parse_args([*exp["args"], "--nginx.access-log-file="]))
    assert [c.name for c in collectors] == ["bgp", "haproxy", "nginx"] and stops == []
    assert exp["supplementary_groups"] == ["bird"] and exp["inaccessible_paths"] == ["/etc/bird"]
    model = build_model(pillar, "proxy1", params=os_params())
    unit = render("exporter/exporter.service.jinja", model)
    assert "\nSupplementaryGroups=haproxy bird\n" in unit and "\nInaccessiblePaths=-/etc/bird\n" in unit
    assert model["exporter"]["args"][-1] == f"--bgp.gate-state-file={model['bgp']['gate']['state_file']}"

    vrrp = build_model(yaml.safe_load((ROOT / "tests" / "pillar" / "lab-static.sls").read_text())["proxytier"],
                       "proxy1", params=os_params())
    args = parser().parse_args(vrrp["exporter"]["args"])
    assert args.bgp_source == "none" and args.vips == ["198.18.0.101", "198.18.0.102", "198.18.0.103"]
    unit = render("exporter/exporter.service.jinja", vrrp)
    assert "\nSupplementaryGroups=haproxy\n" in unit and "InaccessiblePaths" not in unit and "bird" not in unit
