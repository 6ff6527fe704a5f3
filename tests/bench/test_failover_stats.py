"""Outage and counts: crafted probe records, then a real probe through a server that goes away for 0.3 s."""

from __future__ import annotations

import time

import pytest

from bench.failover import stats
from bench.failover.probe import BackgroundProbe, Record

T = "198.18.0.101:80"
U = "198.18.0.102:80"
STEP = 0.01


def pattern(spec: str, target: str = T, t0: float = -0.1) -> list[Record]:
    """One probe per character every 10 ms from t0 (the event is at 0): '.' good, 'x' refused,
    's' slow (ok after 1.01 s: a retransmitted SYN), 't' timed out after 2 s."""
    out = []
    for i, c in enumerate(spec):
        t = round(t0 + i * STEP, 6)
        latency = {".": 0.002, "x": 0.001, "s": 1.01, "t": 2.0}[c]
        out.append(Record(target, t, t + latency, c in ".s", {"x": "refused", "t": "connect-timeout"}.get(c, "")))
    return out


#            event at index 10 (t = 0)
BEFORE = "." * 10


# ---- outage


def test_outage_ordinary():
    assert stats.outage(pattern(BEFORE + "xxxxx" + "." * 40), T, 0.0) == pytest.approx(0.05)


def test_outage_none():
    assert stats.outage(pattern(BEFORE + "." * 40), T, 0.0) == 0.0
    assert stats.outage_span(pattern(BEFORE + "." * 40), T, 0.0) is None


def test_outage_at_end_runs_to_the_last_probe_and_is_not_recovered():
    records = pattern(BEFORE + "." * 5 + "x" * 20)
    assert stats.outage(records, T, 0.0) == pytest.approx(0.19)
    assert stats.outage_span(records, T, 0.0)[2] is False


def test_outage_slow_only_counts_retransmitted_syns_as_outage():
    assert stats.outage(pattern(BEFORE + "s" * 30 + "." * 40), T, 0.0) == pytest.approx(0.30)
    assert stats.outage(pattern(BEFORE + "s" * 30 + "." * 40), T, 0.0, good_latency=2.0) == 0.0


def test_outage_ignores_what_went_bad_before_the_event_and_other_targets():
    records = pattern("xxxxx" + "." * 5 + "." * 40) + pattern(BEFORE + "x" * 50 + "." * 30, U)
    assert stats.outage(records, T, 0.0) == 0.0
    assert stats.outage(records, U, 0.0) == pytest.approx(0.50)


def test_outage_flapping_inside_the_settle_window_is_one_outage():
    # good again at +0.05, bad again at +0.10 (inside 0.2 s settle), good from +0.12 for good
    records = pattern(BEFORE + "xxxxx" + "....." + "xx" + "." * 40)
    assert stats.outage(records, T, 0.0) == pytest.approx(0.12)
    # with a settle window shorter than the good stretch, the first recovery counts
    assert stats.outage(records, T, 0.0, settle=0.03) == pytest.approx(0.05)


def test_outage_until_bounds_the_search():
    records = pattern(BEFORE + "." * 50 + "xxx" + "." * 30)
    assert stats.outage(records, T, 0.0) == pytest.approx(0.03)
    assert stats.outage(records, T, 0.0, until=0.4) == 0.0


# ---- failed / slow / errors


def test_failed_ordinary_none_at_end_and_slow_only():
    assert stats.failed(pattern(BEFORE + "xxxxx" + "t" * 3 + "." * 40), T, since=0.0) == 8
    assert stats.failed(pattern(BEFORE + "." * 40), T, since=0.0) == 0
    assert stats.failed(pattern(BEFORE + "." * 10 + "x" * 7), T, since=0.0) == 7
    assert stats.failed(pattern(BEFORE + "s" * 30 + "." * 10), T, since=0.0) == 0
    assert stats.failed(pattern("xxxxx" + "." * 20), T, since=0.0) == 0  # before the event
    assert stats.failed(pattern("xxxxx" + "." * 20)) == 5  # no window: all


def test_slow_ordinary_none_at_end_and_slow_only():
    assert stats.slow(pattern(BEFORE + "xx" + "sss" + "." * 40), T, since=0.0) == 3
    assert stats.slow(pattern(BEFORE + "." * 40), T, since=0.0) == 0
    assert stats.slow(pattern(BEFORE + "." * 10 + "s" * 4), T, since=0.0) == 4
    assert stats.slow(pattern(BEFORE + "s" * 30), T, since=0.0) == 30
    assert stats.slow(pattern(BEFORE + "s" * 30), T, since=0.0, good_latency=1.5) == 0


def test_errors_by_class():
    assert stats.errors(pattern(BEFORE + "xxx" + "tt" + "."), T, since=0.0) == {"refused": 3, "connect-timeout": 2}
    assert stats.errors(pattern(BEFORE + "...")) == {}


# ---- one event, several repetitions


def test_event_stats_breakdown_per_target():
    records = pattern(BEFORE + "x" * 30 + "." * 40) + pattern(BEFORE + "ss" + "." * 60, U)
    ev = stats.event_stats(records, 0.0, [T, U])
    assert ev["outage"] == pytest.approx(0.30)
    assert ev["worst_target"] == T
    assert ev["failed"] == 30 and ev["slow"] == 2
    assert ev["per_target"][T]["errors"] == {"refused": 30}
    assert ev["per_target"][U]["outage"] == pytest.approx(0.02)
    assert ev["per_target"][T]["outage_begin"] == pytest.approx(0.0)
    assert ev["recovered"] is True


def test_failed_connect_counts_only_connections_that_were_never_established():
    """Refused and timed-out connects are new connections the fault turned away; a reset (a connection in
    flight when the process died) fails too, but not to connect. summarize keeps both counts."""
    records = pattern(BEFORE + "x" * 20 + "t" + "." * 40)
    records[BEFORE.count(".")].error = "reset"  # the first probe after the event: in flight, then reset
    ev = stats.event_stats(records, 0.0, [T])
    assert (ev["failed"], ev["failed_connect"], ev["per_target"][T]["failed_connect"]) == (21, 20, 20)
    s = stats.summarize([ev, stats.event_stats(pattern(BEFORE + "x" * 4 + "." * 40), 0.0, [T])])
    assert (s["failed_connect_median"], s["failed_connect_max"], s["per_target"][T]["failed_connect_max"]) == (
        12, 20, 20)
    assert "failed_connect_median" not in stats.summarize([rep(0.5, 10)])


def test_event_stats_no_outage_and_outage_at_end():
    quiet = stats.event_stats(pattern(BEFORE + "." * 40) + pattern(BEFORE + "." * 40, U), 0.0)
    assert quiet["outage"] == 0.0 and quiet["failed"] == 0 and quiet["worst_target"] is None
    stuck = stats.event_stats(pattern(BEFORE + "." * 40) + pattern(BEFORE + "x" * 40, U), 0.0)
    assert stuck["worst_target"] == U and stuck["recovered"] is False and stuck["failed"] == 40


def rep(outage: float, failed: int, slow: int = 0, per: dict | None = None) -> dict:
    return {"outage": outage, "failed": failed, "slow": slow, "recovered": True,
            "per_target": per or {T: {"outage": outage, "failed": failed, "slow": slow}}}


def test_summarize_median_and_max_over_repetitions():
    s = stats.summarize([rep(0.5, 10), rep(3.0, 2), rep(1.0, 4, 1)])
    assert (s["reps"], s["outage_median"], s["outage_max"]) == (3, 1.0, 3.0)
    assert (s["failed_median"], s["failed_max"], s["slow_median"], s["slow_max"]) == (4, 10, 0, 1)
    assert s["per_target"][T]["outage_max"] == 3.0 and s["worst_target"] == T
    even = stats.summarize([rep(1.0, 1), rep(2.0, 4)])
    assert even["outage_median"] == 1.5 and even["failed_median"] == 2.5


def test_summarize_names_the_vip_that_suffered():
    reps = [rep(1.0, 5, per={T: {"outage": 0.0, "failed": 0, "slow": 0}, U: {"outage": 1.0, "failed": 5, "slow": 0}})
            for _ in range(3)]
    assert stats.summarize(reps)["worst_target"] == U
    calm = [rep(0.0, 0, per={T: {"outage": 0.0, "failed": 0, "slow": 0}})]
    assert stats.summarize(calm)["worst_target"] is None


def test_median_rep_picks_the_middle_one():
    assert stats.median_rep([rep(3.0, 1), rep(0.5, 1), rep(1.0, 1)]) == 2
    assert stats.median_rep([rep(3.0, 1), rep(0.5, 1)]) == 1
    with pytest.raises(ValueError):
        stats.median_rep([])


def test_ratio_guards_zero():
    assert stats.ratio(3.0, 1.5) == 2.0
    assert stats.ratio(0.0, 1.5) == 0.0
    assert stats.ratio(0.0, 0.0) == 1.0
    assert stats.ratio(1.0, 0.0) is None


# ---- a real probe through a server that is gone for 0.3 s


def test_outage_of_a_real_probe_when_the_server_is_down_for_300_ms(local_server):
    a, b = local_server("127.0.0.2"), local_server("127.0.0.3")
    probe = BackgroundProbe([a.target, b.target], max_seconds=10).start()
    time.sleep(0.4)
    event_t = time.monotonic()
    a.stop()
    closed = time.monotonic()
    time.sleep(0.3)
    a.start()
    reopened = time.monotonic()
    time.sleep(0.6)
    result = probe.stop()

    out = stats.outage(result.records, a.target.name, event_t)
    assert reopened - closed - 0.03 <= out <= reopened - event_t + 0.1, (out, closed - event_t, reopened - event_t)
    assert 0.2 <= out <= 0.8
    ev = stats.event_stats(result.records, event_t, [a.target.name, b.target.name])
    assert ev["worst_target"] == a.target.name and ev["recovered"] is True
    assert ev["per_target"][a.target.name]["errors"].get("refused", 0) >= 15
    assert ev["per_target"][b.target.name]["outage"] == 0.0
    assert ev["per_target"][b.target.name]["failed"] == 0
