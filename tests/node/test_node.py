"""A converged proxytier node: packages, daemons, their configuration, listeners, HTTP answers, VRRP and
the exporter, each compared with the formula's own view of this node (the `pt` fixture, see conftest.py).

Runs against a kitchen container or the lab's nodes; never changes anything on the node."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from .nodelib import Node, parse_metrics

DAEMONS = ("nginx", "haproxy", "keepalived")
# HAProxy's monitor URI, as the formula's haproxy.cfg and check-haproxy script have it
MONITOR_URI = "/proxytier-monitor"


def config_check_command(pt: dict[str, Any], daemon: str) -> str:
    """The check each config file passed before the formula installed it (the states' check_cmd)."""
    p = pt["params"]
    return {
        "nginx": f"{p['bin']['nginx']} -t -q -c {p['config']['nginx']}",
        "haproxy": f"{p['bin']['haproxy']} -c -q -f {p['config']['haproxy']}",
        # keepalived 2.2.7's -t may exit 143 on a good file: the formula's wrapper handles it
        "keepalived": f"{p['libexec_dir']}/check-keepalived {p['config']['keepalived']}",
    }[daemon]


def exporter_or_skip(pt: dict[str, Any]) -> dict[str, Any]:
    if not pt["exporter"]["enabled"]:
        pytest.skip("the exporter is disabled in this node's pillar (proxytier:exporter:enabled)")
    return pt["exporter"]


# --- the node and its model -------------------------------------------------------------------------------


def test_formula_view_is_of_this_node(node: Node, pt: dict[str, Any]) -> None:
    ids = [m["id"] for m in pt["members"]]
    assert pt["node"]["id"] in ids, f"{pt['node']['id']} is not among the tier's members {ids}"
    if node.minion_id is not None:
        assert pt["node"]["id"] == node.minion_id
    on_interface = node.addresses(pt["interface"])
    assert pt["node"]["address"] in on_interface, (
        f"the member address {pt['node']['address']} is not on {pt['interface']} ({sorted(on_interface)}): "
        "nginx and the exporter bind it"
    )


def test_packages_installed(host: Any, pt: dict[str, Any]) -> None:
    names = list(pt["params"]["pkgs"].values())  # the formula installs every one of them
    if pt["exporter"]["enabled"]:
        names += pt["params"]["exporter_pkgs"]
    missing = [n for n in names if not host.package(n).is_installed]
    assert not missing, f"packages not installed: {missing}"


def test_nonlocal_bind_enabled(host: Any) -> None:
    """HAProxy binds every VIP, also those another node holds."""
    assert host.file("/proc/sys/net/ipv4/ip_nonlocal_bind").content_string.strip() == "1"


# --- daemons and their configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("daemon", DAEMONS)
def test_daemon_running_and_enabled(host: Any, pt: dict[str, Any], daemon: str) -> None:
    service = host.service(pt["params"]["services"][daemon])
    assert service.is_running, f"{service.name} is not running"
    assert service.is_enabled, f"{service.name} does not start at boot"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_config_is_this_nodes_and_accepted(node: Node, host: Any, pt: dict[str, Any], daemon: str) -> None:
    path = pt["params"]["config"][daemon]
    conf = host.file(path)
    assert conf.exists, f"{path} is missing"
    assert f"Node {pt['node']['id']}" in conf.content_string, f"{path} was not rendered for {pt['node']['id']}"
    res = node.run(config_check_command(pt, daemon))
    assert res.rc == 0, f"{daemon} rejects its live configuration {path}:\n{res.stdout}{res.stderr}"


def test_keepalived_instances_are_the_models(host: Any, pt: dict[str, Any]) -> None:
    """One vrrp_instance per VIP, with the VRID, this node's priority and the VIP the model gives."""
    text = host.file(pt["params"]["config"]["keepalived"]).content_string
    live = {}
    for name, body in re.findall(r"^vrrp_instance (\S+) \{\n(.*?)^\}", text, re.M | re.S):
        vrid = re.search(r"^\s*virtual_router_id (\d+)$", body, re.M)
        prio = re.search(r"^\s*priority (\d+)$", body, re.M)
        vips = re.search(r"virtual_ipaddress \{\s*(\S+)", body)
        live[name] = (
            int(vrid.group(1)) if vrid else None,
            int(prio.group(1)) if prio else None,
            vips.group(1) if vips else None,
        )
    expected = {i["name"]: (i["vrid"], i["priority"], i["cidr"]) for i in pt["vrrp"]["instances"]}
    assert live == expected


# --- listeners ---------------------------------------------------------------------------------------------


def expected_listeners(pt: dict[str, Any]) -> dict[str, str]:
    """'addr:port' -> the process that must listen there."""
    want = {site["listen"]: "nginx" for site in pt["nginx"]["sites"]}
    want[f"127.0.0.1:{pt['nginx']['status_port']}"] = "nginx"
    for fe in pt["haproxy"]["frontends"]:
        want.update({b["address"]: "haproxy" for b in fe["binds"]})
    want[f"127.0.0.1:{pt['haproxy']['monitor_port']}"] = "haproxy"
    if pt["exporter"]["enabled"]:
        want[pt["exporter"]["listen"]] = "python3"
    return want


@pytest.mark.parametrize(("daemon", "process"), [("nginx", "nginx"), ("haproxy", "haproxy"), ("exporter", "python3")])
def test_listeners(node: Node, pt: dict[str, Any], daemon: str, process: str) -> None:
    """nginx on the node address and 127.0.0.1 (status), HAProxy on every VIP (held or not) and its
    monitor port, the exporter (a python3 process) on the node address."""
    want = {addr for addr, proc in expected_listeners(pt).items() if proc == process}
    if not want:
        pytest.skip("the exporter is disabled in this node's pillar")
    found = node.listeners()
    wrong = {addr: sorted(found.get(addr, ())) for addr in sorted(want) if process not in found.get(addr, ())}
    assert not wrong, f"not listened on by {daemon} (address: who listens): {wrong}"


# --- HTTP on the node --------------------------------------------------------------------------------------


def test_nginx_health_on_every_site(node: Node, pt: dict[str, Any]) -> None:
    path = pt["nginx"]["health_path"]
    for site in pt["nginx"]["sites"]:
        if site["proxy_protocol"]:  # that server answers only after a PROXY protocol header
            status, body = node.http_get_proxy_v2(site["listen"], path)
        else:
            status, body = node.http_get(f"http://{site['listen']}{path}")
        # (Salt's cmd.run strips the trailing newline nginx sends)
        where = f"nginx {site['name']} on {site['listen']}{path}"
        assert (status, body.strip()) == (200, "ok"), f"{where}: {status} {body!r}"


def test_nginx_status_server(node: Node, pt: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{pt['nginx']['status_port']}"
    status, body = node.http_get(base + "/stub_status")
    assert status == 200 and body.startswith("Active connections:"), f"{base}/stub_status: {status} {body!r}"
    status, body = node.http_get(base + pt["nginx"]["health_path"])
    assert status == 200, f"{base}{pt['nginx']['health_path']}: {status} {body!r}"


def test_haproxy_monitor_uri(node: Node, pt: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{pt['haproxy']['monitor_port']}{MONITOR_URI}"
    status, body = node.http_get(url)
    assert status == 200, f"{url}: {status} {body!r} (keepalived hands this node's VIPs over without it)"


def test_haproxy_sees_this_nodes_nginx_up(node: Node, pt: dict[str, Any]) -> None:
    stat = node.haproxy(pt["params"]["haproxy_stats_socket"], "show stat")
    status = {(r["pxname"], r["svname"]): r["status"] for r in csv.DictReader(io.StringIO(stat.lstrip("# ")))}
    me = pt["node"]["id"]
    for be in pt["haproxy"]["backends"]:
        assert (be["name"], me) in status, f"HAProxy backend {be['name']} has no server {me}"
        assert status[be["name"], me].startswith("UP"), f"{be['name']}/{me} is {status[be['name'], me]}"


def test_haproxy_serves_on_the_vips_this_node_holds(node: Node, pt: dict[str, Any], held: set[str]) -> None:
    """A request on each VIP the node holds goes HAProxy -> nginx (its health path, no backend needed)."""
    path = pt["nginx"]["health_path"]
    tried = 0
    for fe in pt["haproxy"]["frontends"]:
        for bind in fe["binds"]:
            vip = bind["address"].rsplit(":", 1)[0].strip("[]")
            if vip not in held:
                continue
            tried += 1
            scheme = "https" if bind["tls"] else "http"
            status, body = node.http_get(f"{scheme}://{bind['address']}{path}")
            expect = 301 if fe["redirect_http"] and not bind["tls"] else 200
            assert status == expect, f"{fe['name']} on {scheme}://{bind['address']}{path}: {status} {body!r}"
    if not tried:
        pytest.skip("this node holds no VIP now")


# --- VRRP --------------------------------------------------------------------------------------------------


def test_holds_the_vips_it_is_preferred_master_of(pt: dict[str, Any], held: set[str]) -> None:
    owned = [i["address"] for i in pt["vrrp"]["instances"] if i["is_owner"]]
    missing = [v for v in owned if v not in held]
    assert not missing, f"{pt['node']['id']} is the preferred MASTER of {missing} but does not hold them"


def test_alone_node_holds_every_vip(node: Node, pt: dict[str, Any], held: set[str]) -> None:
    if not node.alone:
        pytest.skip("the node has VRRP peers (no --node-alone)")
    missing = [v for v in pt["vips"] if v not in held]
    assert not missing, f"with no VRRP peer the node must be MASTER of every VIP; it does not hold {missing}"


def metrics(node: Node, pt: dict[str, Any]) -> list[tuple[str, dict[str, str], float]]:
    exporter = exporter_or_skip(pt)
    status, body = node.http_get(f"http://{exporter['listen']}/metrics")
    assert status == 200, f"exporter on {exporter['listen']}: {status} {body[:500]!r}"
    return parse_metrics(body)


def test_vrrp_master_exactly_where_the_vip_is_held(node: Node, pt: dict[str, Any], held: set[str]) -> None:
    """keepalived's states (as the exporter reads them) agree with the kernel: MASTER <=> VIP on the node."""
    states = {
        labels["vrrp_instance"]: labels["state"]
        for name, labels, value in metrics(node, pt)
        if name == "proxytier_keepalived_vrrp_state" and value == 1
    }
    for inst in pt["vrrp"]["instances"]:
        state = states.get(inst["name"])
        assert state in ("MASTER", "BACKUP"), f"{inst['name']} is {state} (expected MASTER or BACKUP)"
        assert (state == "MASTER") == (inst["address"] in held), (
            f"{inst['name']} is {state} but the node {'holds' if inst['address'] in held else 'lacks'} "
            f"{inst['address']}"
        )


# --- the exporter ------------------------------------------------------------------------------------------


def test_exporter_running_and_enabled(host: Any, pt: dict[str, Any]) -> None:
    exporter_or_skip(pt)
    name = pt["params"]["exporter_service"]
    service = host.service(name)
    assert service.is_running, f"{name} is not running"
    assert service.is_enabled, f"{name} does not start at boot"


def test_the_access_log_for_the_exporter_is_nginx_s_and_readable_by_the_exporter_only(host: Any,
                                                                                     pt: dict[str, Any]) -> None:
    exporter_or_skip(pt)
    log = host.file(pt["exporter"]["access_log"])
    assert log.is_file, f"{pt['exporter']['access_log']} missing"
    owner = (log.user, log.group, oct(log.mode))
    assert owner == (pt["params"]["nginx_user"], pt["params"]["exporter_user"], "0o640"), owner


def test_exporter_collects_every_daemon(node: Node, pt: dict[str, Any], held: set[str]) -> None:
    samples = metrics(node, pt)
    names = {name for name, _, _ in samples}
    assert "proxytier_build_info" in names
    success = {labels["collector"]: value for name, labels, value in samples if name == "proxytier_collector_success"}
    expected = {"vip", "haproxy", "nginx", "nginx_access_log"}
    if "--keepalived.source=none" not in pt["exporter"]["args"]:
        expected.add("keepalived")
    failing = {c: success.get(c) for c in sorted(expected) if success.get(c) != 1}
    assert not failing, f"collectors not succeeding (None: absent): {failing}"
    owned = {labels["vip"]: value == 1 for name, labels, value in samples if name == "proxytier_vip_owned"}
    assert owned == {v: v in held for v in pt["vips"]}, "proxytier_vip_owned disagrees with ip addr"


def test_formulas_own_verify_passes(node: Node, pt: dict[str, Any]) -> None:
    """proxytier.verify: nginx health, HAProxy monitor, its nginx UP in HAProxy, its VIPs held."""
    result = node.salt("proxytier.verify", timeout=20)
    assert isinstance(result, dict) and result.get("node") == pt["node"]["id"], f"proxytier.verify: {result}"
