"""The formula directory is self-contained: no symlink under salt/ (gitfs does not follow directory symlinks
and a copied formula directory loses whatever a link points at), and the files it carries for others (the
exporter package, the rules template, the runbook page) are exactly what their sources give."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SALT = REPO / "salt"
FORMULA = SALT / "proxytier"
EXPORTER_SOURCE = REPO / "exporter" / "proxytier_exporter"
EXPORTER_COPY = FORMULA / "files" / "proxytier_exporter"
REGENERATE = "run `make formula-files` (with another venv: make formula-files PY=/path/to/python)"

if str(REPO / "dashboards") not in sys.path:
    sys.path.insert(0, str(REPO / "dashboards"))


def symlinks(root: Path) -> list[str]:
    """Paths under `root` (relative to it) that are symbolic links, files or directories."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink())


def _package_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def drift(source: Path, copy: Path) -> list[str]:
    """What differs between a source package and its copy, byte for byte (`__pycache__` and `*.pyc` left out):
    one line per missing, extra or changed file."""
    want, have = _package_files(source), _package_files(copy) if copy.is_dir() and not copy.is_symlink() else {}
    return ([f"missing from the copy: {name}" for name in sorted(want.keys() - have.keys())]
            + [f"not in the source: {name}" for name in sorted(have.keys() - want.keys())]
            + [f"differs: {name}" for name in sorted(want.keys() & have.keys()) if want[name] != have[name]])


def test_no_symlink_in_the_salt_file_root() -> None:
    assert symlinks(SALT) == [], "gitfs does not follow them: replace each link by the file; " + REGENERATE


def test_symlink_check_finds_file_and_directory_links(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "dir-link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "file-link").symlink_to(tmp_path / "real" / "f")
    assert symlinks(tmp_path) == ["dir-link", "real/file-link"]


def test_exporter_copy_is_the_exporter_package() -> None:
    assert (EXPORTER_SOURCE / "__main__.py").is_file()
    problems = drift(EXPORTER_SOURCE, EXPORTER_COPY)
    assert problems == [], f"{EXPORTER_COPY.relative_to(REPO)} drifted from exporter/proxytier_exporter: " \
                           f"{problems}; {REGENERATE}"


def test_drift_reports_each_difference(tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    for root in (source, copy):
        (root / "__pycache__").mkdir(parents=True)
        (root / "same.py").write_text("same\n")
        (root / "changed.py").write_text("one\n")
    (copy / "changed.py").write_text("one \n")
    (source / "new.py").write_text("\n")
    (copy / "old.py").write_text("\n")
    (copy / "__pycache__" / "same.cpython-311.pyc").write_bytes(b"\0")
    assert drift(source, copy) == ["missing from the copy: new.py", "not in the source: old.py",
                                   "differs: changed.py"]
    assert drift(source, tmp_path / "absent") == [f"missing from the copy: {n}" for n in
                                                   ("changed.py", "new.py", "same.py")]


def test_generated_formula_files_are_current() -> None:
    from proxytier_dashboards import generated

    formula_outputs = {path: text for path, text in generated.outputs().items() if FORMULA in path.parents}
    assert {p.relative_to(FORMULA).as_posix() for p in formula_outputs} == {
        "templates/monitoring/proxytier.rules.yml.jinja", "files/monitoring/proxytier-runbook.html"}
    stale = [str(p.relative_to(REPO)) for p, text in formula_outputs.items()
             if not p.is_file() or p.read_bytes() != text.encode("utf-8")]
    assert stale == [], f"{stale} differ from what the generator writes: {REGENERATE}"


@pytest.mark.parametrize("sls", sorted(FORMULA.rglob("*.sls")), ids=lambda p: str(p.relative_to(FORMULA)))
def test_every_salt_source_exists_in_the_formula(sls: Path) -> None:
    """Every `salt://{{ tpldir }}/...` (the state file's directory) or `salt://{{ tplroot }}/...` (the formula's)
    a state names is a real file or directory of the formula (paths built from a loop variable are left out)."""
    sources = re.findall(r"salt://\{\{ (tpldir|tplroot) \}\}/([^\s{]+)(?:\s|$)", sls.read_text(encoding="utf-8"))
    if sls.relative_to(FORMULA).as_posix() in ("exporter/init.sls", "monitoring.sls"):
        assert sources, f"{sls.name} names its sources as salt://{{{{ tpldir }}}}/... or {{{{ tplroot }}}}"
    for base, source in sources:
        path = (sls.parent if base == "tpldir" else FORMULA) / source
        assert path.exists() and not path.is_symlink(), f"{sls.name}: salt://{source} is not in the formula"
