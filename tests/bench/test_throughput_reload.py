"""bench/throughput's client and figures, and bench/reload's report, without the lab: against a local
server with the lab backend's handler (loopback only)."""

from __future__ import annotations

import pytest

from bench.reload import run as reload_run
from bench.throughput import run as tput
from lab.load import Sample


@pytest.fixture
def local_paths(local_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[str, int]]]:
    servers = {name: local_server(f"127.0.0.{i}") for i, name in ((11, "direct"), (12, "nginx"), (13, "tier"))}
    second = local_server("127.0.0.14")
    paths = {name: [(s.address, s.port)] for name, s in servers.items()}
    paths["direct"].append((second.address, second.port))  # two targets, taken in turn
    monkeypatch.setattr(tput, "PATHS", paths)
    return paths


def test_client_reads_whole_answers_on_one_keepalive_connection(local_paths) -> None:
    client = tput.Client(*local_paths["direct"][0])
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
    new = tput.latency_new_connection("direct", 100)
    assert len(new) == 100 and all(0 < x < 1 for x in new)
    rps = tput.throughput("nginx", concurrency=2, seconds=1.0)
    assert rps > 50  # a local Python server answers hundreds per second


def test_pct_picks_the_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert tput.pct(values, 0.5) == 51.0
    assert tput.pct(values, 0.99) == 100.0


def test_throughput_report_gives_differences_and_ratios(local_paths) -> None:
    def r(p50: float, new: float | None, rps: float, cpu0: float) -> dict:
        return {"p50": p50 * 1e-6, "p99": 3 * p50 * 1e-6, "new_p50": None if new is None else new * 1e-6,
                "rps": rps, "cpu0_p50": cpu0 * 1e-6}

    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"rounds": 1, "requests": 10, "requests_new": 5, "seconds": 1, "concurrency": 2},
        "paths": {"direct": [("198.18.0.21", 8080)], "tier": [("198.18.0.101", 80)]},
        "results": {"direct": r(100, 300, 1000.0, 80), "relay x2": r(160, None, 700.0, 110),
                    "tier": r(230, 450, 500.0, 150)},
    }
    text = tput.render(run)
    assert "| direct | 100 | +0 | 300 | 300 | +0 | 1000 | 1.00 | 80 | +0 |" in text
    assert "| relay x2 | 160 | +60 | 480 | - | - | 700 | 0.70 | 110 | +30 |" in text
    assert "| tier | 230 | +130 | 690 | 450 | +150 | 500 | 0.50 | 150 | +70 |" in text
    assert "keep-alive p50: +70 us on both CPUs, +40 us on one CPU" in text


def test_relays_chain_two_nodes_to_each_backend_on_lab_addresses() -> None:
    from lab import config

    by_port = {port: (node.name, address, upstream) for node, address, port, upstream in tput.RELAYS}
    for i, be in enumerate(config.BACKENDS, start=1):
        assert by_port[tput.relay_port(0, i)][2] == f"{be.address}:{be.port}"  # one hop
        first = by_port[tput.relay_port(1, i)]  # two hops: proxy1 -> proxy2 -> the backend
        second = by_port[tput.relay_port(2, i)]
        assert first[0] != second[0] and first[2] == f"{second[1]}:{tput.relay_port(2, i)}"
        assert second[2] == f"{be.address}:{be.port}"
    for _name, address, _upstream in by_port.values():
        config.check_lab_address(address)


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


def test_reload_change_with_on_error_sets_only_that_key_and_failures_name_their_change() -> None:
    plain, marked = reload_run.change(3)["proxytier"], reload_run.change(3, "mark-down")["proxytier"]
    assert marked["haproxy"]["check"] == {"on_error": "mark-down"}
    marked["haproxy"].pop("check")
    assert marked == plain
    samples = [Sample(1.0, 1.1, True, "a"), Sample(5.25, 7.25, False, "b", "TimeoutError"),
               Sample(12.0, 12.5, False, "c", "ConnectionResetError"), Sample(20.0, 20.1, False, "a", "X")]
    got = reload_run.failures(samples, [(5.0, 9.0), (10.0, 14.0)])
    assert got == [
        {"change": 0, "into_apply": 0.25, "target": "b", "error": "TimeoutError", "seconds": 2.0},
        {"change": 1, "into_apply": 2.0, "target": "c", "error": "ConnectionResetError", "seconds": 0.5},
        {"change": None, "into_apply": None, "target": "a", "error": "X", "seconds": 0.1},
    ]
    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"concurrency": 3, "timeout": 2.0, "on_error": "mark-down"},
        "results": {"changes": 2, "full_applies": 2, "requests": 900, "failed": 3, "errors": {"TimeoutError": 3},
                    "failures": got, "slowest": 2.0, "apply_median": 8.0},
    }
    text = reload_run.render(run)
    assert "`proxytier:haproxy:check:on_error` mark-down" in text
    assert "Failed requests by time into their change's apply (s): 0.2, 2.0, between applies." in text
