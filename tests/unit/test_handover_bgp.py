"""proxytier.handover in vip_mode bgp (proxytier_handover): release takes the node out of the routers' routes
through the health gate's hold file and waits for the gate to withdraw, then for the node's connections to
finish; reclaim lifts the hold and waits for the gate to announce again; the other members do nothing. The
gate is played by a thread that does what files/proxytier_bgp_gate.py does with its hold and state files."""

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
from formula import ROOT, build_model, os_params
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
    """Announces while no hold file exists, rewriting the state file every 20 ms (the real gate checks every
    `interval`, 0.2 s by default); `frozen` stops it (a gate that no longer runs)."""

    def __init__(self, m: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.gate = m["bgp"]["gate"]
        self.stop = threading.Event()
        self.frozen = False

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.frozen:
                announced = not os.path.exists(self.gate["hold_file"])
                state = {"announced": announced, "since": time.time(), "addresses": self.gate["addresses"],
                         "healthy": True, "held": not announced}
                Path(self.gate["state_file"]).write_text(json.dumps(state))
            time.sleep(0.02)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(model(tmp_path))
    g.start()
    time.sleep(0.05)
    yield g
    g.stop.set()
    g.join(timeout=2)


def test_release_withdraws_then_waits_for_the_connections_and_reclaim_announces_again(tmp_path, gate) -> None:
    m = model(tmp_path)
    addresses = m["bgp"]["gate"]["addresses"]
    busy_calls: list[list[str]] = []
    left = iter([3, 1, 0])

    def busy(addrs: list[str]) -> int:
        busy_calls.append(addrs)
        return next(left, 0)

    report = handover(m, "proxy2", "release", run=None, local_vips=set, busy=busy, timeout=2, drain=2)
    assert report["withdrawn"] == report["moved"] == addresses
    assert report["drained"] is True and report["left_busy"] == 0
    assert busy_calls[0] == addresses
    assert json.loads(Path(m["bgp"]["gate"]["state_file"]).read_text())["announced"] is False
    assert os.path.exists(m["bgp"]["gate"]["hold_file"])

    back = handover(m, "proxy2", "reclaim", run=None, local_vips=set, busy=busy, timeout=2)
    assert back["moved"] == addresses
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])
    assert json.loads(Path(m["bgp"]["gate"]["state_file"]).read_text())["announced"] is True


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


def test_a_gate_that_does_not_withdraw_fails_the_release_and_the_hold_is_taken_away(tmp_path, gate) -> None:
    m = model(tmp_path)
    gate.frozen = True  # its state file says "announced" and stays so
    with pytest.raises(ProxytierError, match=r"still announces .* hold taken away"):
        handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=0.3)
    assert not os.path.exists(m["bgp"]["gate"]["hold_file"])


def test_a_gate_that_does_not_announce_again_fails_the_reclaim_naming_the_gate(tmp_path, gate) -> None:
    m = model(tmp_path)
    handover(m, "proxy2", "release", run=None, local_vips=set, busy=lambda _a: 0, timeout=2, drain=0)
    gate.frozen = True  # it says "withdrawn" whatever happens
    with pytest.raises(ProxytierError, match=r"does not announce .* proxytier-bgp-gate"):
        handover(m, "proxy2", "reclaim", run=None, local_vips=set, busy=lambda _a: 0, timeout=0.3)
