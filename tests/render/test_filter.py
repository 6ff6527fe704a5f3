"""The packet filter rendered for every node of the example pillars is accepted by nftables
(`nft -c`, in a throwaway network namespace), lets VRRP and nginx traffic in only from the
tier's members, and holds new connections to a VIP back (drop, not reset) while HAProxy is not there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from formula import ROOT, build_model, example_pillar, os_params, render

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


# One network namespace is the node (the rendered filter loaded, the VIPs on its veth end), a child
# namespace the client. Prints, per case, what a client's connect() saw within 0.6 s.
NO_LISTENER_PROBE = r"""
set -e
client_py=$2
ip link set lo up
unshare --net sleep 30 & client=$!
sleep 0.2
ip link add node0 type veth peer name client0
ip link set client0 netns "$client"
ip link set node0 up
ip addr add 198.18.0.11/24 dev node0
ip addr add 198.18.0.101/24 dev node0
ip -6 addr add 2001:2::101/64 dev node0 nodad
nft -f "$1"
nsenter -t "$client" -n sh -c '
  ip link set lo up; ip link set client0 up
  ip addr add 198.18.0.50/24 dev client0; ip -6 addr add 2001:2::50/64 dev client0 nodad'
probe() { nsenter -t "$client" -n python3 "$client_py" "$@"; }
probe 198.18.0.101:80 [2001:2::101]:80 198.18.0.101:81
python3 -c '
import socket, time
ls = []
for fam, addr in ((socket.AF_INET, "198.18.0.101"), (socket.AF_INET6, "2001:2::101")):
    s = socket.socket(fam); s.bind((addr, 80)); s.listen(); ls.append(s)
time.sleep(3)' & listener=$!
sleep 0.5
probe 198.18.0.101:80 [2001:2::101]:80
kill "$listener" "$client"
nft list chain inet proxytier_filter no_listener | grep -o 'packets [0-9]*'
"""

CONNECT_CLIENT = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(0.6)
    try:
        s.connect((host.strip("[]"), int(port)))
        print("connected")
    except ConnectionRefusedError:
        print("refused")
    except TimeoutError:
        print("waits")
    finally:
        s.close()
"""


def test_a_new_connection_to_a_vip_without_haproxy_waits_instead_of_being_refused(tmp_path: Path) -> None:
    """With the rendered filter loaded on a node (real nftables, veth, both families): a SYN to a VIP's
    frontend port while nothing listens is dropped (the client waits and retransmits) instead of
    refused; once HAProxy listens, it connects; a port HAProxy does not bind is refused as before."""
    pillar = yaml.safe_load((ROOT / "tests" / "pillar" / "dual-stack.sls").read_text())["proxytier"]
    model = build_model(pillar, "proxy1", params=os_params())
    assert model["firewall"]["vips4"][0] == "198.18.0.101" and model["firewall"]["vips6"][0] == "2001:2::101"
    assert 80 in model["firewall"]["frontend_ports"] and 81 not in model["firewall"]["frontend_ports"]
    path = tmp_path / "filter.nft"
    path.write_text(render("filter.nft.jinja", model))
    client = tmp_path / "client.py"
    client.write_text(CONNECT_CLIENT)
    proc = subprocess.run(["unshare", "--net", "bash", "-c", NO_LISTENER_PROBE, "probe", str(path), str(client)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the drop counter: one SYN for each waiting connect (its first retransmission would come after 1 s)
    assert proc.stdout.split() == ["waits", "waits", "refused", "connected", "connected", "packets", "2"], proc.stdout
