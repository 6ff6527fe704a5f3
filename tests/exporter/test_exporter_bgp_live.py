"""vip_mode bgp against a live BIRD: fixtures/capture_bird.py --scrape runs Debian's BIRD with the formula's
bird.conf on a node and a router BIRD, in network namespaces of its own (a few seconds), and the bgp collector
scrapes the node's control socket and the gate's state file while the sessions are up, while the node is held,
and after the router went."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CAPTURE = Path(__file__).parent / "fixtures" / "capture_bird.py"


@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(b) for b in ("bird", "birdc", "unshare", "nsenter")),
                    reason="needs root, Debian's bird2 (bird, birdc), unshare and nsenter")
def test_the_collector_reads_a_live_bird_and_gate(tmp_path: Path) -> None:
    out = tmp_path / "scrape.json"
    res = subprocess.run([sys.executable, str(CAPTURE), "--scrape", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    scraped = {case: found["exposition"] for case, found in json.loads(out.read_text()).items()}
    peer1 = 'peer="peer1",peer_address="198.18.200.1",peer_asn="64496"'
    for case, text in scraped.items():
        assert 'proxytier_collector_success{collector="bgp"} 1.0' in text, (case, text)
    up = scraped["established"]
    assert f'proxytier_bgp_session_state{{{peer1},state="Established"}} 1.0' in up
    assert f'proxytier_bgp_routes_exported{{channel="ipv4",{peer1}}} 1.0' in up
    assert f'proxytier_bgp_bfd_session_state{{interface="host0",{peer1},state="Up"}} 1.0' in up
    assert "proxytier_bgp_gate_announced 1.0" in up
    held = scraped["held"]
    assert "proxytier_bgp_gate_held 1.0" in held and "proxytier_bgp_gate_announced 0.0" in held
    assert f'proxytier_bgp_routes_exported{{channel="ipv4",{peer1}}} 0.0' in held
    gone = scraped["router_down"]
    assert f'proxytier_bgp_session_state{{{peer1},state="Established"}} 0.0' in gone
    assert f'proxytier_bgp_bfd_session_state{{interface="host0",{peer1},state="Up"}} 0.0' in gone
