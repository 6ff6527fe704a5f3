"""A VRRP reclaim's members begin together (proxytier_handover.start_at, wait_start): the holders' guards
drop new SYNs until the VIPs move, and a client retransmits a dropped SYN after 1 s, so a holder whose guard
went up while the other members were still starting spent that second waiting for them. Every member
now waits for the Salt job's publish time (its JID) + START_DELAY."""

from __future__ import annotations

import datetime
import importlib.util
import time
from typing import Any

import pytest
from formula import ROOT, ProxytierError
from proxytier_handover import START_DELAY, START_MAX_SKEW, start_at, wait_start


def jid(at: float) -> str:
    """Salt's JID for a job published at `at` (salt.utils.jid.gen_jid: the master's local time)."""
    return datetime.datetime.fromtimestamp(at).strftime("%Y%m%d%H%M%S%f")


def test_the_common_start_is_the_jid_s_time_plus_the_delay() -> None:
    now = time.time()
    assert start_at(jid(now - 0.5), now=now) == pytest.approx(now - 0.5 + START_DELAY, abs=1e-5)


@pytest.mark.parametrize("bad", [None, 20261202101530123456, "", "req", "2026120210153012345",
                                 "20261302101530123456", "2026120210153012345x"])
def test_a_jid_that_is_no_time_gives_no_common_start(bad: Any) -> None:
    """A missing JID, a custom one (salt --jid), a month 13: the member begins at once, as before."""
    assert start_at(bad) is None


@pytest.mark.parametrize("off", [START_MAX_SKEW + 1, -(START_MAX_SKEW + 1), 3600.0, -3600.0])
def test_a_jid_far_from_the_node_s_clock_gives_no_common_start(off: float) -> None:
    """The master's local time in another time zone, or a clock out of step: not trusted."""
    now = time.time()
    assert start_at(jid(now + off), now=now) is None


def test_wait_start_sleeps_until_the_start_and_reports_how_late() -> None:
    at = time.time() + 0.3
    late = wait_start(at)
    assert time.time() >= at - 0.005
    assert late is not None and -0.3 <= late <= 0.0  # it began early: it waited
    assert wait_start(None) is None
    past = wait_start(time.time() - 2.0)
    assert past is not None and past == pytest.approx(2.0, abs=0.05)  # late by 2 s: no wait


def test_wait_start_never_sleeps_longer_than_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    late = wait_start(time.time() + 1000)
    assert slept == [START_DELAY] and late is not None and late < -999


def test_the_module_refuses_an_unknown_argument_before_anything_moves() -> None:
    """Salt hands the job's data (__pub_jid, __pub_fun, ...) to a function that takes **kwargs; any other
    keyword is a typo to name, not to ignore."""
    spec = importlib.util.spec_from_file_location("proxytier_salt_module", ROOT / "salt" / "_modules" / "proxytier.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.model = lambda: pytest.fail("the model was built for a refused call")
    with pytest.raises(ProxytierError, match=r"unknown argument\(s\) timout: use node, action, timeout, drain"):
        mod.handover("proxy2", "reclaim", timout=3, __pub_jid=jid(time.time()))


def _members(tmp_path: Any) -> dict[str, dict[str, Any]]:
    """proxy1 (home of 198.18.0.101) and proxy2 (holding it), their models from the lab's static pillar with
    the hold file under tmp_path."""
    from formula import build_model, example_pillar, os_params

    out = {}
    for node in ("proxy1", "proxy2"):
        m = build_model(example_pillar(), node, params=os_params())
        m["vrrp"]["hold_file"] = str(tmp_path / f"hold-{node}")
        out[node] = m
    return out


def test_in_a_reclaim_neither_the_holder_guards_nor_the_home_probes_before_the_common_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both members run at once with one start 0.3 s ahead: the holder's first nft command (its guard) and
    the home node's first probe come after it, and each reports how late it began (<= 0: waited)."""
    import threading

    import proxytier_handover as lib

    models = _members(tmp_path)
    vip = "198.18.0.101"
    holder = {vip}  # proxy2 holds the VIP until proxy1 lifts its hold
    first: dict[str, float] = {}

    def probe(addresses: list[str], port: int, timeout: float = 0.1) -> bool:
        first.setdefault("probe", time.time())
        return "guard" in first

    def run(argv: list[str], input: str | None = None, check: bool = True) -> str:
        if argv[:2] == ["nft", "-f"]:
            first.setdefault("guard", time.time())
        return ""

    real_set_hold = lib.set_hold

    def set_hold(path: str, value: int) -> None:
        real_set_hold(path, value)
        if value == 0:
            holder.clear()  # keepalived: proxy1 outranks proxy2 again, the VIP moves

    monkeypatch.setattr(lib, "all_dropped", probe)
    monkeypatch.setattr(lib, "set_hold", set_hold)
    monkeypatch.setattr(lib, "SETTLE", 0.0)
    start = time.time() + 0.3
    reports: dict[str, dict[str, Any]] = {}

    def member(node: str) -> None:
        local = (lambda: {vip} - holder) if node == "proxy1" else (lambda: set(holder))
        reports[node] = lib.handover(models[node], "proxy1", "reclaim", run, local, lambda _v: 0, timeout=2,
                                     drain=0.2, start=start)

    threads = [threading.Thread(target=member, args=(n,)) for n in ("proxy2", "proxy1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert first["guard"] >= start and first["probe"] >= start, (first, start)
    assert reports["proxy1"]["moved"] == [vip] and reports["proxy2"]["moved"] == [vip], reports
    assert all(-0.3 <= r["start_late"] < 0.3 for r in reports.values()), reports
    assert reports["proxy1"]["guard_seen"] is True
