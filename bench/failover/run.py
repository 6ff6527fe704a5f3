#!/usr/bin/env python3
"""Failover benchmark in the lab: every chaos event (lab/chaos.py) on the node holding VIP-1, under an
open-loop probe (a new connection every 10 ms through each VIP), repeated, for keepalived's own timing
defaults and for proxytier's, in one run. Writes bench/out/failover-<time>.json, one timeline PNG per
event and profile (the median repetition) under bench/failover/plots/, and the failover section of
BENCHMARKS.md.

Needs the lab up with the formula applied (`make demo`, or `make lab-up` and an apply), as root:

    .venv/bin/python -m bench.failover.run [--reps 3] [--events node_lost,haproxy_sigkill]
    .venv/bin/python -m bench.failover.run --dual-stack --events node_lost,haproxy_sigkill,link_down \
        --profiles proxytier-defaults    # IPv6 VIPs beside IPv4 (lab.dualstack), each event per family
    .venv/bin/python -m bench.failover.run --events link_down --reps 5 \
        --profiles on-error-none,on-error-mark-down --section failover-on-error   # HAProxy's live-traffic
                                                                                    # mark-down against checks only

Bounded: each repetition probes for at most 60 s; the whole run stops after --max-minutes.
The lab's pillar override is removed at the end (the tier returns to the checkout's pillar).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import report
from bench.failover import plot, stats
from bench.failover.probe import BackgroundProbe, Target
from lab import chaos, config, dualstack, master, tier
from lab.sh import log

PLOTS = Path(__file__).resolve().parent / "plots"
REPAIR_AFTER = 3.0  # a fault that needs an operator (node off, link down, dead backend) lasts this long
TAIL = 2.0  # seconds probed after the tier settled

# The VRRP timing knobs proxytier tunes, at keepalived's own defaults (keepalived.conf(5)): VRRPv2 with
# 1 s adverts, 5 s before the second gratuitous ARP burst, no ARP on hearing a lower-priority master.
KEEPALIVED_DEFAULTS = {
    "version": 2,
    "advert_interval": 1,
    "garp_master_delay": 5,
    "garp_lower_prio_repeat": 0,
    "check_rise": 1,
}
# A profile is a pillar override (under proxytier:) on top of the lab's pillar; its note says what it changes.
PROFILES = {
    "proxytier-defaults": {},
    "keepalived-defaults": {"vrrp": KEEPALIVED_DEFAULTS},
    "on-error-none": {"haproxy": {"check": {"on_error": "none"}}},
    "on-error-mark-down": {"haproxy": {"check": {"on_error": "mark-down"}}},
}
PROFILE_NOTES = {
    "keepalived-defaults": "keepalived-defaults changes only the VRRP timing knobs; HAProxy, nginx and systemd "
                           "settings stay proxytier's.",
    "on-error-none": "on-error-none: only HAProxy's health checks mark an nginx down (`fall` failed checks).",
    "on-error-mark-down": "on-error-mark-down: live traffic marks an nginx down too, after `error_limit` "
                          "connection errors in a row (`observe layer4 on-error mark-down`).",
}
# events whose repair is an event of its own (the node or link coming back, its VIP preempted back)
RETURNS = {"node_lost": "node_returns", "link_down": "link_up"}


class Sampler:
    """Polls every node's exporter (VRRP state per instance, VIPs owned) while a repetition runs."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.instances = list(tier.vrrp_instances(tier.current_pillar()).values())
        self.vips = tier.served_vips()
        self.vrrp: list[tuple[float, str, str, str]] = []
        self.holders: list[tuple[float, str, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="failover-sampler")

    def _scrape(self, node: config.Node) -> tuple[dict[str, str], set[str]] | None:
        url = f"http://{config.check_lab_address(node.address)}:{config.EXPORTER_PORT}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=0.3) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        states, owned = {}, set()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "proxytier_keepalived_vrrp_state" and s.value == 1:
                    states[s.labels["vrrp_instance"]] = s.labels["state"]
                elif s.name == "proxytier_vip_owned" and s.value == 1:
                    owned.add(s.labels["vip"])
        return states, owned

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            owners: dict[str, str | None] = dict.fromkeys(self.vips)
            for node in config.NODES:
                got = self._scrape(node)
                if got is None:
                    self.vrrp.extend((t, node.name, inst, "STOPPED") for inst in self.instances)
                    continue
                states, owned = got
                self.vrrp.extend((t, node.name, inst, states.get(inst, "STOPPED")) for inst in self.instances)
                for vip in owned & set(owners):
                    owners[vip] = node.name
            self.holders.extend((t, vip, who) for vip, who in owners.items())
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def apply_profile(name: str, override: dict, dual_stack: bool = False) -> None:
    """The lab pillar (dual stack: lab.dualstack's) with the profile's override merged into proxytier:,
    applied; SystemExit if a minion fails."""
    data = dualstack.pillar() if dual_stack else tier.default_pillar()
    data["proxytier"] = tier.deep_merge(data["proxytier"], override)
    if override or dual_stack:
        tier.write_pillar(data)
    else:
        tier.clear_pillar_override()
    log(f"profile {name}: applying {override or 'the formula defaults'}")
    res = tier.apply()
    bad = [n for n, m in res.minions.items() if not m.ok]
    if bad:
        raise SystemExit(f"apply of profile {name} failed on {bad}:\n{res.describe()}")
    chaos.wait_settled()


def one_rep(event: str, targets: list[Target]) -> dict:
    ev = chaos.EVENTS[event]
    chaos.wait_settled()
    victim = config.node(chaos.home()[config.VIPS[0]][0])
    with Sampler() as sampler:
        probe = BackgroundProbe(targets, interval=0.01, timeout=2.0, max_seconds=60).start()
        time.sleep(1.5)
        t_fault = time.monotonic()
        repair = ev.inject(victim)
        t_repair = None
        if repair:
            time.sleep(REPAIR_AFTER)
            t_repair = time.monotonic()
            repair()
        chaos.wait_settled(timeout=45)
        time.sleep(TAIL)
        result = probe.stop()
    if event == "node_lost":  # its minion reconnects before the next repetition applies anything
        master.wait_ping([victim.name], timeout=90)
    return {"result": result, "t_fault": t_fault, "t_repair": t_repair, "vrrp": sampler.vrrp,
            "holders": sampler.holders, "victim": victim.name}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions per event and profile (1..10)")
    ap.add_argument("--events", default=",".join(sorted(chaos.EVENTS)), help="comma-separated chaos events")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="stop starting repetitions after this")
    ap.add_argument("--profiles", default="proxytier-defaults,keepalived-defaults",
                    help=f"comma-separated profiles, the first the reference ({', '.join(PROFILES)})")
    ap.add_argument("--section", default=None,
                    help="BENCHMARKS.md section to write (default: failover, or failover-dualstack)")
    ap.add_argument("--dual-stack", action="store_true",
                    help="the tier in dual stack (lab.dualstack): the IPv6 VIPs probed beside the IPv4 ones, each "
                         "event reported per family (EVENT and EVENT-ipv6), in BENCHMARKS.md's section "
                         "failover-dualstack")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    profiles = {p: PROFILES[p] for p in args.profiles.split(",") if p}
    if not profiles or set(args.profiles.split(",")) - set(PROFILES) - {""}:
        ap.error(f"--profiles: choose from {', '.join(PROFILES)}")
    reps_n = max(1, min(args.reps, 10))
    events = [e for e in args.events.split(",") if e]
    unknown = [e for e in events if e not in chaos.EVENTS]
    if unknown:
        ap.error(f"unknown events {unknown}; known: {', '.join(sorted(chaos.EVENTS))}")
    deadline = time.monotonic() + args.max_minutes * 60
    vips = config.VIPS + (config.VIPS6 if args.dual_stack else [])
    targets = [Target(vip, 80, "/lab") for vip in vips]
    names = [t.name for t in targets]
    labels = {t.name: f"VIP-{i % len(config.VIPS) + 1} {t.address}" for i, t in enumerate(targets)}
    # each event's figures per address family: the IPv4 VIPs ("") and, in dual stack, the IPv6 ones
    families = {"": [t.name for t in targets if ":" not in t.address]}
    if args.dual_stack:
        families["-ipv6"] = [t.name for t in targets if ":" in t.address]
    run = report.new_run(
        profiles=profiles, reference=next(iter(profiles)),
        settings={"interval": 0.01, "timeout": 2.0, "good_latency": stats.GOOD_LATENCY, "settle": stats.SETTLE,
                  "reps": reps_n, "repair_after": REPAIR_AFTER, "victim": "the node holding VIP-1",
                  "targets": names},
        notes=["Every event hits the node holding VIP-1 (proxy1) under the probe; VIP-2 and VIP-3 show "
               "what the other nodes' clients saw.",
               *(PROFILE_NOTES[p] for p in profiles if p in PROFILE_NOTES),
               *(["Dual stack (lab.dualstack): the IPv6 VIPs were probed in the same repetitions as the IPv4 "
                  "ones; an EVENT-ipv6 row is the IPv6 VIPs' figures, the EVENT row the IPv4 VIPs'."]
                 if args.dual_stack else [])],
    )
    PLOTS.mkdir(parents=True, exist_ok=True)
    prefix = "dualstack-" if args.dual_stack else ""  # the IPv4-only run's plots stay as they are
    try:
        for profile, override in profiles.items():
            apply_profile(profile, override, args.dual_stack)
            for event in events:
                figures: dict[str, list[dict]] = {event: []}
                kept: dict[str, list[tuple]] = {event: []}
                for rep in range(reps_n):
                    if time.monotonic() > deadline:
                        log("time budget used up: no more repetitions")
                        break
                    r = one_rep(event, targets)
                    records = r["result"].records
                    parts = [(event, r["t_fault"], r["t_repair"])]
                    if event in RETURNS and r["t_repair"]:
                        parts.append((RETURNS[event], r["t_repair"], None))
                    for (name, t0, until), (suffix, family) in itertools.product(parts, families.items()):
                        figs = stats.event_stats(records, t0, family, until=until)
                        figures.setdefault(name + suffix, []).append(figs)
                        kept.setdefault(name + suffix, []).append((records, t0, r["vrrp"], r["holders"]))
                        log(f"{profile} {name + suffix} rep {rep + 1}: outage {figs['outage']:.3f} s, "
                            f"failed {figs['failed']} ({figs['failed_connect']} to connect), slow {figs['slow']}")
                for name, reps in figures.items():
                    if not reps:
                        continue
                    i = stats.median_rep(reps)
                    records, t0, vrrp_s, holders = kept[name][i]
                    png = plot.timeline(PLOTS / f"{prefix}{name}-{profile}.png", records, t0, event=name,
                                        profile=profile, vrrp=vrrp_s, holders=holders, targets=names,
                                        target_labels=labels, window=(1.5, 8.0))
                    base = name.removesuffix("-ipv6")
                    doc = chaos.EVENTS[base].doc if base in chaos.EVENTS else f"the repair of {event} (preempt back)"
                    doc += " (the IPv6 VIPs)" if base != name else ""
                    report.add_event(run, event=name, profile=profile, reps=reps, plot=png, description=doc)
    finally:
        tier.back_to_checkout_pillar()
    path = report.save_run(run)
    section = args.section or ("failover-dualstack" if args.dual_stack else report.BENCH)
    report.write_report([path], args.output, section=section)
    log(f"results: {path}; report: {args.output}; plots: {PLOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
