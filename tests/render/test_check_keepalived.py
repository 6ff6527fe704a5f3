"""check-keepalived (the keepalived.conf check_cmd) on Debian 12's keepalived 2.2.7, whose `-t`
exits 143 whenever a non-root script_user is set: a good config with an existing script_user
passes, a missing script_user or a broken config fails with the reason."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from formula import FORMULA

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("keepalived", "unshare")), reason="needs keepalived and unshare"
)

CONF = """global_defs {
    router_id t
    script_user USER
    enable_script_security
}
vrrp_script chk {
    script "CHECK 8405"
    interval 1
    weight 0
}
vrrp_instance VI_1 {
    state BACKUP
    interface IFACE
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        198.18.0.200/24
    }
    track_script {
        chk
    }
}
"""


def check(tmp_path: Path, user: str, iface: str = "host0") -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "keepalived.conf"
    check_script = FORMULA / "files" / "check-haproxy"
    conf.write_text(CONF.replace("USER", user).replace("IFACE", iface).replace("CHECK", str(check_script)))
    setup = "ip link add host0 type veth peer name host0p && ip link set host0 up && exec \"$@\""
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", setup, "sh", str(FORMULA / "files" / "check-keepalived"), str(conf)],
        capture_output=True, text=True, timeout=60,
    )


def test_existing_unprivileged_script_user_passes(tmp_path: Path) -> None:
    proc = check(tmp_path, "nobody")
    assert proc.returncode == 0, proc.stderr


def test_missing_script_user_fails(tmp_path: Path) -> None:
    proc = check(tmp_path, "proxytier-no-such-user")
    assert proc.returncode != 0
    assert "Error setting global script uid/gid" in proc.stderr  # keepalived's own words


def test_broken_config_still_fails_with_an_unprivileged_script_user(tmp_path: Path) -> None:
    proc = check(tmp_path, "nobody", iface="nosuchif0")
    assert proc.returncode != 0, proc.stderr
    assert "rejected the staged configuration" in proc.stderr
