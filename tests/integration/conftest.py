"""The real lab for the integration tests: brought up once per session, torn down at the end.

Set PROXYTIER_LAB_KEEP=1 to leave the lab running after the tests (then `make lab-down`).
Measurements go to the results file (lab.config.RESULTS) and the terminal summary.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import cluster, config, tier

MEASURED: dict[str, Any] = {}


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the lab integration tests need root (namespaces, bridge, systemd-nspawn)")
    missing = [t for t in ("systemd-nspawn", "debootstrap", "ip", "nsenter") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing host tools {missing}: run `sh lab/host-deps.sh` (make test does)")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # show the lab's progress lines live
            MEASURED.update(cluster.up())
        yield
    finally:
        tier.clear_pillar_override()
        if os.environ.get("PROXYTIER_LAB_KEEP") != "1":
            with capture.global_and_fixture_disabled():
                cluster.down()


@pytest.fixture
def measure() -> Any:
    """measure(name, seconds): record a measurement for the report."""

    def _record(name: str, value: float) -> None:
        MEASURED[name] = round(value, 2)
        print(f"[measured] {name} = {value:.2f} s")

    return _record


@pytest.fixture
def clean_pillar(lab: None) -> Iterator[None]:
    """Tests that edit the pillar leave it as the checkout has it."""
    tier.clear_pillar_override()
    yield
    tier.clear_pillar_override()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEASURED:
        return
    cluster.record(MEASURED)
    terminalreporter.section("proxytier lab measurements (seconds)")
    for key in sorted(MEASURED):
        terminalreporter.write_line(f"{key:<40} {MEASURED[key]}")
    terminalreporter.write_line(f"(also in {config.RESULTS})")
