"""The exporter section of BENCHMARKS.md: scrape cost of the exporter at two commits, from bench/exporter runs.

    python -m bench.exporter.report --before bench/out/exporter-A.json [...] --after bench/out/exporter-B.json [...]

Each JSON is one `bench/exporter/run.py` run (medians over its rounds; `--checkout DIR` measures another
checkout's exporter and records its commit). Several runs per side are combined by their median, so an
interleaved series (before, after, before, after) on a noisy machine gives one figure per side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench import report

FIGURES = (("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"), ("cpu_ms_per_scrape", "CPU ms/scrape", ".2f"),
           ("rss_mib", "RSS MiB", ".1f"), ("exposition_bytes", "bytes", ".0f"))


def load(path: str | Path) -> dict:
    """One run's JSON, checked for what the section reads (bench, git_commit, summary with proxytier)."""
    run = json.loads(Path(path).read_text())
    if not isinstance(run, dict) or run.get("bench") != "exporter" or "proxytier" not in run.get("summary", {}):
        raise ValueError(f"{path}: not a bench/exporter run with a proxytier summary")
    return run


def combine(runs: list[dict], exporter: str) -> dict[str, float | None]:
    """Median over runs of each figure of one exporter (None where a run has none, e.g. RSS in haproxy)."""
    out: dict[str, float | None] = {}
    for key, _, _ in FIGURES:
        values = [run["summary"][exporter][key] for run in runs
                  if exporter in run["summary"] and run["summary"][exporter][key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def _commits(runs: list[dict]) -> str:
    return ", ".join(dict.fromkeys(f"`{run['git_commit']}`" for run in runs))


def render(before: list[dict], after: list[dict]) -> str:
    """The section's markdown: proxytier's scrape before and after, HAProxy's built-in exporter beside."""
    first = after[0]
    lines = [
        "## Exporter scrape cost (`bench/exporter`)", "",
        f"Runs {', '.join(sorted(run['date'] for run in before + after))}, {report.machine_line(first['machine'])}. "
        f"One node in an anonymous network namespace: {first['haproxy_servers']} HAProxy servers, "
        f"{first['vips']} VIPs, nginx with its access log; each run {first['rounds']} interleaved rounds x "
        f"{first['scrapes_per_round']} sequential scrapes per exporter, medians over rounds, then the median "
        f"over runs ({len(before)} before, {len(after)} after, alternating). CPU per scrape includes what the "
        "scrape costs haproxy and nginx. See bench/exporter/README.md.", "",
        "| exporter | commit | " + " | ".join(title for _, title, _ in FIGURES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in FIGURES) + " |",
    ]
    rows = [("proxytier before", before, "proxytier"), ("proxytier after", after, "proxytier")]
    if all("haproxy_builtin" in run["summary"] for run in before + after):
        rows.append(("haproxy_builtin (reference)", before + after, "haproxy_builtin"))
    for title, runs, exporter in rows:
        figures = combine(runs, exporter)
        cells = [format(figures[key], fmt) if figures[key] is not None else "-" for key, _, fmt in FIGURES]
        lines.append(f"| {title} | {_commits(runs)} | " + " | ".join(cells) + " |")
    old, new = combine(before, "proxytier"), combine(after, "proxytier")
    ratios = [f"{title} x{new[key] / old[key]:.2f}" for key, title, _ in FIGURES
              if old[key] and new[key] is not None]
    lines += ["", "After / before: " + ", ".join(ratios) + "."]
    if not all("go_pair" in run["summary"] for run in before + after):
        lines += ["", "Debian's Go exporters (prometheus-haproxy-exporter, prometheus-nginx-exporter) were not "
                  "installed for these runs: no Go pair; bench/exporter/README.md has an earlier comparison."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", nargs="+", required=True, help="bench/out/exporter-*.json of the old commit")
    parser.add_argument("--after", nargs="+", required=True, help="bench/out/exporter-*.json of the new commit")
    parser.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    try:
        before, after = [load(p) for p in args.before], [load(p) for p in args.after]
    except (OSError, ValueError) as error:
        print(f"error: cannot report: {error}", file=sys.stderr)
        return 1
    text = render(before, after)
    print(text)
    report.write_section(Path(args.output), "exporter", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
