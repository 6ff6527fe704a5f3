"""HAProxy's saved server states (kept across reloads) never bring back an address or port the new
configuration no longer has: the real HAProxy of this distribution is started from a saved state
and a changed configuration, and its live servers are compared with that configuration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxytier_runtime import live_differences, servers_state, state_to_keep, unix_command

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (make test installs it)")


def config(tmp: Path, app_port: int) -> str:
    return f"""
global
    stats socket {tmp}/admin.sock mode 600 level admin
    server-state-file {tmp}/state
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
    load-server-state-from-file global
backend be_app
    server proxy1 127.0.0.1:{app_port}
    server proxy2 127.0.0.1:{app_port + 1}
backend be_api
    server proxy1 127.0.0.1:18200
"""


def model(app_port: int) -> dict:
    """The part of the model these functions read: backends and their servers."""
    return {"haproxy": {"backends": [
        {"name": "be_app", "servers": [{"name": "proxy1", "address": f"127.0.0.1:{app_port}"},
                                       {"name": "proxy2", "address": f"127.0.0.1:{app_port + 1}"}]},
        {"name": "be_api", "servers": [{"name": "proxy1", "address": "127.0.0.1:18200"}]},
    ]}}


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[callable]:
    pids: list[int] = []

    def start(app_port: int) -> str:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        pids.clear()
        (tmp_path / "h.cfg").write_text(config(tmp_path, app_port))
        proc = subprocess.run(["haproxy", "-D", "-p", str(tmp_path / "pid"), "-f", str(tmp_path / "h.cfg")],
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode == 0, proc.stderr
        pids.append(int((tmp_path / "pid").read_text().split()[0]))
        sock = str(tmp_path / "admin.sock")
        deadline = time.monotonic() + 5
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        return sock

    yield start
    for pid in pids:
        os.kill(pid, signal.SIGTERM)


def admin_state(sock: str) -> dict[tuple[str, str], str]:
    return {(r["be_name"], r["srv_name"]): r["srv_admin_state"]
            for r in servers_state(unix_command(sock, "show servers state"))}


def test_raw_saved_state_keeps_the_old_port(haproxy, tmp_path: Path) -> None:
    """The fault this guards against, on the real daemon: the saved port wins over the config."""
    sock = haproxy(8080)
    (tmp_path / "state").write_text(unix_command(sock, "show servers state"))
    sock = haproxy(8090)
    diffs = live_differences(unix_command(sock, "show servers state"), model(8090))
    assert diffs and "be_app/proxy1: runs at 127.0.0.1:8080, configured at 127.0.0.1:8090" in diffs, diffs


def test_filtered_state_starts_changed_servers_from_the_config_and_keeps_the_rest(haproxy, tmp_path: Path) -> None:
    sock = haproxy(8080)
    assert unix_command(sock, "set server be_api/proxy1 state drain").strip() == ""
    assert unix_command(sock, "set server be_app/proxy1 state maint").strip() == ""
    keep, dropped = state_to_keep(unix_command(sock, "show servers state"), model(8090))
    assert sorted(d.split(":")[0] for d in dropped) == ["be_app/proxy1 at 127.0.0.1", "be_app/proxy2 at 127.0.0.1"]
    (tmp_path / "state").write_text(keep)
    sock = haproxy(8090)
    assert live_differences(unix_command(sock, "show servers state"), model(8090)) == []
    states = admin_state(sock)
    assert states[("be_api", "proxy1")] == "8", "the drain set at run time on an unchanged server survives"
    assert states[("be_app", "proxy1")] == "0", "a server whose port changed starts from its configuration"


def test_live_differences_names_missing_and_extra_servers() -> None:
    head = "1\n# be_id be_name srv_id srv_name srv_addr srv_port\n"
    text = head + "2 be_app 1 proxy1 127.0.0.1 8080\n2 be_app 3 proxy9 127.0.0.1 9000\n"
    assert live_differences(text, model(8080)) == [
        "be_app/proxy2: configured at 127.0.0.1:8081, not running",
        "be_api/proxy1: configured at 127.0.0.1:18200, not running",
        "be_app/proxy9: running at 127.0.0.1:9000, not configured",
    ]
