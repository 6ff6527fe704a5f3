"""The scale bench's lab part (``python -m bench.scale.run --lab``): the same pillars applied to the running
lab, through its Salt master, on the nodes that exist (config.NODES: 3 by default, up to 5 after
`python -m lab add-node`; the run records which).

Per case (sites x backends, smallest first; the full grid of 8 cases is estimated at 15-25 min, and no new
case starts after the deadline):
- `salt 'proxy*' state.apply` timed three times: the case's pillar first applied, a no-op apply, and an
  apply of a one-line change (a comment in nginx.conf, haproxy.cfg and keepalived.conf: every daemon reloads);
- `systemctl reload <daemon>` timed inside each node (RELOADS per daemon and node; Debian's HAProxy reload
  runs `haproxy -c` first, so its time includes checking the whole config);
- each daemon's memory: RSS and PSS summed over its processes (/proc/<pid>/smaps_rollup, read on the host
  for the node's processes found by lab.tier.daemon_processes);
- the exporter's /metrics on every node (SCRAPES GETs each): time and size.
The lab's pillar override is removed and the checkout's pillar applied again at the end.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.scale import pillar
from lab import config, nodes, tier
from lab.sh import LabError, log

DAEMONS = ("nginx", "haproxy", "keepalived")
RELOADS = 3  # per daemon and node
SCRAPES = 3  # per node
SCRAPE_TIMEOUT = 10.0
# inside the node: one reload timed by the node's own clock, printed as nanoseconds
RELOAD_SCRIPT = 's=$(date +%s%N); systemctl reload "$1" || exit 1; e=$(date +%s%N); echo $((e - s))'


def smaps_rollup(text: str) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup -> {"rss_kib", "pss_kib"} (kB lines ``Rss:`` and ``Pss:``; 0 if absent)."""
    out = {"rss_kib": 0, "pss_kib": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
            out[f"{parts[0][:-1].lower()}_kib"] = int(parts[1])
    return out


def daemon_memory(processes: set[tuple[str, int, int]], proc: Path = Path("/proc")) -> dict[str, dict[str, int]]:
    """{daemon: {"rss_kib", "pss_kib", "processes"}} summed over `processes` ((comm, pid, start) as
    lab.tier.daemon_processes gives them); a process gone meanwhile is skipped."""
    out: dict[str, dict[str, int]] = {}
    for comm, pid, _start in sorted(processes):
        try:
            mem = smaps_rollup((proc / str(pid) / "smaps_rollup").read_text())
        except OSError:
            continue
        d = out.setdefault(comm, {"rss_kib": 0, "pss_kib": 0, "processes": 0})
        d["rss_kib"] += mem["rss_kib"]
        d["pss_kib"] += mem["pss_kib"]
        d["processes"] += 1
    return out


def median_memory(per_node: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, float]]:
    """Per daemon, the median over nodes of each figure (nodes without that daemon are left out)."""
    daemons = sorted({d for m in per_node for d in m})
    return {d: {k: statistics.median(m[d][k] for m in per_node if d in m) for k in ("rss_kib", "pss_kib",
                                                                                     "processes")}
            for d in daemons}


def reload_seconds(output: str) -> float:
    """RELOAD_SCRIPT's output (nanoseconds) -> seconds; ValueError for anything else."""
    return int(output.strip().splitlines()[-1]) / 1e9


def time_reload(node: config.Node, daemon: str) -> float:
    return reload_seconds(nodes.exec_(node, ["/bin/sh", "-c", RELOAD_SCRIPT, "sh", daemon], timeout=120).stdout)


def scrape(address: str, port: int = config.EXPORTER_PORT) -> tuple[float, int]:
    """One GET of the exporter's /metrics -> (seconds, body bytes)."""
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://{config.hostport(address, port)}/metrics", timeout=SCRAPE_TIMEOUT) as r:
        body = r.read()
    return time.monotonic() - t0, len(body)


def _apply(what: str) -> float:
    res = tier.apply()
    if not all(m.ok for m in res.minions.values()):
        raise LabError(f"state.apply of {what} failed:\n{res.describe()}")
    return res.seconds


def measure_case(sites: int, backends: int, tls: tuple[str, str] | None, index: int) -> dict[str, Any]:
    """One case on the lab's nodes -> {"sites", "backends", "apply_first_s", "apply_noop_s", "apply_change_s",
    "reload_s": {daemon: median s}, "memory": {daemon: {"rss_kib", "pss_kib", "processes"}}, "scrape_s",
    "scrape_bytes"} (medians over nodes and repetitions)."""
    data = pillar.scale_pillar(sites, backends, tls)
    tier.write_pillar(data)
    first = _apply(f"{sites} sites x {backends} backends")
    noop = _apply("the same pillar again")
    tier.write_pillar(tier.pillar_with_comment(f"# bench scale {index}", data))
    change = _apply("a one-line change")
    reloads: dict[str, list[float]] = {d: [] for d in DAEMONS}
    for node in config.NODES:
        for daemon in DAEMONS:
            for _ in range(RELOADS):
                reloads[daemon].append(time_reload(node, daemon))
    tier.wait_vips_settled(timeout=60)
    memory = median_memory([daemon_memory(tier.daemon_processes(n)) for n in config.NODES])
    scrapes = [scrape(n.address) for n in config.NODES for _ in range(SCRAPES)]
    return {
        "sites": sites, "backends": backends, "apply_first_s": first, "apply_noop_s": noop, "apply_change_s": change,
        "reload_s": {d: statistics.median(v) for d, v in reloads.items()}, "memory": memory,
        "scrape_s": statistics.median(s for s, _ in scrapes),
        "scrape_bytes": int(statistics.median(b for _, b in scrapes)),
    }


def measure(sites: list[int], backends: list[int], tls: tuple[str, str] | None, deadline: float) -> dict[str, Any]:
    """Every case (smallest first) until `deadline` (time.monotonic()) -> {"nodes", "node_names", "cases",
    "skipped": [[sites, backends], ...]}; the pillar override is removed at the end."""
    if len(config.NODES) > pillar.MAX_NODES:
        raise LabError(f"the lab has {len(config.NODES)} nodes; the scale pillar serves at most {pillar.MAX_NODES}")
    grid = sorted(((s, b) for s in sites for b in backends), key=lambda c: (c[0] * c[1], c))
    out: dict[str, Any] = {"nodes": len(config.NODES), "node_names": [n.name for n in config.NODES], "cases": [],
                           "skipped": []}
    try:
        for i, (s, b) in enumerate(grid):
            if time.monotonic() > deadline:
                out["skipped"].append([s, b])
                continue
            case = measure_case(s, b, tls, i)
            out["cases"].append(case)
            log(f"lab: {s} sites x {b} backends: applies {case['apply_first_s']:.1f} / {case['apply_noop_s']:.1f} / "
                f"{case['apply_change_s']:.1f} s")
    finally:
        tier.clear_pillar_override()
        tier.apply()
    return out
