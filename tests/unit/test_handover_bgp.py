"""proxytier.handover in vip_mode bgp (proxytier_handover): release takes the node out of the routers' routes
through the health gate's hold file and waits for the gate to withdraw, then for the node's connections to
finish (with bgp:graceful_shutdown, first marked for a graceful shutdown while they finish); reclaim lifts
the hold and waits for the gate to announce again; the other members do nothing. The gate is the real one's
state machine (files/proxytier_bgp_gate.py Gate.step) in a thread, with HAProxy's answers and `ip` stubbed."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import ROOT, build_model, gate_module, os_params
from proxytier_handover import handover
from proxytier_schema import ProxytierError

BGP_PILLAR = ROOT / "tests" / "pillar" / "bgp.sls"


def model(tmp_path: Path, node: str = "proxy2") -> dict[str, Any]:
    """The node's model of the BGP test pillar, its gate's hold and state files moved under tmp_path (the model
    keeps the state file under /run, where the gate's unit makes its directory)."""
    m = build_model(yaml.safe_load(BGP_PILLAR.read_text())["proxytier"], node, params=os_params())
    m["bgp"]["gate"].update(hold_file=str(tmp_path / "hold"), state_file=str(tmp_path / "state.json"))
    return m


class Gate(threading.Thread):
    """The real gate's decisions (files/proxytier_bgp_gate.py Gate.step: hold file and HAProxy's answers ->
    state file), every 20 ms, with HAProxy always answering and no `ip` run: `routes` records the protocol
    each announced route would get (static, or the graceful mark); `frozen` stops it (a gate that no longer
    runs)."""

    def __init__(self, m: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(daemon=True)
        module = gate_module()
        self.routes: list[str] = []
        monkeypatch.setattr(module, "ip", lambda *args: self.routes.append(args[-1]) or True)
        monkeypatch.setattr(module.subprocess, "run", lambda *args, **kwargs: None)
        monkeypatch.setattr(module, "healthy", lambda url, timeout: True)
        self.g = module.Gate("unused.json")
        self.g.cfg = {**m["bgp"]["gate"], "interval": 0.02}
        self.g.set(False, "starting")
        for _ in range(self.g.cfg["rise"]):
            self.g.step()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.frozen = False

    def freeze(self) -> None:
        """No step from now on (none is halfway either when this returns)."""
        with self.lock:
            self.frozen = True

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                if not self.frozen:
                    self.g.step()
            time.sleep(0.02)


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate(model(tmp_path), monkeypatch)
    g.start()
    time.sleep(0.05)
    yield g
    g.stop.set()
    g.join(timeout=2)


def state(m: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(m["bgp"]["gate"]["state_file"]).read_text())


def test_a_graceful_release_marks_first_waits_for_a_quiet_second_then_withdraws(tmp_path, gate) -> None:
    """bgp:graceful_shutdown (the default): the gate keeps announcing with its routes marked (the graceful
    protocol, which bird.conf turns into GRACEFUL_SHUTDOWN) while the node's connections finish; a connection
    seen again restarts the quiet second; then the withdraw."""
    m = model(tmp_path)
    assert m["bgp"]["graceful_shutdown"] is True
    addresses = m["bgp"]["gate"]["addresses"]
    seen: list[tuple[int, bool, bool]] = []
    left = iter([4, 2, 0, 0, 1, 0])  # then 0: a connection came and went during the quiet second

    def busy(addrs: list[str]) -> int:
        assert addrs == addresses
        n = next(left, 0)
        st = state(m)
        seen.append((n, st["announced"], st["graceful"]))
        return n

    t0 = time.monotonic()
    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=busy, timeout=2, drain=5)
    took = time.monotonic() - t0
    assert report["graceful"] == report["withdrawn"] == report["moved"] == addresses
    assert report["drained"] is True and report["left_busy"] == 0
    # every count up to the quiet second's end was taken while announcing, marked graceful
    marked = [s for s in seen if s[1:] == (True, True)]
    assert [n for n, *_ in marked[:6]] == [4, 2, 0, 0, 1, 0], seen
    assert len(marked) >= 6 + int(0.9 / 0.02) - 5, f"the quiet second was not waited for: {len(marked)} counts"
    assert 1.0 <= took < 3, took
    assert str(m["bgp"]["gate"]["graceful_proto"]) in gate.routes and "static" in gate.routes
    assert state(m)["announced"] is False and state(m)["held"] is True
    assert Path(m["bgp"]["gate"]["hold_file"]).read_text().split()[0] == "withdraw"


def test_release_withdraws_then_waits_for_the_connections_and_reclaim_announces_again(tmp_path, gate) -> None:
    """bgp:graceful_shutdown false: the withdraw comes first, then the wait."""
    m = model(tmp_path)
    m["bgp"]["graceful_shutdown"] = False
    addresses = m["bgp"]["gate"]["addresses"]
    busy_calls: list[list[str]] = []
    left = iter([3, 1, 0])

    def busy(addrs: list[str]) -> int:
        busy_calls.append(addrs)
        return next(left, 0)

    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=busy, timeout=2, drain=2)
    assert report["withdrawn"] == report["moved"] == addresses and report["graceful"] == []
    assert str(m["bgp"]["gate"]["graceful_proto"]) not in gate.routes
    assert report["drained"] is True and report["left_busy"] == 0
    assert busy_calls[0] == addresses
    assert state(m)["announced"] is False and state(m)["graceful"] is False
    assert os.path.exists(m["bgp"]["gate"]["hold_file"])

    back = handover(m, "proxy2", "reclaim", run=None, local_vips=set, busy=busy, timeout=2)
    assert back["moved"] == addresses
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])
    assert state(m)["announced"] is True and state(m)["held"] is False


def test_connections_that_outlast_the_drain_are_reported_not_waited_for(tmp_path, gate) -> None:
    m = model(tmp_path)
    t0 = time.monotonic()
    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 5, timeout=2, drain=0.3)
    assert report["drained"] is False and report["left_busy"] == 5
    assert 0.3 <= time.monotonic() - t0 < 2


def test_the_other_members_do_nothing(tmp_path, gate) -> None:
    m = model(tmp_path, node="proxy1")
    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=1)
    assert report["moved"] == [] and not os.path.exists(m["bgp"]["gate"]["hold_file"])


@pytest.mark.parametrize("graceful", [True, False])
def test_a_gate_that_does_not_withdraw_fails_the_release_and_the_hold_is_taken_away(tmp_path, gate,
                                                                                    graceful) -> None:
    m = model(tmp_path)
    m["bgp"]["graceful_shutdown"] = graceful
    gate.freeze()  # its state file says "announced" (not graceful) and stays so
    what = "did not mark its addresses for a graceful shutdown" if graceful else "still announces its addresses"
    with pytest.raises(ProxytierError, match=rf"{what} \(198.18.0.100, 2001:2::100\) .* hold taken away"):
        handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=0.3)
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])


def test_a_gate_that_marks_but_never_withdraws_fails_after_the_drain(tmp_path, gate) -> None:
    m = model(tmp_path)
    real_hold = gate.g.hold
    gate.g.hold = lambda: real_hold() and "graceful"  # a gate that takes every hold for a graceful one
    with pytest.raises(ProxytierError, match=r"still announces its addresses .* hold taken away"):
        handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=0.3, drain=0)
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])


def test_a_gate_that_does_not_announce_again_fails_the_reclaim_naming_the_gate(tmp_path, gate) -> None:
    m = model(tmp_path)
    handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=2, drain=0)
    gate.freeze()  # it says "withdrawn" whatever happens
    with pytest.raises(ProxytierError, match=r"does not announce .* proxytier-bgp-gate"):
        handover(m, "proxy2", "reclaim", run=None, local_vips=set, busy=lambda _a: 0, timeout=0.3)


def test_without_a_drain_the_release_waits_bgp_drain_at_most(tmp_path, gate) -> None:
    m = model(tmp_path)
    m["bgp"]["drain"] = 0.5  # the model's bgp:drain (whole seconds in pillar; shorter here)
    t0 = time.monotonic()
    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 3, timeout=2)
    assert report["drained"] is False and report["left_busy"] == 3 and report["graceful"]
    assert 0.5 <= time.monotonic() - t0 < 1.5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"drain": "30s"}, r"drain='30s': seconds, a number 0..3600 \(e.g. drain=30\)"),
    ({"drain": -1}, r"drain=-1: seconds"),
    ({"timeout": True}, r"timeout=True: seconds"),
])
def test_a_drain_or_timeout_that_is_no_number_of_seconds_is_refused_before_anything(tmp_path, gate, kwargs,
                                                                                    message) -> None:
    m = model(tmp_path)
    with pytest.raises(ProxytierError, match=message):
        handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, **kwargs)
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])
