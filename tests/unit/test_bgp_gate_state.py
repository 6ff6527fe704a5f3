"""The BGP gate's state file (what the exporter's bgp collector reads) follows HAProxy's answer and the hold
file within one check, also when the gate's decision does not change (a node withdrawn because HAProxy is
down, then held: the file must say held, or an alert would take the node for one that should announce)."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
from formula import FORMULA


@pytest.fixture
def gate_module() -> Any:
    spec = importlib.util.spec_from_file_location("proxytier_bgp_gate", FORMULA / "files" / "proxytier_bgp_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
