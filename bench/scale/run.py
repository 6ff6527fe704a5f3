#!/usr/bin/env python3
"""Scale benchmark: the formula's own cost as the configuration grows, for sites 1/10/50/200 x backends per
site 5/10 on 3 and 5 nodes (bench/scale/pillar.py makes the pillars).

Without the lab (the default; no Salt master, no daemon running): per node, the model build and every
rendered file (bench/scale/formula_cost.py), medians of --reps repetitions; how the time grows with the
sites; the tls.pem files rendered with the previous proxytier.tls_pem (a whole model per file) against the
current one in the same process; the biggest case's files checked by nginx, HAProxy and keepalived once.

    .venv/bin/python -m bench.scale.run [--reps 5] [--sites 1,10,50,200] [--backends 5,10] [--nodes 3,5]

With --lab (needs the lab up with the formula applied, as root): the same pillars applied to the running
lab's nodes (bench/scale/lab.py). Writes bench/out/scale-<time>.json and the scale section of BENCHMARKS.md
(with --lab: scale-lab-<time>.json and the scale-lab section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.scale import formula_cost, pillar, stats
from bench.scale import report as scale_report
from bench.scale.checks import check_node

#: the sizes the tls.pem files are compared before/after at (backends 10, 5 nodes, one node)
COMPARE_SITES = (10, 50, 200)
#: the target: model + render for 200 sites x 10 backends on 5 nodes, per node, on this machine (s)
TARGET_S = 2.0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def measure_case(sites: int, backends: int, nodes: int, reps: int, tls: tuple[str, str] | None,
                 params: dict[str, Any]) -> dict[str, Any]:
    """One case on every node -> {"sites", "backends", "nodes", "per_node": {node: medians}, "summary"}."""
    data = pillar.scale_pillar(sites, backends, tls)["proxytier"]
    mine = pillar.lab_mine(nodes)
    per_node = {node: formula_cost.measure_node(data, node, mine, params, reps) for node in mine}
    return {"sites": sites, "backends": backends, "nodes": nodes, "per_node": per_node,
            "summary": stats.case_summary(per_node)}


def pem_before_after(sites: int, backends: int, nodes: int, tls: tuple[str, str],
                     params: dict[str, Any]) -> dict[str, Any]:
    """Every tls.pem of proxy1 rendered with the previous and the current proxytier.tls_pem (one repetition
    each, same process) -> {"sites", "backends", "nodes", "node", "files", "before_s", "after_s", "identical"}."""
    data = pillar.scale_pillar(sites, backends, tls)["proxytier"]
    mine = pillar.lab_mine(nodes)
    node = "proxy1"
    model = formula_cost.build_model(data, node, mine=mine, params=params)
    old = formula_cost.pem_from_whole_model(data, node, mine, params)
    new = formula_cost.pem_from_site(data, params)
    formula_cost.render_group(model, "tls.pem", new)  # warm-up
    after = formula_cost.time_pems(model, new)
    before = formula_cost.time_pems(model, old)
    identical = all(old(f["path"]) == new(f["path"]) for f in model["tls_files"])
    return {"sites": sites, "backends": backends, "nodes": nodes, "node": node, "files": len(model["tls_files"]),
            "before_s": before, "after_s": after, "identical": identical}


def no_lab(args: argparse.Namespace, run: dict[str, Any], tls: tuple[str, str] | None) -> None:
    params = formula_cost.default_params()
    for nodes in args.nodes:
        for backends in args.backends:
            for sites in args.sites:
                t0 = time.monotonic()
                case = measure_case(sites, backends, nodes, args.reps, tls, params)
                run["cases"].append(case)
                m = case["summary"]
                print(f"{sites:4d} sites x {backends:2d} backends, {nodes} nodes: model {m['model_s'] * 1000:.1f} ms, "
                      f"total {m['total_s'] * 1000:.1f} ms per node (worst {m['worst_node_total_s'] * 1000:.1f}) "
                      f"[{time.monotonic() - t0:.0f} s]", flush=True)
    run["growth"] = stats.growth(run["cases"])
    if tls is not None and args.compare:
        for sites in COMPARE_SITES:
            r = pem_before_after(sites, 10, 5, tls, params)
            run["pem_before_after"].append(r)
            print(f"tls.pem x {r['files']}: before {r['before_s']:.3f} s, after {r['after_s']:.3f} s, "
                  f"identical: {r['identical']}", flush=True)
    big = max(run["cases"], key=lambda c: (c["sites"] * c["backends"], c["nodes"]))
    data = pillar.scale_pillar(big["sites"], big["backends"], tls)["proxytier"]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        run["checks"] = {"case": f"{big['sites']}x{big['backends']}x{big['nodes']}", "nodes": {
            node: check_node(data, node, pillar.lab_mine(big["nodes"]), Path(tmp) / node)
            for node in pillar.lab_mine(big["nodes"])}}
    refused = [(n, c) for n, res in run["checks"]["nodes"].items() for c, r in res.items() if not r["ok"]]
    for n, c in refused:
        print(f"{n}: {c} refused:\n{run['checks']['nodes'][n][c]['output']}", file=sys.stderr)
    target = next((c for c in run["cases"] if (c["sites"], c["backends"], c["nodes"]) == (200, 10, 5)), None)
    if target is not None:
        worst = target["summary"]["worst_node_total_s"]
        run["notes"].append(f"Target: model + render for 200 sites x 10 backends on 5 nodes under {TARGET_S:g} s per "
                            f"node: slowest node {worst:.2f} s ({'met' if worst < TARGET_S else 'NOT met'}).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=_ints, default=[1, 10, 50, 200], help="site counts (1..1000)")
    ap.add_argument("--backends", type=_ints, default=[5, 10], help="backends per site (1..100)")
    ap.add_argument("--nodes", type=_ints, default=[3, 5], help="node counts without the lab (1..5)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per node (1..50)")
    ap.add_argument("--no-tls", dest="tls", action="store_false", help="sites on port 80 only, no TLS")
    ap.add_argument("--no-compare", dest="compare", action="store_false",
                    help="skip the previous tls_pem (a whole model per file: about a minute at 200 sites)")
    ap.add_argument("--lab", action="store_true", help="measure in the running lab instead (bench/scale/lab.py)")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="--lab: stop starting cases after this")
    ap.add_argument("--section", default=None,
                    help="BENCHMARKS.md section (default scale, or scale-lab with --lab; e.g. scale-lab-5nodes)")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    if not (all(1 <= s <= 1000 for s in args.sites) and all(1 <= b <= 100 for b in args.backends)
            and all(1 <= n <= pillar.MAX_NODES for n in args.nodes) and 1 <= args.reps <= 50):
        ap.error("sizes out of range: sites 1..1000, backends 1..100, nodes 1..5, reps 1..50")
    tls = pillar.make_tls() if args.tls else None
    run: dict[str, Any] = {
        "bench": scale_report.BENCH, "schema": scale_report.SCHEMA,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "git_commit": report.git_commit(),
        "machine": report.machine_facts(),
        "settings": {"sites": args.sites, "backends": args.backends, "nodes": args.nodes, "reps": args.reps,
                     "tls": args.tls},
        "model_builds_per_apply": formula_cost.model_builds_per_apply(),
        "cases": [], "growth": [], "pem_before_after": [], "notes": [],
    }
    if args.lab:
        from bench.scale import lab  # the lab's modules only when asked for

        run["lab"] = lab.measure(args.sites, args.backends, tls, deadline=time.monotonic() + args.max_minutes * 60)
    else:
        no_lab(args, run, tls)
    # the lab's figures go to a section of their own, so a lab run keeps the no-lab one and back
    name = args.section or (f"{scale_report.BENCH}-lab" if args.lab else scale_report.BENCH)
    report.publish(run, name, scale_report.render(run), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
