"""Every bench's command line loads and answers --help: the benches run by hand (against the lab), so a broken
import would otherwise show only on the day someone runs them (it happened: bench.failover.run imported a
module that had moved)."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
RUNNERS = [*sorted(f"bench.{p.parent.name}.run" for p in BENCH.glob("*/run.py")), "bench.exporter.accesslog"]


def test_the_benches_are_found() -> None:
    assert {"bench.failover.run", "bench.handover.run", "bench.throughput.run", "bench.reload.run",
            "bench.exporter.run", "bench.scale.run"} <= set(RUNNERS)


@pytest.mark.parametrize("name", RUNNERS)
def test_each_bench_loads_and_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out
