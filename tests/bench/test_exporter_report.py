"""The exporter section of BENCHMARKS.md from bench/exporter runs: medians over runs, other sections kept."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report
from bench.exporter import report as exporter_report


def run(commit: str, cpu: float, p50: float, size: int) -> dict:
    figures = {"p50_ms": p50, "p99_ms": p50 * 2, "cpu_ms_per_scrape": cpu, "rss_mib": 30.0,
               "exposition_bytes": size}
    builtin = {"p50_ms": 6.0, "p99_ms": 9.0, "cpu_ms_per_scrape": 4.0, "rss_mib": None, "exposition_bytes": 800}
    return {"bench": "exporter", "date": "2026-12-01T02:00:00Z", "git_commit": commit,
            "machine": report.machine_facts(), "rounds": 7, "scrapes_per_round": 100, "haproxy_servers": 150,
            "vips": 3, "summary": {"proxytier": figures, "haproxy_builtin": builtin}}


def test_section_has_the_median_of_each_side_and_keeps_other_sections(tmp_path: Path) -> None:
    paths = {}
    for name, data in {"b1": run("aaa", 30.0, 35.0, 400), "b2": run("aaa", 20.0, 40.0, 400),
                       "b3": run("aaa", 26.0, 38.0, 400), "a1": run("bbb", 52.0, 70.0, 900),
                       "a2": run("bbb", 60.0, 80.0, 900)}.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    output = tmp_path / "BENCHMARKS.md"
    report.write_section(output, "reload", "## Reloads\n\nkept as is\n")
    assert exporter_report.main(["--before", str(paths["b1"]), str(paths["b2"]), str(paths["b3"]),
                                 "--after", str(paths["a1"]), str(paths["a2"]), "--output", str(output)]) == 0
    text = output.read_text()
    assert "kept as is" in text
    section = report.read_sections(text)["exporter"]
    assert "| proxytier before | `aaa` | 38.00 | 76.00 | 26.00 | 30.0 | 400 |" in section
    assert "| proxytier after | `bbb` | 75.00 | 150.00 | 56.00 | 30.0 | 900 |" in section
    assert "| haproxy_builtin (reference) | `aaa`, `bbb` | 6.00 | 9.00 | 4.00 | - | 800 |" in section
    assert "CPU ms/scrape x2.15" in section


def test_a_file_that_is_not_an_exporter_run_is_refused(tmp_path: Path, capsys) -> None:
    other = tmp_path / "x.json"
    other.write_text(json.dumps({"bench": "throughput"}))
    assert exporter_report.main(["--before", str(other), "--after", str(other),
                                 "--output", str(tmp_path / "B.md")]) == 1
    assert "not a bench/exporter run" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()
