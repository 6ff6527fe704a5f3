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
    """The lab is IPv4-only (198.18.0.0/15): no IPv6 link-local address on its host-side links."""
    Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1\n")


def bridge_up() -> None:
    if not link_exists(config.BRIDGE):
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
    no_ipv6(config.BRIDGE)
    run(["ip", "address", "replace", f"{config.HOST_ADDR}/{config.PREFIX}", "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])


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
    """Create the backend's namespace + veth and start its HTTP server; wait for /healthz."""
    config.check_lab_address(be.address)
    BACKEND_DIR.mkdir(parents=True, exist_ok=True)
    backend_down(be)
    run(["ip", "netns", "add", be.netns])
    run(["ip", "link", "add", be.veth, "type", "veth", "peer", "name", "eth0", "address", be.mac, "netns", be.netns])
    no_ipv6(be.veth)
    run(["ip", "link", "set", be.veth, "master", config.BRIDGE, "up"])
    ns = ["ip", "netns", "exec", be.netns]
    run([*ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"])
    run([*ns, "ip", "link", "set", "lo", "up"])
    run([*ns, "ip", "address", "add", f"{be.address}/{config.PREFIX}", "dev", "eth0"])
    run([*ns, "ip", "link", "set", "eth0", "up"])
    start_server(be)


def start_server(be: config.Backend) -> None:
    """Start the backend's HTTP server in its (existing) namespace, as after a crash; wait for /healthz."""
    spawn(
        ["ip", "netns", "exec", be.netns, sys.executable, SERVER, "--name", be.name, "--bind", be.address,
         "--port", str(be.port)],
        BACKEND_DIR / f"{be.name}.log",
        backend_pidfile(be.name),
    )
    wait_for(f"backend {be.name} /healthz", lambda: backend_health(be), timeout=30, interval=0.2)


def backend_health(be: config.Backend) -> bool:
    url = f"http://{config.check_lab_address(be.address)}:{be.port}/healthz"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200 and json.load(resp).get("backend") == be.name


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
    for link in lab_links():
        if link.startswith("ptl-") and link_exists(link):
            run(["ip", "link", "del", link])
