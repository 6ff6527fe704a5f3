#!/usr/bin/env python3
"""Handover benchmark in the lab: every node's VIPs handed over and back (``proxytier.handover NODE
release``, then ``reclaim``), round after round, under load through every VIP the tier serves (a new
connection per request, 4 at a time, 2 s timeout: a SYN lost to a moving VIP is retransmitted after 1 s,
in time), for proxytier's VRRP priorities and for a narrow priority step, in one run. Counts failed
requests, the times two nodes became MASTER of one instance at once (keepalived's journal: two entries
into MASTER state of one instance on different nodes within 0.5 s), and each handover's seconds. Writes
bench/out/handover-<time>.json and the handover section of BENCHMARKS.md.

Needs the lab up with the formula applied (`make demo`, or `make lab-up` and an apply), as root:

    .venv/bin/python -m bench.handover.run [--rounds 5] [--ipv4-only] [--profiles proxytier-defaults,step-10]

Bounded: at most --rounds x nodes x 2 handovers per profile, the load at most 600 s per profile, the
whole run stops starting rounds after --max-minutes. The lab's pillar override is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

from bench import report
from bench.failover.run import apply_profile
from lab import config, master, tier
from lab.load import BackgroundLoad
from lab.sh import log

BENCH = "handover"
PROFILES = {
    "proxytier-defaults": {},
    # the step proxytier shipped before `auto`: backups' master-down timers 3.9 ms apart at 0.1 s adverts
    "step-10": {"vrrp": {"priority_step": 10}},
}


def handover(node: str, action: str) -> float:
    """One handover step on every node at once (salt) -> its seconds as the slowest node reports them;
    SystemExit if it failed."""
    reports = master.salt_json(["salt", "proxy*", "proxytier.handover", node, action], timeout=120)
    try:
        return max(float(r["seconds"]) for r in reports.values())
    except (ValueError, KeyError, TypeError) as e:  # a minion's error text instead of its report
        raise SystemExit(f"handover {node} {action} failed: {reports}") from e


def soak(rounds: int, deadline: float) -> dict:
    """`rounds` rounds of every node's release and reclaim under load -> the profile's figures."""
    since = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    vips = tier.served_vips()
    seconds = {"release": [], "reclaim": []}
    with BackgroundLoad(vips, seconds=600, concurrency=4, timeout=2) as bg:
        time.sleep(1)
        for r in range(rounds):
            if time.monotonic() > deadline:
                log("time budget used up: no more rounds")
                break
            for n in config.NODES:
                for action in ("release", "reclaim"):
                    seconds[action].append(handover(n.name, action))
                    time.sleep(1.5)
            log(f"round {r + 1} of {rounds} done")
    result = bg.result
    assert result is not None
    return {
        "vips": vips, "handovers": len(seconds["release"]) + len(seconds["reclaim"]),
        "requests": result.total, "failed": result.failed, "errors": dict(result.errors),
        "failed_at": sorted((s.target, round(s.start, 3)) for s in result.samples if not s.ok),
        "double_masters": tier.double_masters(tier.keepalived_master_entries(since)),
        "release_seconds_median": statistics.median(seconds["release"]) if seconds["release"] else None,
        "reclaim_seconds_median": statistics.median(seconds["reclaim"]) if seconds["reclaim"] else None,
        "handover_seconds_max": max(seconds["release"] + seconds["reclaim"], default=None),
    }


def render(run: dict) -> str:
    """The handover section's markdown."""
    ref = run["reference"]
    lines = ["## VIP handover (`bench/handover`)", "",
             f"### Run {run['date']} (commit `{run['git_commit']}`)", "",
             f"Machine: {report.machine_line(run['machine'])}.", "",
             f"Load: a new connection per request, 4 at a time, 2 s timeout, through {len(run['vips'])} VIPs "
             f"({', '.join(run['vips'])}). Each round hands every node's VIPs over and back "
             "(`proxytier.handover NODE release`, then `reclaim`). A double MASTER: two nodes entered MASTER "
             "state of one instance within 0.5 s of each other (keepalived's journal). Handover seconds: the "
             "slowest node's report.", "",
             f"| profile | pillar settings | handovers | requests | failed | failed per 10,000 | double MASTERs | "
             f"release s (median) | reclaim s (median) | slowest s | failed vs {ref} |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    base = run["results"][ref]["failed"]
    for name, res in run["results"].items():
        ratio = "1 (reference)" if name == ref else (f"{res['failed'] / base:.1f}" if base else
                                                      f"{res['failed']} vs 0")
        lines.append(f"| {name} | {json.dumps(run['profiles'][name]) if run['profiles'][name] else 'defaults'} | "
                     f"{res['handovers']} | {res['requests']} | {res['failed']} | "
                     f"{res['failed'] * 10000 / max(res['requests'], 1):.2f} | {res['double_masters']} | "
                     f"{res['release_seconds_median']:.2f} | {res['reclaim_seconds_median']:.2f} | "
                     f"{res['handover_seconds_max']:.2f} | {ratio} |")
    lines += ["", *[f"- {note}" for note in run["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per profile (1..20): every node out and back")
    ap.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated: " + ", ".join(PROFILES))
    ap.add_argument("--ipv4-only", action="store_true", help="the checkout's IPv4 pillar (default: lab.dualstack)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="stop starting rounds after this")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    names = [p for p in args.profiles.split(",") if p]
    if not names or set(names) - set(PROFILES):
        ap.error(f"--profiles: choose from {', '.join(PROFILES)}")
    rounds = max(1, min(args.rounds, 20))
    deadline = time.monotonic() + args.max_minutes * 60
    run = {"bench": BENCH, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "git_commit": report.git_commit(), "machine": report.machine_facts(), "rounds": rounds,
           "profiles": {p: PROFILES[p] for p in names}, "reference": names[0], "results": {},
           "notes": ["The failed requests are TCP connects unanswered within 2 s: a SYN dropped by the holder's "
                     "guard whose retransmit (1 s later) found the VIP not yet moved, or moved to a node that gave "
                     "it up again (a double MASTER) while the client still followed that node's gratuitous ARP "
                     "or unsolicited NA."]}
    try:
        for name in names:
            apply_profile(name, PROFILES[name], dual_stack=not args.ipv4_only)
            run["vips"] = tier.served_vips()
            run["results"][name] = soak(rounds, deadline)
            log(f"{name}: {run['results'][name]['failed']} failed of {run['results'][name]['requests']}, "
                f"{run['results'][name]['double_masters']} double MASTERs")
    finally:
        tier.back_to_checkout_pillar()
    report.publish(run, BENCH, render(run), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
