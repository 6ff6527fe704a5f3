"""PromQL syntax check with Prometheus' own parser: `promtool check rules` on a rule file holding one
recording rule per expression (dashboard variables substituted first)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml


class PromtoolMissing(RuntimeError):
    pass


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise PromtoolMissing("promtool not found: install Debian's prometheus package (sh lab/host-deps.sh)")
    return path


def _check(expressions: Mapping[str, str], directory: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"proxytier_check:{i}", "expr": expr} for i, expr in enumerate(expressions.values())]
    path = directory / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}), encoding="utf-8")
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def parse_errors(expressions: Mapping[str, str]) -> dict[str, str]:
    """{name: promtool's message} for every expression Prometheus cannot parse (empty: all parse)."""
    with tempfile.TemporaryDirectory(prefix="proxytier-promql-") as tmp:
        if _check(expressions, Path(tmp)).returncode == 0:
            return {}
        errors = {}
        for name, expr in expressions.items():  # pinpoint: one file per expression
            result = _check({name: expr}, Path(tmp))
            if result.returncode != 0:
                errors[name] = (result.stderr or result.stdout).strip()
        return errors
