"""BENCHMARKS.md from failover JSON: figures, links, regeneration, and sections of other benches kept."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

REPO = Path(__file__).resolve().parents[2]
A, B = "198.18.0.101:80", "198.18.0.102:80"
PLOT = "bench/failover/plots/haproxy-sigkill-keepalived-defaults.png"


def rep(outage: float, failed: int, slow: int = 0, target: str = A) -> dict:
    other = B if target == A else A
    return {"outage": outage, "failed": failed, "slow": slow, "recovered": True, "worst_target": target,
            "per_target": {target: {"outage": outage, "failed": failed, "slow": slow},
                           other: {"outage": 0.0, "failed": 0, "slow": 0}}}


@pytest.fixture
def run_json(tmp_path: Path) -> Path:
    run = report.new_run(
        profiles={"keepalived-defaults": {"keepalived": {"advert_int": 1, "garp_master_delay": 5}},
                  "proxytier-defaults": {"keepalived": {"advert_int": 1, "garp_master_delay": 1}, "fall": 2}},
        reference="proxytier-defaults",
        settings={"interval": 0.01, "timeout": 2.0, "good_latency": 0.3, "settle": 0.2, "reps": 3},
        notes=["one note"],
    )
    report.add_event(run, event="haproxy-sigkill", profile="keepalived-defaults",
                     reps=[rep(3.0, 20, 4), rep(4.5, 30, 2), rep(3.2, 25, 3)], plot=PLOT,
                     description="SIGKILL to haproxy on VIP-1's master")
    report.add_event(run, event="haproxy-sigkill", profile="proxytier-defaults",
                     reps=[rep(1.0, 5), rep(0.8, 7), rep(1.6, 6)])
    report.add_event(run, event="nginx-sigkill", profile="keepalived-defaults", reps=[rep(0.2, 3, target=B)] * 3)
    report.add_event(run, event="nginx-sigkill", profile="proxytier-defaults", reps=[rep(0.0, 0)] * 3)
    (tmp_path / PLOT).parent.mkdir(parents=True)
    (tmp_path / PLOT).write_bytes(b"\x89PNG\r\n\x1a\n")
    return report.save_run(run, tmp_path / "out")


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 10 and cells[0] not in ("event", "---"):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def without_date(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("Last generated: ")]


def test_table_has_medians_maxima_counts_and_ratio(run_json, tmp_path):
    text = report.write_report([run_json], tmp_path / "BENCHMARKS.md", root=tmp_path)
    rows = table_rows(text)
    # runs from before failed_connect was counted show "-" in its column
    assert rows[("haproxy-sigkill", "keepalived-defaults")][:7] == ["3", "3.20", "4.50", "25 / 30", "-", "3 / 4",
                                                                     "3.20"]
    assert rows[("haproxy-sigkill", "proxytier-defaults")][:7] == ["3", "1.00", "1.60", "6 / 7", "-", "0 / 0",
                                                                    "1 (reference)"]
    assert rows[("haproxy-sigkill", "keepalived-defaults")][7].startswith(A)
    assert rows[("nginx-sigkill", "keepalived-defaults")][6] == "n/a (reference 0)"
    assert rows[("nginx-sigkill", "keepalived-defaults")][7].startswith(B)
    assert rows[("nginx-sigkill", "proxytier-defaults")][7] == "-"
    assert "| `keepalived.garp_master_delay` | 5 | 1 |" in text
    assert "| `fall` | - | 2 |" in text
    assert "SIGKILL to haproxy on VIP-1's master" in text and "- one note" in text


def test_header_has_machine_date_and_commit_from_the_json(run_json, tmp_path):
    run = json.loads(run_json.read_text())
    run["machine"] = {"cpu_model": "Test CPU 9000", "cpus": 64, "memory_gib": 512.0, "kernel": "9.9.9",
                      "os": "Debian GNU/Linux 12 (bookworm)", "debian_version": "12.99", "python": "3.11.0"}
    run["git_commit"] = "0123456789"
    run_json.write_text(json.dumps(run))
    text = report.write_report([run_json], tmp_path / "BENCHMARKS.md", root=tmp_path)
    assert "Test CPU 9000 x 64, 512.0 GiB RAM, Debian GNU/Linux 12 (bookworm) (12.99), kernel 9.9.9" in text
    assert f"### Run {run['date']} (commit `0123456789`)" in text


def test_machine_facts_of_this_machine(tmp_path):
    facts = report.machine_facts()
    assert facts["cpus"] >= 1 and facts["cpu_model"] not in ("", "unknown")
    assert facts["kernel"] == platform.release()
    assert facts["memory_gib"] and facts["memory_gib"] > 0.1
    assert report.git_commit(REPO) != "unknown"
    assert report.git_commit(tmp_path) == "unknown"  # not a checkout


def test_image_links_are_relative_to_the_report(run_json, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    text = report.write_report([run_json], docs / "BENCHMARKS.md", root=tmp_path)
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links == ["../" + PLOT]
    assert (docs / links[0]).resolve() == (tmp_path / PLOT).resolve()


def test_regenerating_from_the_same_json_changes_only_the_date_line(run_json, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    first = report.write_report([run_json], out, root=tmp_path, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    second = report.write_report([run_json], out, root=tmp_path, now=dt.datetime(2031, 6, 1, tzinfo=dt.UTC))
    assert first != second
    assert without_date(first) == without_date(second)
    assert sum(a != b for a, b in zip(first.splitlines(), second.splitlines(), strict=True)) == 1


def test_cli_writes_the_same_report(run_json, tmp_path):
    out = tmp_path / "cli.md"
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(run_json), "--output", str(out),
                           "--root", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the plot exists: no warning
    direct = report.write_report([run_json], tmp_path / "direct.md", root=tmp_path)
    assert without_date(out.read_text()) == without_date(direct)


def test_cli_refuses_missing_and_foreign_json(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path / "nope.json"),
                              "--output", str(tmp_path / "x.md")], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode != 0 and "no such file" in missing.stderr
    foreign = tmp_path / "exporter.json"
    foreign.write_text(json.dumps({"bench": "exporter", "events": []}))
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(foreign), "--output",
                           str(tmp_path / "x.md")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not a failover run" in proc.stderr
    assert not (tmp_path / "x.md").exists()


def test_sections_of_other_benches_are_kept(run_json, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    report.write_section(out, "reload", "## Reload\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    report.write_report([run_json], out, root=tmp_path)
    text = out.read_text()
    sections = report.read_sections(text)
    assert list(sections) == ["reload", "failover"]
    assert sections["reload"] == "## Reload\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    failover = sections["failover"]
    # another bench rewrites its own section: failover's stays byte for byte, in its place
    report.write_section(out, "reload", "## Reload\n\nnew figures\n")
    again = report.read_sections(out.read_text())
    assert list(again) == ["reload", "failover"]
    assert again["failover"] == failover and again["reload"] == "## Reload\n\nnew figures\n"
    assert out.read_text().count("# Benchmarks\n") == 1


def test_newest_run_comes_first(run_json, tmp_path):
    older = json.loads(run_json.read_text())
    older["date"] = "2001-01-01T00:00:00Z"
    older_path = tmp_path / "older.json"
    older_path.write_text(json.dumps(older))
    text = report.write_report([older_path, run_json], tmp_path / "B.md", root=tmp_path)
    runs = [line for line in text.splitlines() if line.startswith("### Run ")]
    assert len(runs) == 2 and runs[1].startswith("### Run 2001-01-01")


def test_add_event_refuses_unknown_profile_and_new_run_unknown_reference():
    with pytest.raises(ValueError):
        report.new_run(profiles={"a": {}}, reference="b", settings={})
    run = report.new_run(profiles={"a": {}}, reference="a", settings={})
    with pytest.raises(ValueError):
        report.add_event(run, event="x", profile="b", reps=[])
