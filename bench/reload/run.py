#!/usr/bin/env python3
"""Reload benchmark: N config changes applied through Salt (`state.apply` on every node, each change
touching nginx.conf, haproxy.cfg and keepalived.conf, so every daemon reloads), under bounded load
through every VIP; failed requests counted (goal: 0). Needs the lab up with the formula applied:

    .venv/bin/python -m bench.reload.run [--changes 100]

Writes bench/out/reload-<time>.json and the `reload` section of BENCHMARKS.md. The lab's pillar
override is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from bench import report
from lab import config, tier
from lab.load import BackgroundLoad

BATCH = 20  # changes per load window (a BackgroundLoad is capped at 600 s)
FILES = ("proxytier-nginx-config", "proxytier-haproxy-config", "proxytier-keepalived-config")


def change(i: int) -> dict:
    return tier.pillar_with_comment(f"# bench reload {i}")


def render(run: dict) -> str:
    r = run["results"]
    return "\n".join([
        "## Reloads under load (`bench/reload`)",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}.",
        f"{r['changes']} config changes, each a pillar edit touching nginx.conf, haproxy.cfg and keepalived.conf, "
        "applied with `salt 'proxy*' state.apply` (so nginx, HAProxy and keepalived reload on all 3 nodes), "
        f"while {run['settings']['concurrency']} clients send requests through every VIP (new connection each, "
        f"{run['settings']['timeout']} s timeout).",
        "",
        "| changes | applies with every config changed | requests | failed | slowest request (s) | apply median (s) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {r['changes']} | {r['full_applies']} | {r['requests']} | {r['failed']} | {r['slowest']:.3f} "
        f"| {r['apply_median']:.1f} |",
        "",
        ("Errors: " + ", ".join(f"{k}: {v}" for k, v in r["errors"].items())) if r["errors"] else "No errors.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    n = max(1, min(args.changes, 500))
    timeout = 2.0
    requests = failed = full = 0
    errors: Counter[str] = Counter()
    slowest = 0.0
    durations: list[float] = []
    done = 0
    try:
        while done < n:
            with BackgroundLoad(config.VIPS, seconds=590, concurrency=args.concurrency, timeout=timeout) as bg:
                time.sleep(1)
                for i in range(done, min(n, done + BATCH)):
                    tier.write_pillar(change(i))
                    t0 = time.monotonic()
                    res = tier.apply()
                    durations.append(time.monotonic() - t0)
                    bad = [m for m, a in res.minions.items() if not a.ok]
                    if bad:
                        raise SystemExit(f"change {i}: apply failed on {bad}:\n{res.describe()}")
                    full += all(all(f in a.changed for f in FILES) for a in res.minions.values())
                    done = i + 1
                    print(f"change {done}/{n}: apply {durations[-1]:.1f} s", flush=True)
                time.sleep(1)
            result = bg.result
            assert result is not None
            requests += result.total
            failed += result.failed
            errors.update(result.errors)
            slowest = max([slowest, *(s.end - s.start for s in result.samples)])
            print(f"after {done} changes: {result.summary()}", flush=True)
    finally:
        tier.clear_pillar_override()
        tier.apply()
    run = {
        "bench": "reload", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(),
        "settings": {"concurrency": args.concurrency, "timeout": timeout},
        "results": {"changes": n, "full_applies": full, "requests": requests, "failed": failed,
                    "errors": dict(errors), "slowest": round(slowest, 3),
                    "apply_median": statistics.median(durations)},
    }
    path = report.save_json(run, "reload")
    text = render(run)
    print(text)
    report.write_section(Path(args.output), "reload", text)
    print(f"results: {path}; report: {args.output}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
