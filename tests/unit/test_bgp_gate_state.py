"""The BGP gate's state file (what the exporter's bgp collector reads) follows HAProxy's answer and the hold
file within one check, also when the gate's decision does not change (a node withdrawn because HAProxy is
down, then held: the file must say held, or an alert would take the node for one that should announce)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from formula import gate_module as load_gate


@pytest.fixture
def gate_module() -> Any:
    return load_gate()


def test_the_state_file_follows_health_and_hold_without_a_decision(gate_module, tmp_path, monkeypatch) -> None:
    cfg = {"table": 200, "interval": 0.2, "fall": 2, "rise": 3, "interface": "lo", "addresses": ["198.18.0.100"],
           "monitor_url": "http://127.0.0.1:8405/proxytier-monitor", "hold_file": str(tmp_path / "hold"),
           "state_file": str(tmp_path / "state.json")}
    monkeypatch.setattr(gate_module, "ip", lambda *args: True)
    monkeypatch.setattr(gate_module.subprocess, "run", lambda *args, **kwargs: None)
    answers = iter([False, False, False, True, True])
    monkeypatch.setattr(gate_module, "healthy", lambda url, timeout: next(answers))
    gate = gate_module.Gate(str(tmp_path / "gate.json"))
    gate.cfg = cfg

    def state() -> dict[str, Any]:
        return json.loads((tmp_path / "state.json").read_text())

    gate.set(False, "starting")
    gate.step()  # HAProxy down, nothing announced: no decision, the file as it was
    assert (state()["announced"], state()["healthy"], state()["held"]) == (False, False, False)
    (tmp_path / "hold").write_text("1\n")
    gate.step()
    assert state()["held"] is True
    gate.step()
    gate.step()  # HAProxy answers again, still held: not announced, but healthy
    assert (state()["announced"], state()["healthy"], state()["held"]) == (False, True, True)
    (tmp_path / "hold").unlink()
    gate.step()  # 2 good answers of rise 3: no decision yet, held no more
    assert (state()["announced"], state()["healthy"], state()["held"]) == (False, True, False)


def test_a_graceful_hold_marks_the_routes_an_empty_one_withdraws_and_a_withdrawn_node_stays_out(
        gate_module, tmp_path, monkeypatch) -> None:
    """The hold file's first word: "graceful" keeps the announcement with the routes' protocol set to the
    graceful mark (bird.conf adds GRACEFUL_SHUTDOWN for it); anything else (an empty file: `touch`) withdraws;
    HAProxy failing withdraws a graceful node too, and a held node is not announced again until the hold goes."""
    cfg = {"table": 200, "interval": 0.2, "fall": 2, "rise": 1, "interface": "lo", "addresses": ["198.18.0.100"],
           "monitor_url": "http://127.0.0.1:8405/proxytier-monitor", "hold_file": str(tmp_path / "hold"),
           "state_file": str(tmp_path / "state.json"), "graceful_proto": 201}
    routes: list[tuple[str, ...]] = []
    monkeypatch.setattr(gate_module, "ip", lambda *args: routes.append(args) or True)
    monkeypatch.setattr(gate_module.subprocess, "run", lambda *args, **kwargs: routes.append(("del",)))
    answers = iter([True, True, True, False, False, True, True, True, True])
    monkeypatch.setattr(gate_module, "healthy", lambda url, timeout: next(answers))
    gate = gate_module.Gate(str(tmp_path / "gate.json"))
    gate.cfg = cfg
    hold = tmp_path / "hold"

    def state() -> tuple[bool, bool, bool]:
        s = json.loads((tmp_path / "state.json").read_text())
        return s["announced"], s["graceful"], s["held"]

    gate.set(False, "starting")
    gate.step()
    assert state() == (True, False, False) and routes[-1][-1] == "static"
    hold.write_text("graceful (proxytier.handover release)\n")
    gate.step()
    assert state() == (True, True, True) and routes[-1][-2:] == ("proto", "201"), routes[-1]
    hold.write_text("")
    gate.step()
    assert state() == (False, False, True) and routes[-1] == ("del",)
    hold.unlink()
    gate.step()  # HAProxy fails (1 of fall 2)
    assert state() == (False, False, False)
    gate.step()  # announced? no: HAProxy failed twice; rise 1 needs a good answer
    hold.write_text("graceful\n")
    gate.step()  # a good answer, but held: a withdrawn node stays out while any hold exists
    assert state() == (False, False, True)
    hold.unlink()
    gate.step()
    assert state() == (True, False, False) and routes[-1][-1] == "static"
    hold.write_text("graceful\n")
    gate.step()
    assert state() == (True, True, True)
    hold.unlink()
    gate.step()  # the graceful hold lifted: plain announcement again
    assert state() == (True, False, False) and routes[-1][-1] == "static"
