"""The `scale` section of BENCHMARKS.md from a scale run's JSON (bench/scale/run.py writes both).

A run: {"bench": "scale", "schema": 1, "date", "git_commit", "machine", "settings": {"reps", "tls", ...},
 "model_builds_per_apply": int, "cases": [{"sites", "backends", "nodes", "per_node": {node: measure_node()},
 "summary": stats.case_summary()}], "growth": stats.growth(cases),
 "pem_before_after": [{"sites", "backends", "nodes", "node", "files", "before_s", "after_s", "identical"}],
 "checks": {"case": "200x10x5", "nodes": {node: {check: {"ok", "output"}}}}, "lab": {...} or absent,
 "notes": [...]}. Times are seconds in the JSON, shown in ms; sizes bytes, shown in KiB.
"""

from __future__ import annotations

from typing import Any

from bench import report
from bench.scale import stats

BENCH = "scale"
SCHEMA = 1
SHOWN = ("nginx.conf", "haproxy.cfg", "keepalived.conf", "filter.nft", "crt-list", "tls.pem", "units")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def render(run: dict[str, Any]) -> str:
    """The scale section's markdown (## level) for one run."""
    if run.get("bench") != BENCH:
        raise ValueError(f"not a scale run (bench = {run.get('bench')!r})")
    head = ["## The formula's cost as the configuration grows (`bench/scale`)" if not run.get("lab") else
            "## The formula's cost as the configuration grows, in the lab (`bench/scale --lab`)", "",
            f"### Run {run['date']} (commit `{run['git_commit']}`)", "",
            f"Machine: {report.machine_line(run['machine'])}.", ""]
    lines = head + (_no_lab(run) if run["cases"] else [])
    lab = run.get("lab")
    if lab:
        lines += ["", *render_lab(lab)]
    lines += ["", *[f"- {n}" for n in run.get("notes", [])], ""]
    return "\n".join(lines)


def _no_lab(run: dict[str, Any]) -> list[str]:
    s = run["settings"]
    builds = run["model_builds_per_apply"]
    lines = [
        "Without a Salt master: per node, the model built from a pillar of the lab's shape (members from the "
        "mine, one pool VIP per member) with N sites routed by host name on the shared ports 80 and 443 "
        f"({'TLS by SNI, one crt-list' if s['tls'] else 'plain HTTP'}), B backends each (198.19.0.0/16), "
        "and every file the formula renders from it (nginx.conf, haproxy.cfg, keepalived.conf, filter.nft, the "
        "crt-list, one tls.pem per site, the unit files), as tests/formula.py renders them. Figures are medians "
        f"of {s['reps']} repetitions per node (after a warm-up that compiles the templates), then the median "
        "over the nodes; \"worst node\" is the slowest node's total. One `state.apply proxytier` builds the "
        + (f"model {builds} times (once per SLS file that imports map.jinja)" if builds > 1 else
           "model once (map.jinja's proxytier.model caches it for the state run)")
        + f": \"per apply\" = {builds} x model + every render.", "",
        "| sites | backends | nodes | model (ms) | " + " | ".join(f"{g} (ms)" for g in SHOWN)
        + " | total (ms) | worst node (ms) | per apply (s) | nginx.conf (KiB) | haproxy.cfg (KiB) "
        "| keepalived.conf (KiB) | tls.pem files |",
        "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in SHOWN) + " | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for c in sorted(run["cases"], key=lambda c: (c["nodes"], c["backends"], c["sites"])):
        m = c["summary"]
        per_apply = builds * m["model_s"] + sum(m["render_s"].values())
        lines.append(
            f"| {c['sites']} | {c['backends']} | {c['nodes']} | {_ms(m['model_s'])} | "
            + " | ".join(_ms(m["render_s"][g]) for g in SHOWN)
            + f" | {_ms(m['total_s'])} | {_ms(m['worst_node_total_s'])} | {per_apply:.2f} | "
            f"{_kib(m['bytes']['nginx.conf'])} | {_kib(m['bytes']['haproxy.cfg'])} | "
            f"{_kib(m['bytes']['keepalived.conf'])} | {m['files']['tls.pem']} |")
    lines += ["", "Growth with the number of sites (total per node; excess = time ratio / size ratio, 1 = linear; "
              f"over {stats.WORSE_THAN_LINEAR} is flagged worse than linear):", "",
              "| backends | nodes | sites | size ratio | time ratio | excess | per site (ms) | worse than linear |",
              "| ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for g in run["growth"]:
        lines.append(f"| {g['backends']} | {g['nodes']} | {g['from_sites']} -> {g['to_sites']} | "
                     f"{g['size_ratio']:.1f} | {g['time_ratio']:.2f} | {g['excess']:.2f} | "
                     f"{g['per_site_ms'][0]:.2f} -> {g['per_site_ms'][1]:.2f} | "
                     f"{'**yes**' if g['worse_than_linear'] else 'no'} |")
    ba = run.get("pem_before_after") or []
    if ba:
        lines += ["", "The tls.pem files, before and after, in the same process (one node, one repetition): before, "
                  "`proxytier.tls_pem` built the whole model for each file (N sites: N models per apply, growing "
                  "as N x N); after, it validates the one site that writes the file "
                  "(proxytier_model.tls_pem). Identical = the same bytes for every file.", "",
                  "| sites | backends | nodes | files | before (s) | after (s) | speed-up | identical |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in ba:
            up = stats.speedup(r["before_s"], r["after_s"])
            lines.append(f"| {r['sites']} | {r['backends']} | {r['nodes']} | {r['files']} | {r['before_s']:.3f} | "
                         f"{r['after_s']:.3f} | {'-' if up is None else f'{up:.0f}x'} | "
                         f"{'yes' if r['identical'] else '**no**'} |")
    checks = run.get("checks")
    if checks:
        lines += ["", f"The biggest case ({checks['case']}) checked by the real daemons once, not timed "
                  "(bench/scale/checks.py: nginx -t on a copy listening on loopback, keepalived -t on a copy naming "
                  "this host's interface, since no network namespace is used here):", "",
                  "| node | " + " | ".join(next(iter(checks["nodes"].values()))) + " |",
                  "| --- |" + " --- |" * len(next(iter(checks["nodes"].values())))]
        for node, res in checks["nodes"].items():
            lines.append(f"| {node} | " + " | ".join("accepted" if r["ok"] else "**refused**" for r in res.values())
                         + " |")
    return lines


def render_lab(lab: dict[str, Any]) -> list[str]:
    """The lab part's lines: applies, reloads, memory and scrapes per case (bench/scale/lab.py results)."""
    lines = [f"In the lab ({lab['nodes']} nodes: {', '.join(lab['node_names'])}): `salt 'proxy*' state.apply` "
             "times (first apply of the case's pillar, a no-op apply, an apply of a one-line change), "
             "`systemctl reload` per daemon inside a node (median over nodes and repetitions), each daemon's "
             "processes' memory (sum over its processes, median over nodes) and the exporter's /metrics "
             "(median over nodes and scrapes).", "",
             "| sites | backends | first apply (s) | no-op apply (s) | one-line change (s) | reload nginx / haproxy "
             "/ keepalived (s) | RSS nginx / haproxy / keepalived (MiB) | PSS nginx / haproxy / keepalived (MiB) "
             "| scrape (ms) | scrape (KiB) |",
             "| ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |"]
    if lab.get("skipped"):
        lines.insert(1, f"Not run (time budget): {', '.join(f'{s} x {b}' for s, b in lab['skipped'])}.")
    for c in lab["cases"]:
        rel = " / ".join(f"{c['reload_s'].get(d, float('nan')):.2f}" for d in ("nginx", "haproxy", "keepalived"))
        rss = " / ".join(f"{c['memory'].get(d, {}).get('rss_kib', 0) / 1024:.1f}" for d in ("nginx", "haproxy",
                                                                                          "keepalived"))
        pss = " / ".join(f"{c['memory'].get(d, {}).get('pss_kib', 0) / 1024:.1f}" for d in ("nginx", "haproxy",
                                                                                          "keepalived"))
        lines.append(f"| {c['sites']} | {c['backends']} | {c['apply_first_s']:.1f} | {c['apply_noop_s']:.1f} | "
                     f"{c['apply_change_s']:.1f} | {rel} | {rss} | {pss} | {c['scrape_s'] * 1000:.0f} | "
                     f"{c['scrape_bytes'] / 1024:.1f} |")
    return lines
