"""The packet filter rendered for every node of the example pillars is accepted by nftables
(`nft -c`, in a throwaway network namespace) and lets VRRP and nginx traffic in only from the
tier's members."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from formula import build_model, example_pillar, os_params, render

pytestmark = pytest.mark.skipif(not all(shutil.which(b) for b in ("nft", "unshare")), reason="needs nft, unshare")


def nft(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "filter.nft"
    path.write_text(text)
    return subprocess.run(["unshare", "--net", "nft", *args, "-f", str(path)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("node", ["proxy1", "proxy2", "proxy3"])
def test_nft_accepts_the_filter_of_every_node(tmp_path: Path, node: str) -> None:
    model = build_model(example_pillar(), node, params=os_params())
    text = render("filter.nft.jinja", model)
    proc = nft(tmp_path, text, "-c")
    assert proc.returncode == 0, proc.stderr
    members = ", ".join(m["address"] for m in model["members"])
    assert f"elements = {{ {members} }}" in text
    assert "tcp dport { 8080 } ip saddr != @members4 counter drop" in text


def test_loading_twice_replaces_the_table(tmp_path: Path) -> None:
    """The file is one transaction that replaces the table: loading it on top of itself works."""
    text = render("filter.nft.jinja", build_model(example_pillar(), "proxy1", params=os_params()))
    path = tmp_path / "filter.nft"
    path.write_text(text)
    proc = subprocess.run(["unshare", "--net", "sh", "-c", f"nft -f {path} && nft -f {path} && nft list ruleset"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("table inet proxytier_filter") == 1


def test_a_broken_filter_is_refused(tmp_path: Path) -> None:
    proc = nft(tmp_path, "table inet proxytier_filter {\n chain input { ip saddr != @nosuchset drop }\n}\n", "-c")
    assert proc.returncode != 0
