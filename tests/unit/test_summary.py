"""The summary that ends `make test` names the session and the test that failed, from pytest's own report."""

import subprocess
import sys

from tests import summary


def test_the_summary_names_each_session_and_each_failed_test(tmp_path):
    case = tmp_path / "test_case.py"
    case.write_text("def test_ok():\n    pass\n\ndef test_bad():\n    assert 1 == 2, 'one is not two'\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={reports}/1-cases.xml",
         str(case)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )
    (reports / "status").write_text(f"1-cases {run.returncode}\n2-died 3\n")
    lines = summary.session_lines(reports / "1-cases.xml", run.returncode)
    assert lines[0].startswith("1-cases: exit 1; 1 passed, 1 failed, 0 errors, 0 skipped")
    assert len(lines) == 2 and "test_bad" in lines[1] and "one is not two" in lines[1]
    assert summary.session_lines(reports / "2-died.xml", 3) == ["2-died: exit 3, no report written"]


def test_main_prints_the_sessions_in_run_order(tmp_path, capsys):
    (tmp_path / "status").write_text("2-lab 0\n1-fast 0\n")
    summary.main(["summary", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out == ["== summary of the test sessions", "1-fast: exit 0, no report written",
                   "2-lab: exit 0, no report written"]
