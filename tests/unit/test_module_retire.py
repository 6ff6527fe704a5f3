"""proxytier.retire (salt/_modules/proxytier.py), the leave orchestration's last step on the node, over Salt's
service functions: keepalived, HAProxy, nginx and the exporter stopped and disabled; where the formula ran
vip_mode bgp (the gate's configuration on the node), first the gate, its addresses (its --retire) and BIRD."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from formula import ROOT, ProxytierError, os_params


def module(tmp_path: Path, running: set[str], stuck: frozenset[str] = frozenset()) -> tuple[Any, list[str]]:
    spec = importlib.util.spec_from_file_location("proxytier_salt_module", ROOT / "salt" / "_modules" / "proxytier.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    calls: list[str] = []
    params = {**os_params(), "bgp_gate_config": str(tmp_path / "bgp-gate.json")}
    mod.params = lambda: params

    def stop(name: str) -> bool:
        calls.append(f"stop {name}")
        if name in stuck:
            return False
        running.discard(name)
        return True

    mod.__salt__ = {
        "service.available": lambda name: name != "not-installed",
        "service.status": lambda name: name in running,
        "service.stop": stop,
        "service.disable": lambda name: calls.append(f"disable {name}") or True,
    }
    mod._run = lambda cmd, input=None, check=True: calls.append(" ".join(cmd)) or ""
    return mod, calls


UNITS = ["keepalived", "haproxy", "nginx", "proxytier-exporter"]


def test_a_vrrp_node_stops_and_disables_its_daemons_in_order(tmp_path) -> None:
    mod, calls = module(tmp_path, set(UNITS))
    done = mod.retire()
    assert list(done) == UNITS and set(done.values()) == {"stopped and disabled"}
    assert calls == [c for u in UNITS for c in (f"stop {u}", f"disable {u}")]


def test_a_bgp_node_takes_its_gate_addresses_and_bird_away_first(tmp_path) -> None:
    (tmp_path / "bgp-gate.json").write_text("{}")
    mod, calls = module(tmp_path, {"proxytier-bgp-gate", "bird", "haproxy", "nginx", "proxytier-exporter"})
    done = mod.retire()
    assert list(done) == ["proxytier-bgp-gate", "bgp addresses", "bird", *UNITS]
    assert done["keepalived"] == "stopped and disabled"  # stopped already (BGP mode): disabled all the same
    gate_retire = next(c for c in calls if "--retire" in c)
    assert gate_retire.endswith(f"proxytier_bgp_gate.py --retire {tmp_path / 'bgp-gate.json'}")
    assert calls.index("stop proxytier-bgp-gate") < calls.index(gate_retire) < calls.index("stop bird") < calls.index(
        "stop haproxy")
    assert "stop keepalived" not in calls


def test_a_unit_that_does_not_stop_is_named_and_nothing_after_it_is_touched(tmp_path) -> None:
    (tmp_path / "bgp-gate.json").write_text("{}")
    mod, calls = module(tmp_path, {"proxytier-bgp-gate", "bird", "haproxy"}, stuck=frozenset({"bird"}))
    with pytest.raises(ProxytierError, match=r"bird does not stop \(journalctl -u bird\)"):
        mod.retire()
    assert "stop haproxy" not in calls
