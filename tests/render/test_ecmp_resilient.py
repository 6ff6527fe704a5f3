"""The ECMP bench's resilient helper (lab/resilient.py) programs a resilient next-hop group this
kernel accepts, and `ip nexthop replace` of the group keeps its bucket table (net/ipv4/nexthop.c
replace_nexthop_grp_res): a leaver's buckets move and no other; a joiner's buckets come from the others,
which keep the rest; with no next hop left nothing remains.
In an anonymous network namespace of the test's own (under a second)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "ecmp_resilient_netns.py"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and ip (a network namespace)")
def test_the_resilient_helper_programs_a_group_the_kernel_keeps_resilient() -> None:
    done = subprocess.run(["unshare", "--net", sys.executable, str(FIXTURE), str(ROOT)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert all(all(ok) for _, ok in out["ok"]), out["ok"]
    three = out["three"]
    assert "group 101,64/102,64/103,64 type resilient buckets 16 idle_timer 120 unbalanced_timer 0" in \
        three["group"], three["group"]
    assert three["route"].startswith("198.19.255.100 nhid 100"), three["route"]
    before = {int(i): n for i, n in three["owners"].items()}
    assert sorted(set(before.values())) == [101, 102, 103] and len(before) == 16
    # 102 leaves: only its buckets move
    after = {int(i): n for i, n in out["leave"]["owners"].items()}
    assert all(after[i] == n for i, n in before.items() if n != 102) and 102 not in after.values()
    # a fourth next hop joins (the leaver's id is free again): buckets move only to it, from the others; buckets
    # no packet ever hit move even at idle_timer 120 on this kernel (6.18: measured here), so what keeps busy
    # buckets in place is traffic, which bench/ecmp measures
    busy = {int(i): n for i, n in out["join_busy"]["owners"].items()}
    joiner = (set(busy.values()) - set(after.values())).pop()
    assert all(busy[i] in (n, joiner) for i, n in after.items())
    assert 4 <= sum(1 for n in busy.values() if n == joiner) <= 6, busy
    assert out["none"]["group"] == "" and out["none"]["route"] == "" and out["left"] == ""
