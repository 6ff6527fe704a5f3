"""The pieces of proxytier.handover that touch the kernel, on the real kernel: the count of
connections a moving VIP would reset (read from /proc/net/tcp) and the nftables guard that
drops new connections to a VIP while established ones carry on."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from proxytier_handover import busy_connections, guard_script, guarded


def _proc_net_tcp() -> str:
    with open("/proc/net/tcp") as f:
        return f.read()


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


GUARD_PROBE = """
import socket, subprocess, sys
script, address = sys.argv[1], sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server((address, 8080))
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
subprocess.run(["nft", "delete", "table", "ip", "proxytier_handover"], check=True)
socket.create_connection((address, 8080), timeout=2).close()
print("accepted after the guard")
"""


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare")
def test_guard_drops_new_connections_and_keeps_established_ones() -> None:
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", GUARD_PROBE, guard_script(["127.0.0.9"]), "127.0.0.9"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "new connection dropped", "established carries on", "accepted after the guard",
    ]


EXPIRY_PROBE = """
import socket, subprocess, sys, time
script, address = sys.argv[1], sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
server = socket.create_server((address, 8080))
subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
print(subprocess.run(["nft", "-j", "list", "set", "ip", "proxytier_handover", "vips"],
                     capture_output=True, text=True, check=True).stdout)
try:
    socket.create_connection((address, 8080), timeout=0.5)
    print("accepted while guarded")
except TimeoutError:
    print("dropped while guarded")
time.sleep(1.6)
socket.create_connection((address, 8080), timeout=2).close()
print("accepted after the guard expired, its table still there")
print(subprocess.run(["nft", "-j", "list", "set", "ip", "proxytier_handover", "vips"],
                     capture_output=True, text=True, check=True).stdout)
"""


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("unshare")), reason="needs nft and unshare")
def test_a_guard_left_behind_expires_by_itself() -> None:
    """A handover killed before it removed its guard does not black-hole new connections for
    good: the guarded VIPs are set elements with a timeout."""
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", EXPIRY_PROBE, guard_script(["127.0.0.9"], lifetime=1), "127.0.0.9"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert guarded(lines[0]) == ["127.0.0.9"]
    assert lines[1:3] == ["dropped while guarded", "accepted after the guard expired, its table still there"]
    assert guarded(lines[3]) == []


def test_guard_lifetime_must_be_whole_seconds() -> None:
    with pytest.raises(ValueError):
        guard_script(["127.0.0.9"], lifetime=0)
