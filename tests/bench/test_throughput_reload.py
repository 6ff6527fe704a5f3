"""bench/throughput's client and figures, and bench/reload's report, without the lab: against a local
server with the lab backend's handler (loopback only)."""

from __future__ import annotations

import pytest

from bench.reload import run as reload_run
from bench.throughput import run as tput


@pytest.fixture
def local_paths(local_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, int]]:
    servers = {name: local_server(f"127.0.0.{i}") for i, name in ((11, "direct"), (12, "nginx"), (13, "tier"))}
    paths = {name: (s.address, s.port) for name, s in servers.items()}
    monkeypatch.setattr(tput, "PATHS", paths)
    return paths


def test_client_reads_whole_answers_on_one_keepalive_connection(local_paths) -> None:
    client = tput.Client(*local_paths["direct"])
    try:
        local = client.sock.getsockname()
        for _ in range(200):
            client.get()
        assert client.buf == b""  # nothing left over: every body was read exactly
        assert client.sock.getsockname() == local  # the same connection throughout
    finally:
        client.close()


def test_client_refuses_addresses_outside_the_lab() -> None:
    with pytest.raises(ValueError, match="outside"):
        tput.Client("192.0.2.1", 80)


def test_latency_and_throughput_measure_something_real(local_paths) -> None:
    lat = tput.latency("direct", 300)
    assert len(lat) == 300 and all(0 < x < 1 for x in lat)
    assert tput.pct(lat, 0.5) <= tput.pct(lat, 0.99)
    rps = tput.throughput("nginx", concurrency=2, seconds=1.0)
    assert rps > 50  # a local Python server answers hundreds per second


def test_pct_picks_the_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert tput.pct(values, 0.5) == 51.0
    assert tput.pct(values, 0.99) == 100.0


def test_throughput_report_gives_differences_and_ratios(local_paths) -> None:
    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"rounds": 1, "requests": 10, "seconds": 1, "concurrency": 2},
        "results": {"direct": {"p50": 100e-6, "p99": 300e-6, "rps": 1000.0},
                    "nginx": {"p50": 150e-6, "p99": 400e-6, "rps": 800.0},
                    "tier": {"p50": 230e-6, "p99": 600e-6, "rps": 500.0}},
    }
    text = tput.render(run)
    assert "| tier | 230 | 600 | +130 | 500 | 0.50 |" in text
    assert "| direct | 100 | 300 | +0 | 1000 | 1.00 |" in text


def test_reload_change_touches_all_three_configs_and_report_counts() -> None:
    pt = reload_run.change(7)["proxytier"]
    assert pt["nginx"]["extra"]["http"] == pt["haproxy"]["extra"]["defaults"] == ["# bench reload 7"]
    assert pt["vrrp"]["extra"]["global_defs"] == ["# bench reload 7"]
    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"concurrency": 3, "timeout": 2.0},
        "results": {"changes": 100, "full_applies": 100, "requests": 50000, "failed": 0, "errors": {},
                    "slowest": 0.2, "apply_median": 8.0},
    }
    text = reload_run.render(run)
    assert "| 100 | 100 | 50000 | 0 | 0.200 | 8.0 |" in text and "No errors." in text
