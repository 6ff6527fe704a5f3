"""The proxy nodes: systemd-nspawn containers booted from the shared image, one writable overlay each."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from lab import config
from lab.sh import LabError, cmdline, find_pids, log, pid_alive, read_pidfile, run, spawn, stop_pid, stop_pids, wait_for

NSPAWN_MARKER = f"--network-bridge={config.BRIDGE}"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pidfile(node: config.Node) -> Path:
    return node.dir / "nspawn.pid"


def prepare(node: config.Node) -> None:
    """A fresh writable layer with this node's identity (hostname, address, minion id)."""
    shutil.rmtree(node.dir, ignore_errors=True)
    upper = node.dir / "upper"
    files = {
        "etc/hostname": f"{node.name}\n",
        "etc/salt/minion_id": f"{node.name}\n",
        "etc/proxytier-lab/node.env": (f"ADDRESS={node.address}/{config.PREFIX}\n"
                                       f"ADDRESS6={node.address6}/{config.PREFIX6}\n"),
    }
    for rel, text in files.items():
        path = upper / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def start(node: config.Node) -> int:
    """Boot the node in the background (keeps its overlay: a restarted node keeps its packages and keys)."""
    if running(node):
        raise LabError(f"{node.name} is already running (pid {nspawn_pid(node)})")
    upper = node.dir / "upper"
    cmd = [
        "systemd-nspawn", "-q", "-D", config.IMAGE, f"--overlay={config.IMAGE}:{upper}:/",
        "--register=no", "--keep-unit", "-b", NSPAWN_MARKER, "-M", node.name,
        "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        # what systemd gives services on a normal host (a sandboxed host may have a lower hard limit)
        "--rlimit=RLIMIT_NOFILE=1024:524288",
    ]  # fmt: skip
    # cgroup v2 inside the node whatever the host runs: on a hybrid (v1) host, systemd in the container
    # intermittently failed units at boot ("Failed to attach to cgroup ... No such file or directory")
    env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
    return spawn(cmd, node.dir / "console.log", pidfile(node), env=env)


def nspawn_pid(node: config.Node) -> int | None:
    pid = read_pidfile(pidfile(node))
    if pid and pid_alive(pid) and NSPAWN_MARKER in cmdline(pid):
        return pid
    return None


def running(node: config.Node) -> bool:
    return nspawn_pid(node) is not None


def leader(node: config.Node) -> int:
    """Host pid of the node's init (the child of nspawn that is pid 1 in its own pid namespace)."""
    parent = nspawn_pid(node)
    if parent is None:
        raise LabError(f"{node.name} is not running")
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent) and fields.get("NSpid", "").split()[-1:] == ["1"]:
            return int(status.parent.name)
    raise LabError(f"{node.name}: no container init found under nspawn pid {parent}")


def exec_(
    node: config.Node, cmd: list[str], *, check: bool = True, timeout: float = 120, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the node (all its namespaces), with a clean environment."""
    base = ["nsenter", "-t", str(leader(node)), "-a", "--", "/usr/bin/env", "-i", f"PATH={NODE_PATH}", "LC_ALL=C"]
    return run([*base, *cmd], check=check, timeout=timeout, input_text=input_text)


def system_state(node: config.Node) -> str:
    return exec_(node, ["systemctl", "is-system-running"], check=False, timeout=20).stdout.strip()


def failed_units(node: config.Node) -> list[str]:
    out = exec_(node, ["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_booted(node: config.Node, timeout: float = 120) -> float:
    """Wait until systemd inside reports running and host0 is configured.

    Early-boot units here sometimes fail with 219/CGROUP ("Failed to attach to cgroup ... No such file
    or directory", a race of systemd 252 in nspawn on this kind of host); such units are restarted
    (at most 3 times) instead of leaving the node degraded.
    """

    def booted() -> bool:
        if not running(node):
            raise LabError(f"{node.name} exited while booting; see {node.dir / 'console.log'}")
        return system_state(node) in ("running", "degraded")

    waited = wait_for(f"{node.name} to boot", booted, timeout=timeout, interval=0.5)
    for _ in range(3):
        failed = failed_units(node)
        if not failed:
            break
        log(f"{node.name}: restarting units that failed at boot: {' '.join(failed)}")
        exec_(node, ["systemctl", "reset-failed", *failed], check=False)
        exec_(node, ["systemctl", "restart", *failed], check=False, timeout=60)
    if failed_units(node) or system_state(node) != "running":
        journal = exec_(node, ["journalctl", "-b", "-p", "warning", "--no-pager", "-n", "30"], check=False).stdout
        raise LabError(f"{node.name} booted degraded; failed units: {failed_units(node)}\n{journal}")
    veth = Path(f"/proc/sys/net/ipv6/conf/vb-{node.name}/disable_ipv6")  # host side of the node's link
    if veth.exists():
        veth.write_text("1\n")
    return waited


def stop(node: config.Node, grace: float = 60, wait: bool = True) -> None:
    """Clean shutdown: SIGTERM to nspawn makes systemd inside power off (wait=False: do not wait)."""
    pid = nspawn_pid(node)
    if pid and not wait:
        os.kill(pid, signal.SIGTERM)
    elif pid:
        stop_pid(pid, marker=NSPAWN_MARKER, grace=grace)


def clean_nodes() -> None:
    # by pid file, and by command line for what a killed run left (the lab's image + bridge)
    leftover = find_pids("systemd-nspawn", str(config.IMAGE_PREFIX), NSPAWN_MARKER)  # any release's image
    pids = {p for p in (nspawn_pid(n) for n in config.ALL_NODES) if p} | set(leftover)
    stop_pids(sorted(pids), marker=NSPAWN_MARKER, grace=30)
    # nspawn mounts live in its own mount namespace; unmount anything of ours that leaked to the host
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(str(config.STATE)):
            run(["umount", "-l", target], check=False)
    shutil.rmtree(config.STATE / "nodes", ignore_errors=True)


def minion_ready_count(node: config.Node) -> int:
    """How many times the node's salt-minion has logged that it is ready (its log is in the overlay)."""
    try:
        text = (node.dir / "upper/var/log/salt/minion").read_text(errors="replace")
    except OSError:
        return 0
    return text.count("Minion is ready to receive requests")


def addresses(node: config.Node, family: int = 4) -> list[str]:
    """The node's addresses of one family (4 or 6) on host0, as the kernel lists them (an IPv6 one
    marked deprecated or tentative included), without prefix length."""
    out = exec_(node, ["ip", f"-{family}", "-o", "address", "show", "dev", "host0"], timeout=20).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def vip_holders(vips: list[str] | None = None) -> dict[str, list[str]]:
    """VIP -> nodes that currently have it on host0 (exactly one in a healthy tier), for `vips` (default
    the IPv4 VIPs, config.VIPS; either family)."""
    vips = config.VIPS if vips is None else vips
    holders: dict[str, list[str]] = {v: [] for v in vips}
    families = sorted({6 if ":" in v else 4 for v in vips})
    for node in config.NODES:
        if not running(node):
            continue
        for family in families:
            for addr in addresses(node, family):
                if addr in holders:
                    holders[addr].append(node.name)
    return holders
