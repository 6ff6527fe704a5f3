"""Paths shared by the dashboards tests (a module of its own: every test directory has a `conftest`, so
`from conftest import ...` would pick whichever was imported first). Puts dashboards/ on sys.path for
`proxytier_dashboards`."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
RULES_FILE = DASHBOARDS / "rules" / "proxytier.rules.yml"
PROMTOOL_TESTS = sorted((DASHBOARDS / "rules" / "tests").glob("*.test.yml"))
GOLDEN = REPO / "tests" / "exporter" / "golden"

if str(DASHBOARDS) not in sys.path:
    sys.path.insert(0, str(DASHBOARDS))
