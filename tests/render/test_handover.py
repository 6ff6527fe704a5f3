"""The pieces of proxytier.handover that touch the kernel, on the real kernel: the count of
connections a moving VIP would reset (read from /proc/net/tcp and /proc/net/tcp6) and the nftables
guard that drops new connections to a VIP (IPv4 or IPv6) while established ones carry on."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from proxytier_handover import busy_connections, guard_script, guarded

FIXTURES = Path(__file__).parent / "fixtures"
UTILS = Path(__file__).parents[2] / "salt" / "_utils"


def _proc_net_tcp(name: str = "tcp") -> str:
    with open(f"/proc/net/{name}") as f:
        return f.read()


def test_busy_connections_reads_captured_tcp6() -> None:
    """/proc/net/tcp6 and tcp captured together (fixtures/capture_proc_net.py, loopback only): on
    ::1 an established connection (both its ends are local ::1), a TIME_WAIT one and listeners;
    a dual-stack listener's connection from 127.0.0.1, listed in tcp6 as ::ffff:127.0.0.1."""
    tcp6 = (FIXTURES / "proc_net_tcp6.txt").read_text()
    tcp = (FIXTURES / "proc_net_tcp.txt").read_text()
    assert busy_connections(tcp6, ["::1"]) == 2  # not the listeners, not TIME_WAIT
    assert busy_connections(tcp6, ["0:0::1"]) == 2  # any spelling of the address
    assert busy_connections(tcp6, ["2001:2::101"]) == 0
    # an IPv4 address: its own row in tcp, and its IPv4-mapped row in tcp6
    assert busy_connections(tcp, ["127.0.0.1"]) == 1
    assert busy_connections(tcp + tcp6, ["127.0.0.1"]) == 2
    assert busy_connections(tcp + tcp6, ["127.0.0.1", "::1"]) == 4


@pytest.mark.skipif(not Path("/proc/net/tcp6").exists(), reason="no IPv6 on this kernel")
def test_busy_connections_counts_live_ipv6_connections() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]
        before = busy_connections(_proc_net_tcp("tcp6"), ["::1"])
        with socket.create_connection(("::1", port), timeout=2) as client:
            accepted, _ = server.accept()
            # both ends are local ::1: the accepted socket and the client
            assert busy_connections(_proc_net_tcp("tcp6"), ["::1"]) == before + 2
            assert busy_connections(_proc_net_tcp("tcp6"), ["2001:2::101"]) == 0
            accepted.close()
            client.recv(1)


def test_busy_connections_counts_live_connections_on_the_address_only() -> None:
    address = "127.0.0.7"  # loopback: every 127/8 address is local
    with socket.create_server((address, 0)) as server:
        port = server.getsockname()[1]
        before = busy_connections(_proc_net_tcp(), [address])
        client = socket.create_connection((address, port), timeout=2)
        accepted, _ = server.accept()
        # the listening socket does not count; the accepted one (local address 127.0.0.7) does,
        # the client side (local address 127.0.0.1) does not
        assert busy_connections(_proc_net_tcp(), [address]) == before + 1
        assert busy_connections(_proc_net_tcp(), ["127.0.0.8"]) == 0
        accepted.close()  # server closes first: FIN_WAIT, then TIME_WAIT once the client closes
        client.recv(1)
        client.close()
        deadline = time.monotonic() + 5
        while busy_connections(_proc_net_tcp(), [address]) != before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert busy_connections(_proc_net_tcp(), [address]) == before


def test_busy_connections_reads_captured_lines() -> None:
    # two rows as the kernel writes them: 198.18.0.101:80 ESTABLISHED and TIME_WAIT
    text = textwrap.dedent("""\
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 650012C6:0050 010012C6:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1 1
           1: 650012C6:0050 010012C6:A1B3 06 00000000:00000000 03:00000F9A 00000000     0        0 0 3
        """)
    assert busy_connections(text, ["198.18.0.101"]) == 1
    assert busy_connections(text, ["198.18.0.102"]) == 0


def test_guard_script_refuses_anything_but_addresses() -> None:
    with pytest.raises(ValueError):
        guard_script(["198.18.0.101; flush ruleset"])
    with pytest.raises(ValueError):
        guard_script(["2001:2::101 }"])


def test_guard_script_puts_each_family_in_its_own_set() -> None:
    script = guard_script(["198.18.0.101", "2001:2::101", "2001:2::102"], lifetime=7)
    assert script.startswith("table inet proxytier_handover {")
    assert "elements = { 198.18.0.101 timeout 7s }" in script
    assert "elements = { 2001:2::101 timeout 7s, 2001:2::102 timeout 7s }" in script
    assert "ip6 daddr @vips6 tcp flags & (syn | ack) == syn drop" in script
    assert "elements" not in guard_script(["198.18.0.101"]).split("set vips6")[1]  # an empty set has none


GUARD_PROBE = """
import socket, subprocess, sys
script, address = sys.argv[1], sys.argv[2]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server((address, 8080), family=family)
kept = socket.create_connection((address, 8080), timeout=2)
peer, _ = server.accept()
subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
try:
    socket.create_connection((address, 8080), timeout=0.5)
    print("new connection accepted")
except TimeoutError:
    print("new connection dropped")
kept.sendall(b"ping")
print("established carries on" if peer.recv(4) == b"ping" else "established broken")
subprocess.run(["nft", "delete", "table", "inet", "proxytier_handover"], check=True)
socket.create_connection((address, 8080), timeout=2).close()
print("accepted after the guard")
"""


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare")
@pytest.mark.parametrize("address", ["127.0.0.9", "::1"])
def test_guard_drops_new_connections_and_keeps_established_ones(address: str) -> None:
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", GUARD_PROBE, guard_script([address, "2001:2::9", "198.18.0.9"]),
         address],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "new connection dropped", "established carries on", "accepted after the guard",
    ]


EXPIRY_PROBE = """
import socket, subprocess, sys, time
script, address = sys.argv[1], sys.argv[2]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server((address, 8080), family=family)
subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
print(subprocess.run(["nft", "-j", "list", "table", "inet", "proxytier_handover"],
                     capture_output=True, text=True, check=True).stdout)
try:
    socket.create_connection((address, 8080), timeout=0.5)
    print("accepted while guarded")
except TimeoutError:
    print("dropped while guarded")
time.sleep(1.6)
socket.create_connection((address, 8080), timeout=2).close()
print("accepted after the guard expired, its table still there")
print(subprocess.run(["nft", "-j", "list", "table", "inet", "proxytier_handover"],
                     capture_output=True, text=True, check=True).stdout)
"""


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare")
@pytest.mark.parametrize("address", ["127.0.0.9", "::1"])
def test_a_guard_left_behind_expires_by_itself(address: str) -> None:
    """A handover killed before it removed its guard does not black-hole new connections for
    good: the guarded VIPs are set elements with a timeout."""
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", EXPIRY_PROBE, guard_script([address], lifetime=1), address],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert guarded(lines[0]) == [address]
    assert lines[1:3] == ["dropped while guarded", "accepted after the guard expired, its table still there"]
    assert guarded(lines[3]) == []


def test_guard_lifetime_must_be_whole_seconds() -> None:
    with pytest.raises(ValueError):
        guard_script(["127.0.0.9"], lifetime=0)


ALL_DROPPED_PROBE = """
import socket, subprocess, sys
from proxytier_handover import all_dropped, guard_script
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
servers = [socket.create_server((a, 8080), family=socket.AF_INET6 if ":" in a else socket.AF_INET)
           for a in ("127.0.0.9", "::1", "127.0.0.10")]
print(all_dropped(["127.0.0.9", "::1"], 8080))
subprocess.run(["nft", "-f", "-"], input=guard_script(["127.0.0.9", "::1"]), text=True, check=True)
print(all_dropped(["127.0.0.9", "::1"], 8080))
print(all_dropped(["127.0.0.9", "::1", "127.0.0.10"], 8080))
print(all_dropped([], 8080))
"""


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare")
def test_all_dropped_sees_a_guard_on_every_address_of_both_families() -> None:
    """The reclaiming node's probe: True only when SYNs to every address go unanswered (an IPv4 and an
    IPv6 VIP under a real guard), False while one still answers."""
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", ALL_DROPPED_PROBE],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(UTILS)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "False", "True"]
