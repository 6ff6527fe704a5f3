"""vip_mode bgp: for every node of tests/pillar/bgp.sls (an IPv4 and an IPv6 service address, two
routers, BFD, a password, communities, one node in maintenance) Debian's BIRD accepts the rendered
bird.conf (`bird -p -c`, the formula's check before a live file is replaced) and HAProxy and nginx
accept theirs; a broken `extra` line is refused with BIRD's own message; the states of the mode
(check.sls, keepalived.sls, bgp.sls) say what they should; and, in two network namespaces of the
test's own, a router running BIRD learns the node's addresses from the rendered config and the
formula's gate, and loses them within a second when the node's HAProxy stops answering."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import FORMULA, HOST_CHECK_USER, ROOT, build_model, os_params, render

from .test_render import check
from .test_tls_states import _args, render_sls

BGP = ROOT / "tests" / "pillar" / "bgp.sls"
NODES = ["proxy1", "proxy2", "proxy3"]
SECRET = "lab-secret"
FIXTURES = Path(__file__).parent / "fixtures"

needs_bird = pytest.mark.skipif(not shutil.which("bird"), reason="needs bird (Debian's bird2; make test installs it)")


def bgp_pillar() -> dict[str, Any]:
    return yaml.safe_load(BGP.read_text())["proxytier"]


def bird_conf(model: dict[str, Any]) -> str:
    """bird.conf as Salt renders it: the template asks proxytier.bgp_password for each password."""
    return render("bird.conf.jinja", model, salt={"proxytier.bgp_password": lambda name: SECRET})


def bird_check(text: str, tmp: Path, name: str = "bird.conf") -> subprocess.CompletedProcess[str]:
    path = tmp / name
    path.write_text(text)
    return subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=30)


@needs_bird
@pytest.mark.parametrize("node", NODES)
def test_bird_accepts_every_nodes_config(node: str, tmp_path: Path) -> None:
    model = build_model(bgp_pillar(), node, params=os_params())
    text = bird_conf(model)
    res = bird_check(text, tmp_path)
    assert res.returncode == 0, f"bird rejected {node}'s config:\n{res.stdout}{res.stderr}\n{text}"
    assert f"router id {model['node']['address']};" in text
    assert f'password "{SECRET}";' in text
    communities = "bgp_community.add((64512, 100));" in text and "bgp_large_community.add((4200000000, 1, 2));" in text
    assert communities is (node != "proxy3")
    assert "kernel table 200;" in text
    # proxy3 is in maintenance: its export filters reject everything, its sessions are still configured
    exports = [line.strip() for line in text.splitlines() if line.strip() in ("reject;", "accept;")]
    assert exports == (["reject;", "reject;"] if node == "proxy3" else ["accept;", "reject;", "accept;", "reject;"])
    assert text.count("protocol bgp ") == 2


@needs_bird
def test_bird_accepts_an_ipv4_only_ibgp_tier_without_bfd_or_password(tmp_path: Path) -> None:
    p = bgp_pillar()
    p["vips"] = ["198.18.0.100", "198.18.0.101/32"]
    p["bgp"] = {"asn": 64512, "peers": [{"address": "198.18.0.1", "asn": 64512, "bfd": False},
                                        {"address": "198.18.0.2", "asn": 64512, "bfd": False}]}
    model = build_model(p, "proxy2", params=os_params())
    text = bird_conf(model)
    res = bird_check(text, tmp_path)
    assert res.returncode == 0, f"{res.stdout}{res.stderr}\n{text}"
    assert "protocol bfd" not in text and "password" not in text and "proxytier_gate6" not in text
    assert "import where net ~ [ 198.18.0.100/32, 198.18.0.101/32 ];" in text


@needs_bird
def test_a_broken_extra_line_is_refused_by_bird(tmp_path: Path) -> None:
    p = bgp_pillar()
    p["bgp"]["extra"] = {"peer": ["hold time 1;"]}
    res = bird_check(bird_conf(build_model(p, "proxy1", params=os_params())), tmp_path)
    assert res.returncode != 0
    assert "Hold time must be in range 3-65535 or zero" in res.stdout + res.stderr


@pytest.mark.skipif(not all(shutil.which(b) for b in ("nginx", "haproxy", "unshare")),
                    reason="needs nginx, haproxy and unshare")
@pytest.mark.parametrize("node", NODES)
def test_haproxy_and_nginx_accept_every_nodes_config(node: str, tmp_path: Path) -> None:
    params = os_params(libexec_dir=str(FORMULA / "files"), tls_dir=str(tmp_path), exporter_log_dir=str(tmp_path),
                       **HOST_CHECK_USER)
    model = build_model(bgp_pillar(), node, params=params)
    for name, template in (("nginx", "nginx.conf.jinja"), ("haproxy", "haproxy.cfg.jinja")):
        path = tmp_path / f"{node}-{name}.conf"
        path.write_text(render(template, model))
        res = check(name, path, model["node"]["address"], model["node"]["address6"])
        assert res.returncode == 0, f"{name} rejected {node}'s config:\n{res.stdout}{res.stderr}"
    assert "bind 198.18.0.100:80" in (tmp_path / f"{node}-haproxy.conf").read_text()


def test_the_check_runs_bird_instead_of_keepalived_in_bgp_mode() -> None:
    model = build_model(bgp_pillar(), "proxy1", params=os_params())
    states = render_sls("check", model)
    bird = _args(states["proxytier-check-bird"])
    assert bird["check_cmd"] == "/usr/sbin/bird -p -c"
    assert bird["source"] == "salt://proxytier/templates/bird.conf.jinja"
    assert bird["show_changes"] is False
    assert "proxytier-check-keepalived" not in states
    assert {"file": "proxytier-check-bird"} in _args(states["proxytier-check-all"])["require"]
    vrrp = render_sls("check", build_model(yaml.safe_load((ROOT / "tests" / "pillar" / "lab-static.sls")
                                                          .read_text())["proxytier"], "proxy1", params=os_params()))
    assert "proxytier-check-bird" not in vrrp and "proxytier-check-keepalived" in vrrp


def test_keepalived_sls_is_the_bgp_sls_in_bgp_mode() -> None:
    model = build_model(bgp_pillar(), "proxy1", params=os_params())
    assert render_sls("keepalived", model) == {"include": ["proxytier.bgp"]}
    states = render_sls("bgp", model)
    stopped = _args(states["proxytier-bgp-keepalived-stopped"])
    assert stopped["name"] == "keepalived" and stopped["enable"] is False
    config = _args(states["proxytier-bgp-config"])
    assert config["name"] == "/etc/bird/bird.conf" and config["source"] == "/var/lib/proxytier/staged/bird.conf"
    assert config["mode"] == "0640" and config["group"] == "bird" and config["show_changes"] is False
    assert {"test": "proxytier-check-all"} in config["require"]
    service = _args(states["proxytier-bgp-service"])
    assert service["reload"] is True and {"file": "proxytier-bgp-config"} in service["watch"]
    gate = _args(states["proxytier-bgp-gate-config"])
    assert gate["dataset"]["addresses"] == ["198.18.0.100", "2001:2::100"] and gate["dataset"]["table"] == 200
    assert _args(states["proxytier-bgp-gate-service"])["reload"] is True
    assert SECRET not in json.dumps(states)
    packages = render_sls("packages", model)
    assert "bird2" in _args(packages["proxytier-packages"])["pkgs"]


def test_back_in_vrrp_mode_keepalived_sls_takes_away_what_bgp_mode_left() -> None:
    """VRRP mode stops and removes the gate, takes its addresses off the interface, stops BIRD only where
    the formula ran it (the gate's configuration exists), removes the formula's files; every path is the
    one BGP mode used (one source: proxytier_bgp.files)."""
    import proxytier_bgp

    lab = build_model(yaml.safe_load((ROOT / "tests" / "pillar" / "lab-static.sls").read_text())["proxytier"],
                      "proxy1", params=os_params())
    states = render_sls("keepalived", lab, {"proxytier.bgp_files": proxytier_bgp.files})
    where = proxytier_bgp.files(lab["params"])
    bgp = build_model(bgp_pillar(), "proxy1", params=os_params())["bgp"]
    assert where["gate_config"] == bgp["paths"]["gate_config"] == "/etc/proxytier/bgp-gate.json"
    assert where["gate_unit"] == bgp["paths"]["gate_unit"] and where["gate_script"] == bgp["gate_unit"]["script"]
    assert where["service"] == bgp["service"] == "bird"
    gate = _args(states["proxytier-bgp-off-gate"])
    assert gate["name"] == "proxytier-bgp-gate" and gate["enable"] is False
    addresses = _args(states["proxytier-bgp-off-addresses"])
    assert addresses["name"] == ("/usr/bin/python3 /usr/local/libexec/proxytier/proxytier_bgp_gate.py --retire "
                                 "/etc/proxytier/bgp-gate.json")
    assert addresses["onlyif"] == "test -f /etc/proxytier/bgp-gate.json"
    assert addresses["require"] == [{"service": "proxytier-bgp-off-gate"}]
    bird = _args(states["proxytier-bgp-off-bird"])
    assert (bird["name"], bird["enable"], bird["onlyif"]) == ("bird", False, "test -f /etc/proxytier/bgp-gate.json")
    for path in (where["gate_config"], where["gate_unit"], where["gate_script"],
                 "/etc/systemd/system/bird.service.d/proxytier.conf"):
        assert _args(states[f"proxytier-bgp-off-{path}"]) == {"name": path,
                                                               "require": [{"service": "proxytier-bgp-off-bird"}]}
    reload_ = _args(states["proxytier-bgp-off-daemon-reload"])
    assert {"file": f"proxytier-bgp-off-{where['gate_unit']}"} in reload_["onchanges"]
    assert "proxytier-keepalived-service" in states


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_the_gate_retire_removes_its_addresses_and_routes(tmp_path: Path) -> None:
    """proxytier_bgp_gate.py --retire, in a network namespace of the test's own: what the gate left (the
    addresses on lo, the routes in its table) goes; a second run finds nothing and still exits 0."""
    cfg = {"table": 200, "interface": "lo", "addresses": ["198.18.0.100", "2001:2::100"]}
    (tmp_path / "gate.json").write_text(json.dumps(cfg))
    gate = FORMULA / "files" / "proxytier_bgp_gate.py"
    script = f"""set -e
ip link set lo up
ip addr add 198.18.0.100/32 dev lo
ip -6 addr add 2001:2::100/128 dev lo preferred_lft 0
ip route add 198.18.0.100/32 dev lo table 200 proto static
ip -6 route add 2001:2::100/128 dev lo table 200 proto static
{sys.executable} {gate} --retire {tmp_path / "gate.json"}
echo "rc2 $({sys.executable} {gate} --retire {tmp_path / "gate.json"} >/dev/null; echo $?)"
echo "left: $(ip addr show dev lo | grep -cE '198.18.0.100|2001:2::100') $(ip route show table 200 | wc -l)"
"""
    res = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ip -4 addr del 198.18.0.100/32 dev lo" in res.stdout and "ip -6 route del 2001:2::100/128 table 200" \
        in res.stdout, res.stdout
    assert "rc2 0" in res.stdout and "left: 0 0" in res.stdout, res.stdout


def test_the_gate_unit_runs_unprivileged_and_withdraws_however_it_ends() -> None:
    model = build_model(bgp_pillar(), "proxy1", params=os_params())
    unit = render("bgp-gate.service.jinja", model)
    assert "User=proxytier-check\n" in unit and "AmbientCapabilities=CAP_NET_ADMIN\n" in unit
    assert ("ExecStart=/usr/bin/python3 /usr/local/libexec/proxytier/proxytier_bgp_gate.py "
            "/etc/proxytier/bgp-gate.json\n") in unit
    assert "ExecStopPost=-/usr/sbin/ip -4 route flush table 200\n" in unit
    assert "ExecStopPost=-/usr/sbin/ip -6 route flush table 200\n" in unit
    assert "RuntimeDirectory=proxytier-bgp-gate\n" in unit


ROUTER = """\
router id 198.18.0.1;
protocol device { }
protocol bfd { }
protocol bgp node4 {
    local 198.18.0.1 as 64496; neighbor 198.18.0.11 as 64512; direct;
    password "SECRET"; bfd on; connect delay time 1; hold time 9; keepalive time 3;
    ipv4 { import all; export none; };
}
protocol bgp node6 {
    local 2001:2::1 as 64496; neighbor 2001:2::11 as 64512; direct; connect delay time 1;
    ipv6 { import all; export none; };
}
""".replace("SECRET", SECRET)


@needs_bird
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                    reason="needs root, unshare and nsenter (network namespaces)")
def test_a_router_gets_the_addresses_only_while_haproxy_answers(tmp_path: Path) -> None:
    p = copy.deepcopy(bgp_pillar())
    p["bgp"]["extra"] = {"peer": ["connect delay time 1;"]}
    model = build_model(p, "proxy1", params=os_params())
    (tmp_path / "node.conf").write_text(bird_conf(model))
    (tmp_path / "node-serving.conf").write_text(bird_conf(model))
    p["bgp"]["maintenance"] = ["proxy1"]
    (tmp_path / "node-maintenance.conf").write_text(bird_conf(build_model(p, "proxy1", params=os_params())))
    (tmp_path / "router.conf").write_text(ROUTER)
    gate = {**model["bgp"]["gate"], "hold_file": str(tmp_path / "hold"), "state_file": str(tmp_path / "state.json")}
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    res = subprocess.run(
        ["unshare", "--net", sys.executable, str(FIXTURES / "bgp_gate_netns.py"), str(tmp_path),
         str(FORMULA / "files" / "proxytier_bgp_gate.py")],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["announced_s"] is not None, out
    assert "198.18.0.100/32" in out["lo"] and "2001:2::100/128" in out["lo"]
    assert "(64512,100)" in out["route4"] and "(4200000000, 1, 2)" in out["route4"], out["route4"]
    assert "(65535,0)" not in out["route4"], out["route4"]
    assert "198.18.0.11" in out["bfd"] and "Up" in out["bfd"], out["bfd"]
    assert "198.18.0.100 dev lo proto static" in out["gate_table"]
    # HAProxy's stand-in stops answering: withdrawn within a second (interval 0.2 s x fall 2 + BGP),
    # the address stays on the node (its established connections go on)
    assert out["haproxy_dead_withdrawn_s"] is not None and out["haproxy_dead_withdrawn_s"] < 1.0, out
    assert "198.18.0.100/32" in out["lo_after_withdraw"]
    assert out["haproxy_back_announced_s"] is not None, out
    # a graceful hold: still announced, with GRACEFUL_SHUTDOWN beside the pillar's communities, within a second
    assert out["graceful_marked_s"] is not None and out["graceful_marked_s"] < 1.0, out
    assert "(65535,0)" in out["graceful_route4"] and "(64512,100)" in out["graceful_route4"], out["graceful_route4"]
    assert "198.18.0.100 dev lo proto 201" in out["graceful_gate_table"], out["graceful_gate_table"]
    # what the lab router's helper reads from such a reply (lab/resilient.py): one path, graceful; not before
    from lab.resilient import parse_routes

    assert [(r.via, r.graceful) for r in parse_routes(out["graceful_route4"])] == [("198.18.0.11", True)]
    assert [(r.via, r.graceful) for r in parse_routes(out["route4"])] == [("198.18.0.11", False)]
    assert out["held_withdrawn_s"] is not None and out["held_withdrawn_s"] < 1.0, out
    assert out["unheld_announced_s"] is not None, out
    # maintenance through the config and a reload: withdrawn, the sessions never restarted
    assert "Reconfigured" in out["maintenance_configure"], out["maintenance_configure"]
    assert out["maintenance_withdrawn_s"] is not None and out["maintenance_withdrawn_s"] < 1.0, out
    assert out["maintenance_over_announced_s"] is not None, out
    assert len(out["sessions"]) == 2 and all("Established" in line for line in out["sessions"]), out["sessions"]
    assert out["sessions_kept_over_maintenance"] and out["sessions_kept_after_maintenance"], out
    assert out["gate_stopped_withdrawn_s"] is not None and out["gate_stopped_withdrawn_s"] < 1.0, out
    assert out["gate_table_after_stop"].strip() == ""
