"""The open-loop prober against real local HTTP servers on 127.0.0.x."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

import pytest

from bench.failover.probe import MAX_SECONDS, BackgroundProbe, Prober, ProbeResult, Target, run_probe

from .conftest import odd_handler


def starts(result: ProbeResult, target: str) -> list[float]:
    return [r.start for r in result.for_target(target)]


def test_a_probe_every_10_ms_per_target_and_it_stops_by_itself(local_server):
    a, b = local_server("127.0.0.2"), local_server("127.0.0.3")
    t0 = time.monotonic()
    result = run_probe([a.target, b.target], max_seconds=1.0)
    took = time.monotonic() - t0
    assert result.stopped_by == "max_seconds"
    assert took < 3.0
    for target in (a.target, b.target):
        records = result.for_target(target.name)
        assert 50 <= len(records) <= 105, f"{target.name}: {len(records)} probes in 1 s at 10 ms"
        assert all(r.ok and r.status == 200 and r.error == "" for r in records), Counter(r.error for r in records)
        gaps = [y - x for x, y in zip(starts(result, target.name), starts(result, target.name)[1:], strict=False)]
        assert 0.007 <= statistics.median(gaps) <= 0.02
        assert all(r.end >= r.start for r in records)


def test_open_loop_probes_do_not_wait_for_slow_answers(local_server):
    slow = local_server("127.0.0.2", odd_handler(200, 0.3))
    result = run_probe([slow.target], max_seconds=0.5, timeout=2.0)
    records = result.for_target(slow.target.name)
    # a closed-loop client would have sent 2; the open loop keeps its 10 ms cadence
    assert len(records) >= 25
    assert all(r.ok and r.latency >= 0.3 for r in records)
    in_flight_at = records[len(records) // 2].start
    assert sum(1 for r in records if r.start <= in_flight_at < r.end) >= 10


def test_closing_the_server_mid_run_gives_refused_probes(local_server):
    a, b = local_server("127.0.0.2"), local_server("127.0.0.3")
    probe = BackgroundProbe([a.target, b.target], max_seconds=10).start()
    time.sleep(0.5)
    a.stop()
    closed = time.monotonic()
    time.sleep(0.5)
    result = probe.stop()
    assert result.stopped_by == "stop"
    after = [r for r in result.for_target(a.target.name) if r.start > closed + 0.01]
    assert len(after) >= 20
    assert not any(r.ok for r in after)
    assert {r.error for r in after} == {"refused"}
    before = [r for r in result.for_target(a.target.name) if r.end < closed - 0.05]
    assert before and all(r.ok for r in before)
    assert all(r.ok for r in result.for_target(b.target.name))


def test_error_classes_5xx_and_timeout(local_server):
    err = local_server("127.0.0.2", odd_handler(503, 0.0))
    hang = local_server("127.0.0.3", odd_handler(200, 1.0))
    result = run_probe([err.target, hang.target], max_seconds=0.2, timeout=0.3)
    five = result.for_target(err.target.name)
    assert five and all(not r.ok and r.error == "http-5xx" and r.status == 503 for r in five)
    slow = result.for_target(hang.target.name)
    assert slow and all(not r.ok and r.error == "timeout" for r in slow)
    assert all(0.28 <= r.latency <= 0.6 for r in slow)


def test_stop_waits_for_probes_in_flight(local_server):
    hang = local_server("127.0.0.2", odd_handler(200, 5.0))
    probe = BackgroundProbe([hang.target], max_seconds=10, timeout=0.5).start()
    time.sleep(0.2)
    t0 = time.monotonic()
    result = probe.stop()
    assert time.monotonic() - t0 < 2.0
    assert not probe.running
    records = result.for_target(hang.target.name)
    assert len(records) >= 10 and {r.error for r in records} == {"timeout"}


def test_max_probes_caps_the_run(local_server):
    a = local_server("127.0.0.2")
    result = run_probe([a.target], max_seconds=5.0, max_probes=20)
    assert result.stopped_by == "max_probes"
    assert len(result.records) == 20


def test_background_probe_ends_by_itself_without_stop(local_server):
    a = local_server("127.0.0.2")
    probe = BackgroundProbe([a.target], max_seconds=0.3).start()
    time.sleep(1.0)
    assert not probe.running
    assert probe.stop().stopped_by == "max_seconds"


@pytest.mark.parametrize("address", ["192.0.2.1", "198.51.100.10", "203.0.113.8", "198.20.0.1", "localhost", "::2",
                                     "2001:db8::1", "2001:3::1"])
def test_refuses_targets_outside_the_lab(address):
    with pytest.raises(ValueError):
        Prober([Target(address)])


@pytest.mark.parametrize("address", ["127.0.0.2", "198.18.0.101", "198.19.255.254", "2001:2::101", "::1"])
def test_accepts_loopback_and_the_benchmarking_range(address):
    assert Prober([Target(address)]).targets[0].address == address  # built, not run: nothing is contacted


@pytest.mark.parametrize(
    "kwargs",
    [{"max_seconds": MAX_SECONDS + 1}, {"max_seconds": 0}, {"max_probes": 0}, {"max_probes": 1_000_001},
     {"interval": 0}],
)
def test_refuses_unbounded_settings(kwargs):
    with pytest.raises(ValueError):
        Prober([Target("127.0.0.2")], **kwargs)


def test_an_ipv6_target_is_probed_with_its_host_in_brackets(local_server):
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    server = local_server("::1", Handler)
    result = run_probe([server.target], interval=0.01, max_seconds=0.3)
    assert result.targets == [f"[::1]:{server.port}"]
    assert result.records and all(r.ok for r in result.records), result.records[:3]
    assert set(seen) == {"[::1]"}


def test_result_survives_a_json_round_trip(local_server):
    a = local_server("127.0.0.2")
    result = run_probe([a.target], max_seconds=0.1)
    a.stop()
    result2 = run_probe([a.target], max_seconds=0.05)
    result.records += result2.records
    back = ProbeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert [(r.target, r.ok, r.error, r.status) for r in back.records] == [
        (r.target, r.ok, r.error, r.status) for r in sorted(result.records, key=lambda r: r.start)
    ]
    assert {r.error for r in back.records} == {"", "refused"}
    assert back.interval == result.interval and back.stopped_by == "max_seconds"
