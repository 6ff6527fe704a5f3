"""The lab tier in BGP mode: every node announces one service address to the lab's router (lab.router), which
spreads the client's connections over the nodes with ECMP.

The pillar is the checkout's (members from the mine, the one site) with:
- ``vip_mode: bgp`` and no ``vip_pool``: keepalived stops, every node announces every address in ``vips``;
- ``vips``: the one service address, config.BGP_SERVICE (198.18.0.200, no VRRP VIP of the pool's
  198.18.0.101..105);
- ``bgp``: the tier's AS (config.TIER_ASN), one peer, the router (config.ROUTER_ADDR, config.ROUTER_ASN),
  every other key at the formula's defaults (BFD 100 ms x 3, hold 9 s, the gate 0.2 s x 2).

The nodes' route back to the client network (config.CLIENT_NET via the router) is set by the lab, on each
node's host0, while BGP mode is on; not by the pillar: a node's routes are its network's configuration (a
default gateway, DHCP, the host's network files), which the formula does not manage and has no key for,
and this one is only right while the lab's router exists.

    python -m lab bgp                        # router + client up, the pillar applied, who answers
    python -m lab bgp --profile resilient    # the router's ECMP on a resilient next-hop group
    python -m lab bgp --off                  # back to the checkout's pillar (VRRP), router gone
"""

from __future__ import annotations

import copy
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lab import config, nodes, router, tier
from lab.sh import LabError

#: a node's route back to the client network, through the router
CLIENT_ROUTE = ["ip", "route", "replace", str(config.CLIENT_NET), "via", config.ROUTER_ADDR, "dev", "host0"]


def pillar() -> dict[str, Any]:
    """The checkout's lab pillar in BGP mode (see the module's docstring)."""
    data = copy.deepcopy(tier.default_pillar())
    pt = data["proxytier"]
    pt.pop("vip_pool", None)
    pt["vip_mode"] = "bgp"
    pt["vips"] = [{"address": config.BGP_SERVICE}]
    pt["bgp"] = {"asn": config.TIER_ASN, "peers": [{"address": config.ROUTER_ADDR, "asn": config.ROUTER_ASN}]}
    return data


def node_routes(on: bool) -> None:
    """Each running lab node's route to the client network via the router: added (on) or deleted."""
    for node in config.NODES:
        if not nodes.running(node):
            continue
        if on:
            nodes.exec_(node, CLIENT_ROUTE, timeout=20)
        else:
            nodes.exec_(node, ["ip", "route", "del", str(config.CLIENT_NET)], check=False, timeout=20)


def addresses() -> list[str]:
    """The lab's nodes' addresses: the next hops the router has when every node announces."""
    return sorted(n.address for n in config.NODES)


def wait_converged(timeout: float = 90) -> float:
    """Every node's session Established at the router and the router forwarding the service address to
    every node -> seconds. LabError naming the sessions otherwise."""
    try:
        seconds = router.wait_next_hops(addresses(), timeout=timeout)
    except LabError as e:
        raise LabError(f"{e}; sessions {router.sessions()}, BIRD's paths {router.bird_next_hops()}\n"
                       f"{router.log_tail()}") from e
    sessions = router.sessions()
    if set(sessions.values()) != {"Established"}:
        raise LabError(f"BGP sessions not all Established: {sessions}")
    return seconds


def enable(profile: str = "plain") -> float:
    """The router (forwarding with `profile`) and the client up, the nodes' route back, the BGP-mode pillar
    written as the lab's override and applied; waits until the router forwards to every node. LabError if
    an apply fails or the router does not converge. -> seconds the apply took."""
    router.start(profile)
    node_routes(True)
    tier.write_pillar(pillar())
    seconds = tier.apply_ok("the BGP-mode pillar")
    wait_converged()
    return seconds


def set_profile(profile: str) -> None:
    """Switch the running router's forwarding (plain / resilient), BGP untouched; waits until it forwards
    to every node again."""
    router.start(profile)
    wait_converged()


def disable() -> float:
    """Back to the checkout's pillar (VRRP), applied; then the nodes' route and the router removed (also
    when the apply fails: LabError then). -> seconds the apply took."""
    try:
        return tier.back_to_checkout_pillar()
    finally:
        node_routes(False)
        router.stop()


def check_enabled() -> None:
    """LabError unless the lab's pillar override is the BGP-mode one and the router runs."""
    if tier.current_pillar() != pillar() or not router.running():
        raise LabError("the lab is not in BGP mode: run python -m lab bgp first")


def leftovers(node: config.Node) -> dict[str, Any]:
    """What BGP mode leaves on a node once it is back in VRRP mode, from the node itself: {"bird",
    "gate"} (systemctl is-active: "inactive" when stopped or gone), {"bird_enabled"} (is-enabled),
    "gate_unit" (its unit file exists), "service_address" (config.BGP_SERVICE is on some interface)."""
    active = nodes.exec_(node, ["systemctl", "is-active", "bird", "proxytier-bgp-gate"], check=False).stdout.split()
    enabled = nodes.exec_(node, ["systemctl", "is-enabled", "bird"], check=False).stdout.strip()
    unit = nodes.exec_(node, ["test", "-e", "/etc/systemd/system/proxytier-bgp-gate.service"], check=False)
    addrs = nodes.exec_(node, ["ip", "-4", "-o", "address", "show"], check=False).stdout
    return {"bird": active[0] if active else "", "gate": active[1] if len(active) > 1 else "",
            "bird_enabled": enabled, "gate_unit": unit.returncode == 0,
            "service_address": f" {config.BGP_SERVICE}/" in addrs}


def haproxy_connections(frontend: str = "fe_app") -> dict[str, float]:
    """{node name: connections its HAProxy's `frontend` accepted so far}, from every node's exporter
    (haproxy_frontend_connections_total, HAProxy's own counter: which HAProxy the router sent a
    connection to, where the backends' answers only say which nginx HAProxy chose)."""
    out = {}
    for node in config.NODES:
        url = f"http://{config.check_lab_address(node.address)}:{config.EXPORTER_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out[node.name] = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                             if s.name == "haproxy_frontend_connections_total" and s.labels.get("proxy") == frontend)
    return out


def show() -> list[str]:
    """Lines for `python -m lab bgp`: the router's next hops and sessions, then who answered a burst
    from the client namespace through the service address."""
    lines = router.status()
    before = haproxy_connections()
    result = router.client_load(requests=300, seconds=30, concurrency=4)
    after = haproxy_connections()
    lines.append(f"from {config.CLIENT_ADDR} to {config.BGP_SERVICE}:80: {result['ok']} ok, {result['failed']} "
                 f"failed; client address seen {result['clients']}")
    lines.append(f"  connections per HAProxy: {({n: int(after[n] - before.get(n, 0)) for n in after})}")
    lines.append(f"  requests per nginx node: {result['by_node']}; per backend: {result['by_backend']}")
    return lines
