"""Acting on and observing the tier in the lab: state.apply, pillar overrides, daemons, configs."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import config, master, nodes
from lab.sh import LabError, wait_for

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


# --- orchestrations (salt-run state.orchestrate proxytier.orch.*) -----------------------------------


def orchestrate(name: str, timeout: float = 900, **pillar: Any) -> subprocess.CompletedProcess[str]:
    """`salt-run state.orchestrate proxytier.orch.NAME pillar=JSON --out=json` on the lab master (not checked)."""
    args = ["salt-run", "state.orchestrate", f"proxytier.orch.{name}", "--out=json"]
    if pillar:
        args.append(f"pillar={json.dumps(pillar)}")
    return master.salt(args, timeout=timeout)


def orchestrate_ok(name: str, timeout: float = 900, **pillar: Any) -> float:
    """orchestrate(), raising LabError with the failed steps unless it succeeded; returns its seconds."""
    t0 = time.monotonic()
    proc = orchestrate(name, timeout=timeout, **pillar)
    if proc.returncode != 0:
        raise LabError(f"proxytier.orch.{name} {pillar} failed (exit {proc.returncode}):\n"
                       f"{failed_steps(proc.stdout) or proc.stdout[-3000:]}\n{proc.stderr[-1000:]}")
    return round(time.monotonic() - t0, 2)


def failed_steps(text: str) -> str:
    """The failed steps of an orchestration's JSON output, one per line, with the failed states of each
    minion a salt.state step ran on (empty if none or not JSON)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    steps = next(iter(data.get("data", {}).values()), {}) if isinstance(data, dict) else {}
    lines = []
    for key, st in steps.items() if isinstance(steps, dict) else []:
        if not isinstance(st, dict) or st.get("result") is not False:
            continue
        lines.append(f"{st.get('__id__', key)}: {json.dumps(st.get('comment'))[:500]}")
        rets = (st.get("changes") or {}).get("ret") or {}
        for minion, states in rets.items() if isinstance(rets, dict) else []:
            for sid, state in states.items() if isinstance(states, dict) else []:
                if isinstance(state, dict) and state.get("result") is False:
                    lines.append(f"  {minion} {state.get('__id__', sid)}: {str(state.get('comment'))[:800]}")
    return "\n".join(lines)


def join(name: str) -> float:
    """The formula's join of a booted lab node whose key is accepted (lab.cluster.add_node); returns seconds."""
    return orchestrate_ok("join", node=name)


def leave(name: str) -> float:
    """The formula's leave of a lab node (it deletes the node's key; lab.cluster.remove_node powers it off)."""
    return orchestrate_ok("leave", node=name)


# --- pillar overrides: STATE/pillar-override is the first pillar root, so a file there wins ----------


def default_pillar() -> dict[str, Any]:
    return yaml.safe_load((config.REPO / "pillar" / PILLAR_FILE).read_text())


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`, key by key in nested mappings: the formula's own merge
    (proxytier_params.deep_merge, Salt's recurse strategy), imported from salt/_utils without Salt."""
    utils = str(config.REPO / "salt" / "_utils")
    if utils not in sys.path:
        sys.path.insert(0, utils)
    import proxytier_params

    return proxytier_params.deep_merge(base, over)


def write_pillar(data: dict[str, Any]) -> Path:
    config.PILLAR_OVERRIDE.mkdir(parents=True, exist_ok=True)
    path = config.PILLAR_OVERRIDE / PILLAR_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# lab override of pillar/proxytier.sls\n" + yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path


def clear_pillar_override() -> None:
    (config.PILLAR_OVERRIDE / PILLAR_FILE).unlink(missing_ok=True)


def current_pillar() -> dict[str, Any]:
    """The lab pillar the nodes get: the override if one is written, else the checkout's."""
    override = config.PILLAR_OVERRIDE / PILLAR_FILE
    return yaml.safe_load(override.read_text()) if override.is_file() else default_pillar()


def served_vips() -> list[str]:
    """The VIPs the tier serves now: the IPv4 VIPs of the lab's nodes, and their IPv6 twins when the
    pillar the nodes get has them (vip_pool addresses6: lab.dualstack)."""
    pool = current_pillar()["proxytier"].get("vip_pool") or {}
    return config.VIPS + (config.VIPS6 if pool.get("addresses6") else [])


def apply_ok(what: str, target: str = "proxy*") -> float:
    """state.apply that must succeed on every minion (LabError naming `what` and the failed states if
    not) -> seconds it took."""
    res = apply(target)
    if not all(m.ok for m in res.minions.values()):
        raise LabError(f"state.apply of {what} failed:\n{res.describe()}")
    return res.seconds


def back_to_checkout_pillar() -> float:
    """The lab's pillar override removed and the checkout's pillar applied on every node (LabError naming
    the failed states if an apply fails; inside a `finally`, Python reports both errors) -> seconds."""
    clear_pillar_override()
    return apply_ok("the checkout's pillar")


def pillar_with_backend(extra: config.Backend) -> dict[str, Any]:
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["sites"][0]["backends"].append({"address": f"{extra.address}:{extra.port}"})
    return data


def vrrp_instances(data: dict[str, Any] | None = None) -> dict[str, str]:
    """{VIP address: the VRRP instance that carries it, as the formula names it (VI_<vrid> for IPv4,
    VI6_<vrid> for IPv6)}: the pillar's vips, then its vip_pool (the k-th address, and its IPv6 twin in
    addresses6, has VRID vrid_base + k). `data`: a lab pillar (default: the checkout's)."""
    pt = (data or default_pillar())["proxytier"]

    def instance(address: str, vrid: int) -> tuple[str, str]:
        ip = address.split("/")[0]
        return ip, f"VI{'6' if ':' in ip else ''}_{vrid}"

    found = dict(instance(v["address"], v["vrid"]) for v in pt.get("vips") or [])
    pool = pt.get("vip_pool") or {}
    for key in ("addresses", "addresses6"):
        found.update(instance(a, pool["vrid_base"] + k) for k, a in enumerate(pool.get(key) or []))
    return found


def pillar_with_comment(line: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The lab pillar (or `data`, a copy of it changed) plus a harmless comment line in each of nginx.conf,
    haproxy.cfg and keepalived.conf: a change that makes every daemon reload."""
    data = copy.deepcopy(data) if data is not None else default_pillar()
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


def pillar_with_vip(address: str, vrid: int, instance_extra: list[str] | None = None) -> dict[str, Any]:
    """The lab pillar plus one VIP (a change of nginx's trusted sources, HAProxy's binds and
    keepalived's instances at once), and raw keepalived lines in every instance if given."""
    data = copy.deepcopy(default_pillar())
    data["proxytier"].setdefault("vips", []).append({"address": address, "vrid": vrid})
    if instance_extra:
        data["proxytier"].setdefault("vrrp", {}).setdefault("extra", {})["instance"] = instance_extra
    return data


def pillar_with_vrid_base(vrid: int) -> dict[str, Any]:
    """The lab pillar with its VIP pool's first VRID changed (e.g. to an invalid one)."""
    data = copy.deepcopy(default_pillar())
    data["proxytier"]["vip_pool"]["vrid_base"] = vrid
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


def keepalived_log_count(text: str, since: str) -> int:
    """Lines of keepalived's journal containing `text`, on every node of the lab, since `since` (journalctl
    time, e.g. "2026-12-01 14:00:00"): e.g. "Entering MASTER STATE" (a VIP taken). Not "forcing new
    election" for double MASTERs: with vrrp_higher_prio_send_advert a MASTER that yields sends one last
    advert, so the winner logs it on every ordinary preemption (use double_masters)."""
    count = 0
    for n in config.NODES:
        out = nodes.exec_(n, ["journalctl", "-u", "keepalived", "--since", since, "-o", "cat", "--no-pager"]).stdout
        count += sum(text in line for line in out.splitlines())
    return count


_MASTER_ENTRY = re.compile(r"^(\d+\.\d+) \S+ Keepalived_vrrp\[\d+\]: \((\S+)\) Entering MASTER STATE$")


def keepalived_master_entries(since: str) -> list[tuple[float, str, str]]:
    """Every VRRP instance's entries into MASTER state on every lab node since `since` (journalctl time),
    from keepalived's journal: [(unix time in s, node, instance)], in time order."""
    found = []
    for n in config.NODES:
        out = nodes.exec_(n, ["journalctl", "-u", "keepalived", "--since", since, "-o", "short-unix",
                              "--no-pager"]).stdout
        found += master_entries(n.name, out)
    return sorted(found)


def master_entries(node: str, journal: str) -> list[tuple[float, str, str]]:
    """keepalived's journal of one node (`journalctl -o short-unix` text) -> its entries into MASTER state,
    [(unix time in s, node, instance)]."""
    return [(float(m[1]), node, m[2]) for m in map(_MASTER_ENTRY.match, journal.splitlines()) if m]


def double_masters(entries: list[tuple[float, str, str]], window: float = 0.5) -> int:
    """Times two nodes became MASTER of one VRRP instance at once: consecutive entries into MASTER of an
    instance (keepalived_master_entries) on different nodes less than `window` seconds apart. A VIP's
    ordinary moves (handover, failover, preemption back) are seconds apart; two backups whose master-down
    timers end together enter MASTER milliseconds apart."""
    last: dict[str, tuple[float, str]] = {}
    count = 0
    for t, node, instance in sorted(entries):
        prev = last.get(instance)
        count += prev is not None and prev[1] != node and t - prev[0] < window
        last[instance] = (t, node)
    return count


def vips_settled(vips: list[str] | None = None) -> bool:
    """Each of `vips` (default: the IPv4 VIPs) is held by exactly one node."""
    return all(len(h) == 1 for h in nodes.vip_holders(vips).values())


def wait_vips_settled(timeout: float = 60, vips: list[str] | None = None) -> float:
    return wait_for("every VIP to be held by exactly one node", lambda: vips_settled(vips), timeout=timeout)


class VipWatch:
    """Who holds each VIP, sampled every `interval` s in a thread while the `with` block runs (a VIP that
    moves away and back between two applies shows here, not in a before/after comparison).

    `moves(vips)`: every sample in which one of `vips` was held by others than at the start, as
    "t=SECONDS VIP: [holders]" lines (empty: none of them ever moved)."""

    def __init__(self, interval: float = 0.3) -> None:
        self.interval = interval
        self.samples: list[tuple[float, dict[str, list[str]]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vip-watch", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> VipWatch:
        self._t0 = time.monotonic()
        self.samples.append((0.0, nodes.vip_holders()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((round(time.monotonic() - self._t0, 1), nodes.vip_holders()))
            except Exception:  # a node booting or powering off answers nothing for a moment
                self.errors += 1

    def moves(self, vips: list[str]) -> list[str]:
        first = self.samples[0][1]
        return [f"t={t} {vip}: {held.get(vip)}" for t, held in self.samples[1:] for vip in vips
                if held.get(vip) != first.get(vip)]
