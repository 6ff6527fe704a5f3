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
