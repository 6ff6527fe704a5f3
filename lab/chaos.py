"""Faults the lab can inject into a running tier, shared by the chaos tests (make test) and
bench/failover. Each fault hits one victim node (or one backend) and returns the repair an
operator would make, or None when the tier heals by itself (systemd brings a killed daemon back).

    repair = chaos.EVENTS["keepalived_sigkill"].inject(config.node("proxy1"))
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab import config, net, nodes, router, tier
from lab.load import run_load
from lab.sh import read_pidfile, run, wait_for

Repair = Callable[[], None]


@dataclass(frozen=True)
class Event:
    name: str
    doc: str
    moves_vip: bool  # the victim's VIPs move (their clients see a failover); else nothing may fail
    inject: Callable[[config.Node], Repair | None]
    # the other VIPs may fail requests too: ones their HAProxy sent to the victim's nginx, which go unanswered
    # (no reset) until the health check marks that server down; only a silent fault (link down) does this
    other_vips_fail: bool = False


def _kill(node: config.Node, comm: str, sig: signal.Signals) -> None:
    """Send sig to every `comm` process of the node. For SIGKILL, repeat until none is left: a master
    can fork a new worker between two kills, and systemd inside the lab's containers cannot always
    reap a unit's leftover processes (reading the cgroup fails with EIO on some hosts), so a surviving
    orphan worker would keep the ports and the restarted daemon could never bind them."""
    procs = tier.daemon_processes(node, comm)
    if not procs:
        raise RuntimeError(f"no {comm} process on {node.name} to kill")
    for _ in range(20 if sig == signal.SIGKILL else 1):
        for _, pid, _ in sorted(procs, key=lambda p: p[2]):  # oldest (the master) first
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass  # a worker that went with its master
        procs = tier.daemon_processes(node, comm)
        if not procs:
            return
        time.sleep(0.02)


def _killer(comm: str, sig: signal.Signals) -> Callable[[config.Node], None]:
    def inject(node: config.Node) -> None:
        _kill(node, comm, sig)

    return inject


def _node_lost(node: config.Node) -> Repair:
    nodes.stop(node, wait=False)  # the container powers off (a clean shutdown, as a host going away)

    def repair() -> None:
        wait_for(f"{node.name} to stop", lambda: not nodes.running(node), timeout=90)
        nodes.stop(node)
        nodes.start(node)
        nodes.wait_booted(node)

    return repair


def bridge_port(node: config.Node) -> str:
    return f"vb-{node.name}"  # the host side of the node's link, a port of the lab bridge


def _link_down(node: config.Node) -> Repair:
    run(["ip", "link", "set", bridge_port(node), "down"])
    return lambda: run(["ip", "link", "set", bridge_port(node), "up"])


def _backend_sigkill(node: config.Node) -> Repair:
    """The backend paired with the victim's index (be1 for proxy1): killed, then started again."""
    be = config.BACKENDS[config.NODES.index(node) % len(config.BACKENDS)]
    pid = read_pidfile(net.backend_pidfile(be.name))
    if pid is None:
        raise RuntimeError(f"backend {be.name} is not running")
    os.kill(pid, signal.SIGKILL)
    return lambda: net.start_server(be)  # the process restarted on its host, as a supervisor would


EVENTS: dict[str, Event] = {
    e.name: e
    for e in (
        Event("haproxy_sigkill", "every HAProxy process on the node SIGKILLed", True,
              _killer("haproxy", signal.SIGKILL)),
        Event("keepalived_sigterm", "keepalived SIGTERMed (clean exit, priority-0 adverts)", True,
              _killer("keepalived", signal.SIGTERM)),
        Event("keepalived_sigkill", "keepalived SIGKILLed (its VIP addresses are left behind)", True,
              _killer("keepalived", signal.SIGKILL)),
        Event("nginx_sigkill", "every nginx process on the node SIGKILLed", False, _killer("nginx", signal.SIGKILL)),
        Event("backend_sigkill", "one application backend SIGKILLed, started again 3 s later", False,
              _backend_sigkill),
        Event("node_lost", "the node's container powers off; started again later", True, _node_lost),
        Event("link_down", "the node's link to the bridge goes down; up again later", True, _link_down,
              other_vips_fail=True),
    )
}


#: vip_mode bgp: the daemons every node runs (keepalived is stopped)
BGP_UNITS = ("haproxy", "nginx", "bird", "proxytier-bgp-gate")


def _unit_killer(unit: str) -> Callable[[config.Node], None]:
    """SIGKILL the main process of a systemd unit of the node (the gate runs as python3: no name of its own)."""

    def inject(node: config.Node) -> None:
        pid = nodes.exec_(node, ["systemctl", "show", "-P", "MainPID", unit]).stdout.strip()
        if pid in ("", "0"):
            raise RuntimeError(f"{unit} is not running on {node.name}")
        nodes.exec_(node, ["kill", "-KILL", pid])

    return inject


#: The faults of the chaos matrix in BGP mode (lab.bgp). moves_vip here: the victim leaves the router's
#: route (its clients' new connections go to the other nodes). The keepalived faults do not apply (no
#: keepalived runs); BIRD and the health gate take their place.
BGP_EVENTS: dict[str, Event] = {
    e.name: e
    for e in (
        EVENTS["haproxy_sigkill"],
        EVENTS["nginx_sigkill"],
        EVENTS["backend_sigkill"],
        EVENTS["node_lost"],
        EVENTS["link_down"],
        Event("bird_sigkill", "BIRD SIGKILLed: no BGP goodbye (the kernel closes its TCP session)", True,
              _killer("bird", signal.SIGKILL)),
        Event("gate_sigkill", "the health gate SIGKILLed: its unit withdraws the routes (ExecStopPost)", True,
              _unit_killer("proxytier-bgp-gate")),
    )
}


def bgp_settled() -> bool:
    """BGP mode whole again: every node running its BGP_UNITS, every session Established at the router, and
    the router forwarding the service address to every node."""
    if not all(nodes.running(n) for n in config.NODES):
        return False
    for n in config.NODES:
        active = nodes.exec_(n, ["systemctl", "is-active", *BGP_UNITS], check=False).stdout.split()
        if active != ["active"] * len(BGP_UNITS):
            return False
    return (set(router.sessions().values()) == {"Established"}
            and router.next_hops() == sorted(n.address for n in config.NODES))


def wait_bgp_settled(timeout: float = 120) -> float:
    """Wait for bgp_settled() -> seconds."""
    return wait_for("BGP mode to settle (daemons active, sessions Established, every node a next hop)",
                    bgp_settled, timeout=timeout, interval=0.2)


def home() -> dict[str, list[str]]:
    """Where every VIP lives when nothing is wrong: proxyK's VIP (and in dual stack its IPv6 twin) on proxyK
    (the lab pillar's VIP pool gives each member the address of its number), for the nodes the lab has now."""
    vips = tier.served_vips()
    return {vip: [config.NODES[i % len(config.NODES)].name] for i, vip in enumerate(vips)}


def settled(initial: dict[str, list[str]] | None = None) -> bool:
    """The tier is whole again: every VIP on its preferred node only, every daemon active."""
    expected = initial or home()
    if nodes.vip_holders(list(expected)) != expected:
        return False
    return all(
        nodes.running(n) and tier.services_active(n) == dict.fromkeys(tier.DAEMONS, "active") for n in config.NODES
    )


def serving() -> bool:
    """Clients reach every VIP promptly (a stale ARP entry on the client side shows here, not above)."""
    result = run_load(tier.served_vips(), requests=30, seconds=5, concurrency=3, timeout=0.5)
    return result.failed == 0 and max(x.end - x.start for x in result.samples) < 0.3


def wait_settled(initial: dict[str, list[str]] | None = None, timeout: float = 120) -> float:
    t0 = time.monotonic()
    wait_for("the tier to settle (VIPs home, daemons active)", lambda: settled(initial), timeout=timeout,
             interval=0.2)
    wait_for("every VIP to answer promptly", serving, timeout=max(10.0, timeout - (time.monotonic() - t0)),
             interval=0.2)
    return time.monotonic() - t0
