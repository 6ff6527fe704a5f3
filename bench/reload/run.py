#!/usr/bin/env python3
"""Reload benchmark: N config changes applied through Salt (`state.apply` on every node, each change
touching nginx.conf, haproxy.cfg and keepalived.conf, so every daemon reloads), under bounded load
through every VIP; failed requests counted (goal: 0). Needs the lab up with the formula applied:

    .venv/bin/python -m bench.reload.run [--changes 100] [--on-error mark-down]

--on-error runs the changes with proxytier:haproxy:check:on_error set (HAProxy's live-traffic mark-down,
for example); each failed request is recorded with the change being applied and its time into the apply.

Writes bench/out/reload-<time>.json and the `reload` section of BENCHMARKS.md (`reload-on-error-X` with
--on-error X). The lab's pillar
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


def change(i: int, on_error: str | None = None) -> dict:
    """The lab pillar with change i's comment in every config (and on_error, when given)."""
    base = tier.default_pillar()
    if on_error is not None:
        base["proxytier"] = tier.deep_merge(base["proxytier"], {"haproxy": {"check": {"on_error": on_error}}})
    return tier.pillar_with_comment(f"# bench reload {i}", base)


def failures(samples: list, applies: list[tuple[float, float]]) -> list[dict]:
    """Each failed sample (lab.load.Sample) with the change whose apply window held its start: {"change": i
    or None (between applies), "into_apply": seconds from that apply's start, "target", "error", "seconds"
    (the request's duration)}. applies: (start, end) per change, monotonic seconds like the samples'."""
    out = []
    for smp in samples:
        if smp.ok:
            continue
        i = next((k for k, (a, b) in enumerate(applies) if a <= smp.start <= b), None)
        out.append({"change": i, "into_apply": None if i is None else round(smp.start - applies[i][0], 3),
                    "target": smp.target, "error": smp.error, "seconds": round(smp.end - smp.start, 3)})
    return out


def render(run: dict) -> str:
    r = run["results"]
    return "\n".join([
        "## Reloads under load (`bench/reload`)",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}.",
        f"{r['changes']} config changes, each a pillar edit touching nginx.conf, haproxy.cfg and keepalived.conf, "
        f"with `proxytier:haproxy:check:on_error` {run['settings'].get('on_error') or 'at its default'}, "
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
        *(["Failed requests by time into their change's apply (s): "
           + ", ".join("between applies" if f["change"] is None else f"{f['into_apply']:.1f}"
                       for f in r["failures"]) + ".", ""] if r.get("failures") else []),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--on-error", default=None, help="proxytier:haproxy:check:on_error for the run "
                    "(default: the formula's)")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    n = max(1, min(args.changes, 500))
    timeout = 2.0
    requests = failed = full = 0
    errors: Counter[str] = Counter()
    slowest = 0.0
    durations: list[float] = []
    failed_at: list[dict] = []
    done = 0
    try:
        while done < n:
            with BackgroundLoad(config.VIPS, seconds=590, concurrency=args.concurrency, timeout=timeout) as bg:
                time.sleep(1)
                applies: list[tuple[float, float]] = []
                for i in range(done, min(n, done + BATCH)):
                    tier.write_pillar(change(i, args.on_error))
                    t0 = time.monotonic()
                    res = tier.apply()
                    applies.append((t0, time.monotonic()))
                    durations.append(applies[-1][1] - t0)
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
            failed_at += [f if f["change"] is None else {**f, "change": f["change"] + done - len(applies)}
                          for f in failures(result.samples, applies)]
            slowest = max([slowest, *(s.end - s.start for s in result.samples)])
            print(f"after {done} changes: {result.summary()}", flush=True)
    finally:
        tier.back_to_checkout_pillar()
    run = {
        "bench": "reload", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(),
        "settings": {"concurrency": args.concurrency, "timeout": timeout, "on_error": args.on_error},
        "results": {"changes": n, "full_applies": full, "requests": requests, "failed": failed,
                    "errors": dict(errors), "failures": failed_at, "slowest": round(slowest, 3),
                    "apply_median": statistics.median(durations)},
    }
    path = report.save_json(run, "reload")
    text = render(run)
    print(text)
    # the default's run keeps section "reload"; a run with on_error set gets its own beside it
    report.write_section(Path(args.output), "reload" + (f"-on-error-{args.on_error}" if args.on_error else ""), text)
    print(f"results: {path}; report: {args.output}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
