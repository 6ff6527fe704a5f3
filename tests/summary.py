"""The last lines of `make test`: one line per pytest session, and every failed or errored test by name.

`make test` runs several pytest sessions (everything but the lab, the full lab suite, the reduced lab suite
on each other platform of the support matrix). Each writes a JUnit XML report and its exit status into one
directory; this prints them last, so that whoever reads only the tail of a long run (a CI log) sees which
session failed and why without scrolling back through an hour of output.

Usage: python tests/summary.py DIR. DIR holds `<session>.xml` (pytest --junitxml) and `status` (lines
"<session> <exit status>"). Exit status 0 always: the Makefile owns the run's status.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

#: characters of a failure's message shown per failed test
MESSAGE_CHARS = 240


def session_lines(report: Path, status: int | None) -> list[str]:
    """Lines for one session: its counts and exit status, then `FAILED <test id>: <message>` per failure.

    `report` is a pytest JUnit XML file (it may be missing if pytest died before writing it); `status` is
    pytest's exit status, None if not recorded."""
    name = report.stem
    shown = "?" if status is None else str(status)
    if not report.is_file():
        return [f"{name}: exit {shown}, no report written"]
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    seconds = sum(float(s.get("time", 0)) for s in suites)
    lines = [
        f"{name}: exit {shown}; {passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped in {seconds:.0f} s"
    ]
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            for fault in case.findall(kind):
                message = " ".join((fault.get("message") or fault.text or "").split())[:MESSAGE_CHARS]
                test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
                lines.append(f"  {kind.upper()} {test_id}: {message}")
    return lines


def main(argv: list[str]) -> int:
    directory = Path(argv[1])
    statuses: dict[str, int] = {}
    status_file = directory / "status"
    if status_file.is_file():
        for line in status_file.read_text().splitlines():
            session, _, code = line.rpartition(" ")
            statuses[session] = int(code)
    sessions = sorted(set(statuses) | {p.stem for p in directory.glob("*.xml")})
    print("== summary of the test sessions")
    for session in sessions:
        for line in session_lines(directory / f"{session}.xml", statuses.get(session)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
