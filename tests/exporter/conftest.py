"""Shared fixtures of the exporter tests.

Golden files live in tests/exporter/golden/. After an intended change of output, regenerate them with
`PROXYTIER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/exporter` and review the diff before committing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

# Test the exporter of this checkout, whatever copy an editable install in a shared venv points at;
# PYTHONPATH carries it to the exporter processes the end-to-end tests start.
_EXPORTER = str(Path(__file__).resolve().parents[2] / "exporter")
sys.path.insert(0, _EXPORTER)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_EXPORTER, os.environ.get("PYTHONPATH")]))

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"


class _Families:
    def __init__(self, produce: Callable[[], Iterable[Metric]]):
        self.produce = produce

    def collect(self) -> Iterable[Metric]:
        return self.produce()


def _render(produce: Callable[[], Iterable[Metric]]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(produce))
    return generate_latest(registry).decode()


@pytest.fixture
def render() -> Callable[[Callable[[], Iterable[Metric]]], str]:
    """The text exposition Prometheus would scrape for the families a callable produces."""
    return _render


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("PROXYTIER_UPDATE_GOLDEN") == "1":
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"{path} missing: run with PROXYTIER_UPDATE_GOLDEN=1 and review it"
        assert text == path.read_text(), f"exposition differs from {path}"

    return check
