"""BENCHMARKS.md from the benches' JSON results: one section per bench, each rewritten alone.

    python -m bench.report bench/out/failover-*.json            # rewrites the failover section
    python -m bench.report RUN.json --output /tmp/BENCHMARKS.md

BENCHMARKS.md holds one section per bench between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
`write_section(path, NAME, markdown)` replaces that bench's section (or appends it) and keeps every other
section byte for byte, so bench/reload, bench/throughput ... add theirs with the same call. Only the
"Last generated" line changes when a section is regenerated from the same JSON: everything else (run date,
machine, commit) comes from the JSON, which `new_run()` fills in at run time.

A failover run (JSON, written by `save_run`):
    {"bench": "failover", "schema": 1, "date": ISO-8601 UTC, "git_commit": "abc1234[-dirty]",
     "machine": machine_facts(), "settings": {...probe and run settings...},
     "profiles": {"keepalived-defaults": {...}, "proxytier-defaults": {...}}, "reference": "proxytier-defaults",
     "events": [{"event": "haproxy-sigkill", "profile": "...", "description": "...",
                 "reps": [stats.event_stats(...), ...], "summary": stats.summarize(reps),
                 "plot": "bench/failover/plots/haproxy-sigkill-proxytier-defaults.png"}, ...],
     "notes": ["..."]}
Plot paths are relative to the repository root; the report links them relative to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from bench.failover import stats

REPO = Path(__file__).resolve().parents[1]  # bench/report.py -> the checkout
BENCH = "failover"
SCHEMA = 1
TITLE = "# Benchmarks"
INTRO = (
    "Written by the bench scripts, one section per bench; each section is regenerated from its bench's JSON\n"
    "results (`bench/out/`) by its report (`python -m bench.report bench/out/failover-*.json`), and\n"
    "regenerating one section keeps the others. Do not edit by hand."
)
_SECTION = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->\n", re.DOTALL)
_GENERATED = "Last generated: "


# ---- machine facts (stored in the run's JSON, so the report does not depend on where it is regenerated)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts() -> dict:
    """CPU model and count, memory, kernel, OS and Python of this machine."""
    cpuinfo = _read("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    cpus = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE)) or os.cpu_count() or 0
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.MULTILINE)
    return {
        "cpu_model": models[0].strip() if models else platform.processor() or "unknown",
        "cpus": cpus,
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "os": pretty.group(1) if pretty else platform.system(),
        "debian_version": _read("/etc/debian_version").strip() or None,
        "python": platform.python_version(),
    }


def git_commit(repo: Path = REPO) -> str:
    """Short commit of the checkout, with -dirty when tracked files changed; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine_line(machine: dict) -> str:
    os_name = machine.get("os") or "?"
    if machine.get("debian_version"):
        os_name += f" ({machine['debian_version']})"
    mem = f", {machine['memory_gib']} GiB RAM" if machine.get("memory_gib") else ""
    return (f"{machine.get('cpu_model', '?')} x {machine.get('cpus', '?')}{mem}, {os_name}, "
            f"kernel {machine.get('kernel', '?')}, Python {machine.get('python', '?')}")


# ---- sections of BENCHMARKS.md (any bench)


def read_sections(text: str) -> dict[str, str]:
    """{bench name: section markdown} in file order."""
    return {m["name"]: m["body"] for m in _SECTION.finditer(text)}


def write_section(path: str | Path, name: str, body: str, *, now: dt.datetime | None = None) -> str:
    """Put `body` as bench `name`'s section into the markdown file at `path` (created if missing); keep the
    other sections as they are, in their order (a new one goes last). Returns the whole new text."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"bench name {name!r}: letters, digits, _ . - only")
    path = Path(path)
    sections = read_sections(path.read_text()) if path.exists() else {}
    sections[name] = body.rstrip("\n") + "\n"
    now = now or dt.datetime.now(dt.UTC)
    parts = [TITLE, "", INTRO, "", f"{_GENERATED}{now:%Y-%m-%d %H:%M} UTC (section `{name}`)", ""]
    for key, text in sections.items():
        parts += [f"<!-- bench:{key} -->\n{text}<!-- /bench:{key} -->", ""]
    out = "\n".join(parts)
    path.write_text(out)
    return out


# ---- failover runs: building the JSON


def new_run(*, profiles: dict[str, dict], reference: str, settings: dict, notes: list[str] | None = None) -> dict:
    """A failover run's JSON skeleton with date, commit and machine filled in now (call at the start)."""
    if reference not in profiles:
        raise ValueError(f"reference profile {reference!r} is not one of {', '.join(profiles)}")
    return {
        "bench": BENCH, "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(), "machine": machine_facts(), "settings": settings,
        "profiles": profiles, "reference": reference, "events": [], "notes": list(notes or []),
    }


def add_event(run: dict, *, event: str, profile: str, reps: list[dict], plot: str | Path | None = None,
              description: str = "") -> dict:
    """Add one event x profile (reps = stats.event_stats dicts); plot = a PNG path (made relative to the repo)."""
    if profile not in run["profiles"]:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(run['profiles'])}")
    if plot is not None:
        p = Path(plot)
        plot = (p.resolve().relative_to(REPO) if p.is_absolute() else p).as_posix()
    entry = {"event": event, "profile": profile, "description": description, "reps": reps,
             "summary": stats.summarize(reps), "plot": plot}
    run["events"].append(entry)
    return entry


def save_json(run: dict, name: str, out_dir: str | Path = REPO / "bench" / "out") -> Path:
    """Write any bench's run (with its "date") to bench/out/<name>-<date>.json; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = run["date"].replace("-", "").replace(":", "").rstrip("Z")
    path = out / f"{name}-{stamp}.json"
    path.write_text(json.dumps(run, indent=1) + "\n")
    return path


def publish(run: dict, name: str, body: str, output: str | Path) -> Path:
    """A bench's run, done: its JSON saved (save_json) and `body` written as section `name` of `output`
    (BENCHMARKS.md); says where both went, on stderr; returns the JSON's path."""
    path = save_json(run, name)
    write_section(output, name, body)
    print(f"wrote {path} and the {name} section of {output}", file=sys.stderr, flush=True)
    return path


def save_run(run: dict, out_dir: str | Path = REPO / "bench" / "out") -> Path:
    return save_json(run, BENCH, out_dir)


# ---- failover runs: the markdown


def _num(x: float, fmt: str) -> str:
    """Counts as integers (a median of an even number of reps may end in .5), the rest with `fmt`."""
    if fmt == "count":
        return str(int(x)) if float(x).is_integer() else f"{x:.1f}"
    return format(x, fmt)


def _cell(d: dict, key: str, fmt: str) -> str:
    return f"{_num(d[key + '_median'], fmt)} / {_num(d[key + '_max'], fmt)}"


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _link(plot: str, root: Path, md_dir: Path) -> str:
    return Path(os.path.relpath(root / plot, md_dir)).as_posix()


def render_run(run: dict, *, root: Path = REPO, md_dir: Path = REPO) -> str:
    """One failover run as markdown (### level)."""
    if run.get("bench") != BENCH:
        raise ValueError(f"not a failover run (bench = {run.get('bench')!r})")
    ref = run["reference"]
    s = run.get("settings", {})
    lines = [f"### Run {run['date']} (commit `{run['git_commit']}`)", "",
             f"Machine: {machine_line(run.get('machine', {}))}.", ""]
    probe_bits = []
    if "interval" in s:
        probe_bits.append(f"a new TCP connection + GET every {s['interval'] * 1000:g} ms through each VIP")
    if "timeout" in s:
        probe_bits.append(f"timeout {s['timeout']:g} s")
    probe_bits.append(f"good = HTTP 200 within {s.get('good_latency', stats.GOOD_LATENCY):g} s")
    probe_bits.append(f"settle {s.get('settle', stats.SETTLE):g} s")
    lines += [f"Probe: {'; '.join(probe_bits)}. Outage = from the first probe after the event without a good answer "
              "to the first good one after which answers stay good (see bench/failover/README.md).", ""]
    other = {k: v for k, v in _flatten(s).items() if k not in ("interval", "timeout", "good_latency", "settle")}
    if other:
        lines += ["Run settings: " + ", ".join(f"`{k}` = {v}" for k, v in other.items()) + ".", ""]

    profiles = list(run["profiles"])
    flat = {p: _flatten(run["profiles"][p]) for p in profiles}
    keys = list(dict.fromkeys(k for p in profiles for k in flat[p]))
    if keys:
        lines += ["| setting | " + " | ".join(f"{p}{' (reference)' if p == ref else ''}" for p in profiles) + " |",
                  "| --- |" + " --- |" * len(profiles)]
        lines += [f"| `{k}` | " + " | ".join(str(flat[p].get(k, "-")) for p in profiles) + " |" for k in keys]
        lines.append("")

    events = list(dict.fromkeys(e["event"] for e in run["events"]))
    by_key = {(e["event"], e["profile"]): e for e in run["events"]}
    lines += [f"| event | profile | reps | median outage (s) | max outage (s) | failed (median / max) | "
              f"of them never connected (median / max) | "
              f"slow (median / max) | outage ratio vs {ref} | worst VIP (outage median / max) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for event in events:
        ref_entry = by_key.get((event, ref))
        ref_sum = stats.summarize(ref_entry["reps"]) if ref_entry else None
        for p in profiles:
            entry = by_key.get((event, p))
            if entry is None:
                continue
            sm = stats.summarize(entry["reps"])
            if ref_sum is None:
                r_text = "-"
            elif p == ref:
                r_text = "1 (reference)"
            else:
                r = stats.ratio(sm["outage_median"], ref_sum["outage_median"])
                r_text = "n/a (reference 0)" if r is None else f"{r:.2f}"
            worst = sm["worst_target"]
            w = sm["per_target"].get(worst, {})
            w_text = f"{worst} ({w['outage_median']:.2f} / {w['outage_max']:.2f} s)" if worst else "-"
            if sm["unrecovered"]:
                w_text += f"; {sm['unrecovered']} rep(s) not recovered"
            lines.append(f"| {event} | {p} | {sm['reps']} | {sm['outage_median']:.2f} | {sm['outage_max']:.2f} | "
                         f"{_cell(sm, 'failed', 'count')} | "
                         f"{_cell(sm, 'failed_connect', 'count') if 'failed_connect_median' in sm else '-'} | "
                         f"{_cell(sm, 'slow', 'count')} | {r_text} | {w_text} |")
    lines.append("")

    described = {e["event"]: e.get("description") for e in run["events"] if e.get("description")}
    if described:
        lines += ["Events:", ""] + [f"- **{ev}**: {text}" for ev, text in described.items()] + [""]
    for note in run.get("notes", []):
        lines.append(f"- {note}")
    if run.get("notes"):
        lines.append("")

    plots = [e for e in run["events"] if e.get("plot")]
    if plots:
        lines += ["Timelines (one repetition each: probes per VIP, latency, VRRP state per node, VIP holder):", ""]
        for e in plots:
            lines += [f"#### {e['event']} - {e['profile']}", "",
                      f"![{e['event']} with {e['profile']}]({_link(e['plot'], root, md_dir)})", ""]
    return "\n".join(lines)


def render_section(runs: list[dict], *, root: Path = REPO, md_dir: Path = REPO) -> str:
    """The whole failover section: newest run first."""
    runs = sorted(runs, key=lambda r: r["date"], reverse=True)
    head = ["## Failover (`bench/failover`)", "",
            "Client-observed outage per chaos event in the lab, keepalived's defaults vs proxytier's defaults "
            "in the same run. Figures are per repetition: median and max over repetitions.", ""]
    return "\n".join(head + [render_run(r, root=root, md_dir=md_dir) for r in runs])


def load_run(path: str | Path) -> dict:
    """A failover run's JSON, checked enough to report on (bench, schema, the keys the report reads)."""
    run = json.loads(Path(path).read_text())
    bench = run.get("bench") if isinstance(run, dict) else None
    if bench != BENCH:
        raise ValueError(f"{path}: not a failover run (bench = {bench!r})")
    if run.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {run.get('schema')!r}; this report reads schema {SCHEMA}")
    missing = [k for k in ("date", "git_commit", "profiles", "reference", "events") if k not in run]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return run


def write_report(json_files: list[str | Path], output: str | Path = REPO / "BENCHMARKS.md", *,
                 root: Path = REPO, now: dt.datetime | None = None, section: str = BENCH) -> str:
    """Render the failover runs into `section` of `output` (the dual-stack run has a section of its own)."""
    runs = [load_run(f) for f in json_files]
    output = Path(output)
    for run in runs:
        for e in run["events"]:
            if e.get("plot") and not (root / e["plot"]).is_file():
                print(f"warning: {e['plot']} (linked from the report) does not exist", file=sys.stderr)
    body = render_section(runs, root=root, md_dir=output.resolve().parent)
    return write_section(output, section, body, now=now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the failover section of BENCHMARKS.md from run JSON files.")
    parser.add_argument("json", nargs="+", help="bench/out/failover-*.json")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"), help="default: BENCHMARKS.md at the top")
    parser.add_argument("--root", default=str(REPO), help="what the runs' plot paths are relative to")
    args = parser.parse_args(argv)
    missing = [f for f in args.json if not Path(f).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)} (run the bench first; results go to bench/out/)")
    try:
        write_report(args.json, args.output, root=Path(args.root))
    except (ValueError, KeyError) as e:  # JSONDecodeError is a ValueError
        print(f"error: cannot report: {e}", file=sys.stderr)
        return 1
    print(f"wrote the {BENCH} section of {args.output} from {len(args.json)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
