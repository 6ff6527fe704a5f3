#!/usr/bin/env python3
"""Reload-storm benchmark in the lab: keepalived reloaded (``systemctl reload keepalived``: SIGHUP) over and
over, in turn on every node, under load through the tier's VIPs, for tiers of 3, 20 and 100 VRRP instances
(the lab's pool VIPs plus extra VIPs 198.18.0.110.., each its own instance) at proxytier's 0.1 s adverts.

A reloading keepalived sends no adverts until its new configuration runs (keepalived 2.x sends one for each
MASTER instance just before it starts reloading, so the silence is the reload itself). If the silence
outlasts a backup's master-down timer (3 x advert + skew: 0.36 s for the first backup at 0.1 s), the backup
takes the VIP. Measured per reload, from the peers' side: the longest gap between two adverts of one
instance from the reloading node (a raw socket for IP protocol 112 in every node, so the adverts as the
backups receive them), and per tier: how many VRRP instances entered MASTER during the storm (keepalived's
journal: each one a VIP move), and the failed requests. Writes bench/out/reload-storm-<time>.json and the
reload-storm section of BENCHMARKS.md.

Needs the lab up with the formula applied (`make demo`), as root:

    .venv/bin/python -m bench.reload_storm.run [--instances 3,20,100] [--reloads 50]

Bounded: at most 200 reloads per tier, 0.5 s apart, the adverts captured for at most 300 s, the whole run
stops starting tiers after --max-minutes. The lab's pillar override is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import statistics
import threading
import time
from collections.abc import Iterable, Sequence

from bench import report
from lab import config, nodes, tier
from lab.load import BackgroundLoad
from lab.sh import log

BENCH = "reload-storm"
SPACING = 0.5  # seconds between two reloads (each node's turn comes every SPACING x nodes)
ADVERT = 0.1  # proxytier's default advert interval (s)
EXTRA_BASE = 110  # extra VIPs 198.18.0.110.. (the lab's nodes, backends and pool VIPs lie below)
EXTRA_VRID = 60  # their VRIDs 60.. (the pool's are 51..55)
MAX_INSTANCES = 100

# Runs in a node (python3 of the node's OS): every VRRP packet it receives for `seconds`, one JSON list per
# line [CLOCK_MONOTONIC seconds, source address, VRID, priority]. The monotonic clock is the host's.
CAPTURE = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.settimeout(0.5)
end = time.monotonic() + float(sys.argv[1])
out = []
while time.monotonic() < end:
    try:
        pkt = s.recv(2048)
    except socket.timeout:
        continue
    ihl = (pkt[0] & 15) * 4
    out.append([round(time.monotonic(), 4), socket.inet_ntoa(pkt[12:16]), pkt[ihl + 1], pkt[ihl + 2]])
sys.stdout.write("\n".join(json.dumps(x) for x in out))
"""


def storm_pillar(instances: int) -> dict:
    """The lab pillar with `instances` - len(nodes) extra explicit VIPs (one VRRP instance each) beside the
    pool's; ValueError outside len(nodes)..MAX_INSTANCES."""
    extra = instances - len(config.NODES)
    if not 0 <= extra <= MAX_INSTANCES - len(config.NODES):
        raise ValueError(f"instances must be {len(config.NODES)}..{MAX_INSTANCES}, not {instances}")
    data = tier.default_pillar()
    data["proxytier"]["vips"] = [{"address": f"198.18.0.{EXTRA_BASE + i}/24", "vrid": EXTRA_VRID + i}
                                 for i in range(extra)]
    return data


def master_down(priority: int, advert: float = ADVERT) -> float:
    """A VRRPv3 backup's master-down interval (RFC 5798 6.1): 3 x advert + (256 - priority) x advert / 256."""
    return 3 * advert + (256 - priority) * advert / 256


def reload_gaps(adverts: Iterable[Sequence], reloads: Sequence[tuple[float, str]], window: float = 1.5) -> list[float]:
    """For each reload (host monotonic time, address of the reloading node): the longest silence (s) between
    two consecutive adverts of one instance (VRID) from that address, as one peer received them, among the
    gaps that end at or after t and start before t + window. `adverts`: [time, source, VRID, priority] rows,
    optionally a fifth item, the receiver (streams are per receiver). A reload with no such gap (its node
    sent no advert around it) gives `window`: it was silent all along."""
    streams: dict[tuple[str, str, int], list[float]] = {}
    for row in adverts:
        t, src, vrid = float(row[0]), str(row[1]), int(row[2])
        receiver = str(row[4]) if len(row) > 4 else ""
        streams.setdefault((receiver, src, vrid), []).append(t)
    for times in streams.values():
        times.sort()
    out = []
    for t, address in reloads:
        worst = 0.0
        for (_, src, _), times in streams.items():
            if src != address:
                continue
            for a, b in itertools.pairwise(times):
                if b >= t and a <= t + window:
                    worst = max(worst, b - a)
        out.append(round(worst, 4) if worst else window)
    return out


def capture(node: config.Node, seconds: float, rows: list[list]) -> None:
    """Every VRRP packet `node` receives for `seconds`, appended to `rows` with the receiver's name."""
    out = nodes.exec_(node, ["python3", "-c", CAPTURE, f"{seconds:.1f}"], timeout=seconds + 60).stdout
    rows.extend([*json.loads(line), node.name] for line in out.splitlines() if line.strip())


def storm(instances: int, reloads_n: int) -> dict:
    """Apply a tier of `instances` VRRP instances, then `reloads_n` keepalived reloads under load -> figures."""
    tier.write_pillar(storm_pillar(instances))
    tier.apply_ok(f"the {instances}-instance pillar")
    conf = nodes.exec_(config.NODES[0], ["cat", "/etc/keepalived/keepalived.conf"]).stdout
    rendered = conf.count("vrrp_instance ")
    extra = [v["address"].split("/")[0] for v in storm_pillar(instances)["proxytier"]["vips"]]
    tier.wait_vips_settled(vips=config.VIPS + extra, timeout=60)
    time.sleep(2)
    since = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    seconds = reloads_n * SPACING + 4
    rows: list[list] = []
    threads = [threading.Thread(target=capture, args=(n, seconds, rows), daemon=True) for n in config.NODES]
    reloads: list[tuple[float, str]] = []
    with BackgroundLoad(config.VIPS, seconds=seconds + 30, concurrency=3, timeout=2) as bg:
        for th in threads:
            th.start()
        time.sleep(1.5)
        for i in range(reloads_n):
            node = config.NODES[i % len(config.NODES)]
            reloads.append((time.monotonic(), node.address))
            nodes.exec_(node, ["systemctl", "reload", "keepalived"])
            time.sleep(max(0.0, reloads[-1][0] + SPACING - time.monotonic()))
        for th in threads:
            th.join(timeout=seconds + 90)
    result = bg.result
    assert result is not None
    gaps = reload_gaps(rows, reloads, window=SPACING * len(config.NODES))  # until the node's next reload
    # the first backup of a VIP is 50 priorities below its holder (priority_step auto, 3 nodes: 150/100/50)
    threshold = master_down(100)
    return {
        "instances": instances, "rendered_instances": rendered, "reloads": len(reloads), "adverts": len(rows),
        "gap_median": statistics.median(gaps), "gap_max": max(gaps),
        "over_master_down": sum(g > threshold for g in gaps), "master_down": round(threshold, 4),
        "masters_entered": tier.keepalived_log_count("Entering MASTER STATE", since),
        "requests": result.total, "failed": result.failed, "errors": dict(result.errors),
    }


def render(run: dict) -> str:
    """The reload-storm section's markdown."""
    lines = ["## keepalived reload storms (`bench/reload_storm`)", "",
             f"### Run {run['date']} (commit `{run['git_commit']}`)", "",
             f"Machine: {report.machine_line(run['machine'])}.", "",
             f"{run['nodes']} nodes, adverts every {ADVERT} s. Per tier: {run['reloads']} keepalived reloads "
             f"(`systemctl reload keepalived`), {SPACING} s apart, in turn on every node, under load (a new "
             "connection per request, 3 at a time, 2 s timeout) through the pool VIPs. Advert gap: per reload, "
             "the longest silence between two adverts of one instance from the reloading node, as its peers "
             "received them. VIP moves: VRRP instances that entered MASTER on any node during the storm "
             "(keepalived's journal).", "",
             "| VRRP instances | reloads | advert gap median (s) | advert gap max (s) | gaps over master-down | "
             "VIP moves | requests | failed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for res in run["results"]:
        lines.append(f"| {res['rendered_instances']} | {res['reloads']} | {res['gap_median']:.3f} | "
                     f"{res['gap_max']:.3f} | {res['over_master_down']} (> {res['master_down']:.3f} s) | "
                     f"{res['masters_entered']} | {res['requests']} | {res['failed']} |")
    lines += ["", *[f"- {note}" for note in run["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", default="3,20,100", help="comma-separated VRRP instance counts (nodes..100)")
    ap.add_argument("--reloads", type=int, default=50, help="keepalived reloads per tier (1..200)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="stop starting tiers after this")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    try:
        counts = [int(x) for x in args.instances.split(",") if x]
        for c in counts:
            storm_pillar(c)
    except ValueError as e:
        ap.error(f"--instances: {e}")
    reloads_n = max(1, min(args.reloads, 200))
    deadline = time.monotonic() + args.max_minutes * 60
    run = {"bench": BENCH, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "git_commit": report.git_commit(), "machine": report.machine_facts(), "nodes": len(config.NODES),
           "reloads": reloads_n, "results": [], "notes": []}
    try:
        for c in counts:
            if time.monotonic() > deadline:
                log("time budget used up: no more tiers")
                break
            res = storm(c, reloads_n)
            run["results"].append(res)
            log(f"{c} instances: advert gap median {res['gap_median']:.3f} s, max {res['gap_max']:.3f} s, "
                f"{res['masters_entered']} VIP moves, {res['failed']} failed of {res['requests']}")
    finally:
        tier.back_to_checkout_pillar()
    report.publish(run, BENCH, render(run), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
