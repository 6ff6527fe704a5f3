"""The lab bridge and the backends (each in its own network namespace, veth to the bridge)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from lab import config
from lab.sh import find_pids, read_pidfile, run, spawn, stop_pid, stop_pids, wait_for

BACKEND_DIR = config.STATE / "backends"
SERVER = Path(__file__).with_name("backend_server.py")


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def no_ipv6(ifname: str) -> None:
    """A bridge port needs no address of its own: no IPv6 (no link-local address, no chatter) on the
    host-side links of nodes and backends; the bridge forwards their IPv6 frames all the same."""
    Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1\n")


#: `ip` arguments that make a link's IPv6 the lab's only: no link-local address (addrgenmode none; the
#: lab's addresses are all in 2001:2::/48), set before the link goes up
NO_LINK_LOCAL = ["addrgenmode", "none"]


def bridge_up() -> None:
    """The lab's bridge, the host on it at HOST_ADDR/24 and HOST_ADDR6/64 (no link-local address; no
    duplicate address detection, the lab assigns every address). Multicast snooping is off: with no
    link-local addresses there is no MLD querier, and neighbour discovery must reach every port."""
    if not link_exists(config.BRIDGE):
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge", "mcast_snooping", "0"])
    run(["ip", "link", "set", config.BRIDGE, "type", "bridge", "mcast_snooping", "0"])
    run(["ip", "link", "set", config.BRIDGE, *NO_LINK_LOCAL])
    Path(f"/proc/sys/net/ipv6/conf/{config.BRIDGE}/disable_ipv6").write_text("0\n")
    run(["ip", "address", "replace", f"{config.HOST_ADDR}/{config.PREFIX}", "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])
    run(["ip", "-6", "address", "flush", "dev", config.BRIDGE, "scope", "link"])
    run(["ip", "address", "replace", f"{config.HOST_ADDR6}/{config.PREFIX6}", "dev", config.BRIDGE, "nodad"])


def bridge_down() -> None:
    if link_exists(config.BRIDGE):
        run(["ip", "link", "del", config.BRIDGE])


def lab_links() -> list[str]:
    """Host-side links the lab made (node veths vb-proxyN, backend veths ptl-*) still present."""
    out = run(["ip", "-o", "link", "show"]).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    node_veths = {f"vb-{n.name}" for n in config.ALL_NODES}
    return [n for n in names if n.startswith("ptl-") or n in node_veths]


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("ptlab-")]


def backend_pidfile(name: str) -> Path:
    return BACKEND_DIR / f"{name}.pid"


def backend_up(be: config.Backend) -> None:
    """Create the backend's namespace + veth (an address of each family, no IPv6 link-local) and start
    its HTTP server on both; wait for /healthz on both."""
    config.check_lab_address(be.address)
    config.check_lab_address(be.address6)
    BACKEND_DIR.mkdir(parents=True, exist_ok=True)
    backend_down(be)
    run(["ip", "netns", "add", be.netns])
    run(["ip", "link", "add", be.veth, "type", "veth", "peer", "name", "eth0", "address", be.mac, "netns", be.netns])
    no_ipv6(be.veth)
    run(["ip", "link", "set", be.veth, "master", config.BRIDGE, "up"])
    ns = ["ip", "netns", "exec", be.netns]
    run([*ns, "ip", "link", "set", "lo", "up"])
    run([*ns, "ip", "link", "set", "eth0", *NO_LINK_LOCAL])
    run([*ns, "ip", "address", "add", f"{be.address}/{config.PREFIX}", "dev", "eth0"])
    run([*ns, "ip", "address", "add", f"{be.address6}/{config.PREFIX6}", "dev", "eth0", "nodad"])
    run([*ns, "ip", "link", "set", "eth0", "up"])
    start_server(be)


def start_server(be: config.Backend) -> None:
    """Start the backend's HTTP server in its (existing) namespace, as after a crash; wait for /healthz."""
    spawn(
        ["ip", "netns", "exec", be.netns, sys.executable, SERVER, "--name", be.name, "--bind", be.address,
         "--bind", be.address6, "--port", str(be.port)],
        BACKEND_DIR / f"{be.name}.log",
        backend_pidfile(be.name),
    )
    wait_for(f"backend {be.name} /healthz", lambda: backend_health(be), timeout=30, interval=0.2)


def backend_health(be: config.Backend) -> bool:
    """True when the backend answers /healthz as itself on both of its addresses (OSError if not there)."""
    for address in (be.address, be.address6):
        url = f"http://{config.hostport(config.check_lab_address(address), be.port)}/healthz"
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status != 200 or json.load(resp).get("backend") != be.name:
                return False
    return True


def backend_health_ok(be: config.Backend) -> bool:
    """backend_health() that answers False instead of raising when the backend is not there."""
    try:
        return backend_health(be)
    except OSError:
        return False


def backend_down(be: config.Backend) -> None:
    pid = read_pidfile(backend_pidfile(be.name))
    if pid:
        stop_pid(pid, marker=SERVER.name, grace=5, group=True)
        backend_pidfile(be.name).unlink(missing_ok=True)
    if be.netns in netns_list():
        run(["ip", "netns", "del", be.netns])
    if link_exists(be.veth):  # usually gone with the namespace already (asynchronously): no check
        run(["ip", "link", "del", be.veth], check=False)


def clean_backends() -> None:
    """Stop every backend a previous run left (by pid file), remove their namespaces and veths."""
    pids = set(find_pids(str(SERVER), "--bind"))
    if BACKEND_DIR.is_dir():
        for pidfile in BACKEND_DIR.glob("*.pid"):
            pids.add(read_pidfile(pidfile) or 0)
            pidfile.unlink(missing_ok=True)
    stop_pids(sorted(pids - {0}), marker=SERVER.name, grace=5)
    for ns in netns_list():
        run(["ip", "netns", "del", ns])
    # a deleted namespace takes its veth ends' peers with it, asynchronously (the kernel's netns cleanup
    # work): a link listed here may be gone by the time `ip link del` runs, so what counts is the end state
    for link in lab_links():
        if link.startswith("ptl-") and link_exists(link):
            run(["ip", "link", "del", link], check=False)
    wait_for("the backends' veths to be gone", lambda: not [x for x in lab_links() if x.startswith("ptl-")],
             timeout=10, interval=0.1)
