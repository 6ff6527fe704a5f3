"""Acting on and observing the tier in the lab: state.apply, pillar overrides, daemons, configs."""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import config, master, nodes
from lab.sh import wait_for

DAEMONS = ("nginx", "haproxy", "keepalived")
CONFIG_DIRS = ("/etc/nginx", "/etc/haproxy", "/etc/keepalived")
PILLAR_FILE = "proxytier.sls"


@dataclass
class MinionApply:
    """One minion's state.apply return, summarised."""

    ok: bool
    total: int = 0
    changed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # render/compile errors (the return was a list)


@dataclass
class ApplyResult:
    minions: dict[str, MinionApply]
    seconds: float
    raw: dict[str, Any]

    def text(self, minion: str) -> str:
        return json.dumps(self.raw.get(minion), default=str)

    def describe(self) -> str:
        parts = []
        for name, m in sorted(self.minions.items()):
            detail = f"{m.total} states, {len(m.changed)} changed, {len(m.failed)} failed"
            if m.errors:
                detail = "ERROR: " + " | ".join(e[:300] for e in m.errors)
            elif m.failed:
                detail += ": " + ", ".join(m.failed[:5])
            parts.append(f"{name}: {detail}")
        return f"state.apply in {self.seconds:.1f} s -> " + "; ".join(parts)


def _summarise(ret: Any) -> MinionApply:
    if isinstance(ret, list):
        return MinionApply(ok=False, errors=[str(e) for e in ret])
    if not isinstance(ret, dict):
        return MinionApply(ok=False, errors=[f"unexpected return: {ret!r}"])
    m = MinionApply(ok=True, total=len(ret))
    for key, st in ret.items():
        if not isinstance(st, dict):
            m.errors.append(f"{key}: {st!r}")
            continue
        sid = st.get("__id__", key)
        if st.get("result") is False:
            m.failed.append(f"{sid}: {str(st.get('comment', ''))[:300]}")
        if st.get("changes"):
            m.changed.append(str(sid))
    m.ok = not m.failed and not m.errors
    return m


def apply(target: str = "proxy*", timeout: float = 900) -> ApplyResult:
    """`salt TARGET state.apply` against the lab master; every expected minion must answer
    (TARGET "proxy*": the lab's nodes; "a,b": exactly those minions)."""
    t0 = time.monotonic()
    listed = ["-L", target] if "," in target else [target]  # "proxy1,proxy2": exactly those minions
    raw = master.salt_json(["salt", *listed, "state.apply", "-t", "600"], timeout=timeout)
    seconds = round(time.monotonic() - t0, 2)
    expected = [n.name for n in config.NODES] if target == "proxy*" else target.split(",")
    minions = {
        name: _summarise(raw[name]) if name in raw else MinionApply(ok=False, errors=["no return"]) for name in expected
    }
    return ApplyResult(minions, seconds, raw)


# --- pillar overrides: STATE/pillar-override is the first pillar root, so a file there wins ----------


def default_pillar() -> dict[str, Any]:
    return yaml.safe_load((config.REPO / "pillar" / PILLAR_FILE).read_text())


def write_pillar(data: dict[str, Any]) -> Path:
    config.PILLAR_OVERRIDE.mkdir(parents=True, exist_ok=True)
    path = config.PILLAR_OVERRIDE / PILLAR_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# lab override of pillar/proxytier.sls\n" + yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


def clear_pillar_override() -> None:
    (config.PILLAR_OVERRIDE / PILLAR_FILE).unlink(missing_ok=True)


def pillar_with_backend(extra: config.Backend) -> dict[str, Any]:
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["sites"][0]["backends"].append({"address": f"{extra.address}:{extra.port}"})
    return data


def vrrp_instances() -> dict[str, str]:
    """{VIP address: the VRRP instance that carries it, as the formula names it (VI_<vrid>)}."""
    return {v["address"].split("/")[0]: f"VI_{v['vrid']}" for v in default_pillar()["proxytier"]["vips"]}


def pillar_with_comment(line: str) -> dict[str, Any]:
    """The lab pillar plus a harmless comment line in each of nginx.conf, haproxy.cfg and
    keepalived.conf: a change that makes every daemon reload."""
    data = default_pillar()
    pt = data["proxytier"]
    pt.setdefault("nginx", {}).setdefault("extra", {})["http"] = [line]
    pt.setdefault("haproxy", {}).setdefault("extra", {})["defaults"] = [line]
    pt.setdefault("vrrp", {}).setdefault("extra", {})["global_defs"] = [line]
    return data


def pillar_with_site_change(**site: Any) -> dict[str, Any]:
    """The lab pillar with keys of its first site changed (e.g. nginx_port=8081)."""
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["sites"][0].update(site)
    return data


def pillar_with_vip(address: str, vrid: int) -> dict[str, Any]:
    """The lab pillar plus one VIP (a change of nginx's trusted sources, HAProxy's binds and
    keepalived's instances at once)."""
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["vips"].append({"address": address, "vrid": vrid})
    return data


def pillar_with_vrid(index: int, vrid: int) -> dict[str, Any]:
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["vips"][index]["vrid"] = vrid
    return data


# --- daemons and files on the nodes ---------------------------------------------------------------


def services_active(node: config.Node) -> dict[str, str]:
    out = nodes.exec_(node, ["systemctl", "is-active", *DAEMONS], check=False).stdout.split()
    return dict(zip(DAEMONS, out, strict=False))


def config_hashes(node: config.Node) -> dict[str, str]:
    """sha256 of every file under the daemons' config dirs on the node."""
    script = "find " + " ".join(CONFIG_DIRS) + " -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum"
    out = nodes.exec_(node, ["/bin/sh", "-c", script], check=False).stdout
    return {line.split(None, 1)[1]: line.split(None, 1)[0] for line in out.splitlines() if line.strip()}


def daemon_processes(node: config.Node, *names: str) -> set[tuple[str, int, int]]:
    """(comm, pid, start time in ticks) of every nginx/haproxy/keepalived process (or `names`) in the node.

    A reload replaces nginx workers and the HAProxy worker; a restart replaces everything; so an
    unchanged set means no daemon was reloaded or restarted. Read from the host's /proc, matching the
    node's pid namespace.
    """
    leader = nodes.leader(node)
    ns = os.readlink(f"/proc/{leader}/ns/pid")
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "ns" / "pid") != ns:
                continue
            comm = (proc / "comm").read_text().strip()
            if comm not in (names or DAEMONS):
                continue
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            found.add((comm, int(proc.name), int(stat[19])))
        except (OSError, IndexError, ValueError):
            continue
    return found


def apt_installed_by_apt(node: config.Node) -> dict[str, bool]:
    """For each daemon package: installed (dpkg) and named in an apt install in /var/log/apt/history.log."""
    history = nodes.exec_(node, ["cat", "/var/log/apt/history.log"], check=False).stdout
    status = nodes.exec_(
        node, ["dpkg-query", "-W", "-f", "${Package} ${Status}\\n", *DAEMONS], check=False
    ).stdout.splitlines()
    installed = {line.split()[0] for line in status if line.endswith("install ok installed")}
    return {p: p in installed and f" {p}:" in history for p in DAEMONS}


def vips_settled() -> bool:
    return all(len(h) == 1 for h in nodes.vip_holders().values())


def wait_vips_settled(timeout: float = 60) -> float:
    return wait_for("every VIP to be held by exactly one node", vips_settled, timeout=timeout)
