"""The grammar rules checked against the real daemons: what the model accepts, the daemon reads
as written; what the model refuses, the daemon would have misread or refused."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from formula import FORMULA, ProxytierError, build_model, example_pillar
from proxytier_vrrp import AUTH_PASS_RE

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("haproxy", "keepalived", "unshare", "openssl")),
    reason="needs haproxy, keepalived, unshare and openssl",
)


def test_haproxy_cannot_load_an_encrypted_key_and_the_model_refuses_it(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:pw", "-days", "2",
                    "-subj", "/CN=app", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
                   check=True, capture_output=True, timeout=60)
    cert, key = (tmp_path / "c.pem").read_text(), (tmp_path / "k.pem").read_text()
    assert "ENCRYPTED PRIVATE KEY" in key
    (tmp_path / "site.pem").write_text(cert + key)
    res = subprocess.run([str(FORMULA / "files" / "check-haproxy-crt"), str(tmp_path / "site.pem")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0  # HAProxy: "No Private Key found" / unable to load
    p = example_pillar()
    p["sites"][0]["tls"] = {"certificate": cert, "key": key}
    with pytest.raises(ProxytierError, match=r"proxytier:sites:0:tls:key.*unencrypted.*openssl pkey"):
        build_model(p, "proxy1")


def test_keepalived_reads_every_accepted_password_as_written(tmp_path: Path) -> None:
    """One VRRP instance per password; keepalived's data dump (SIGUSR1) shows what it read."""
    chars = "".join(chr(c) for c in range(33, 127) if AUTH_PASS_RE.fullmatch(chr(c)))
    secrets = [chars[i:i + 8] for i in range(0, len(chars), 8)]
    conf = ["global_defs {\n    router_id t1\n}"]
    for i, secret in enumerate(secrets):
        conf.append(
            f"vrrp_instance VI_{i + 1} {{\n    state BACKUP\n    interface host0\n"
            f"    virtual_router_id {i + 1}\n    priority 100\n    advert_int 1\n"
            f"    authentication {{\n        auth_type PASS\n        auth_pass {secret}\n    }}\n"
            f"    virtual_ipaddress {{\n        198.18.0.{101 + i}/24\n    }}\n}}"
        )
    (tmp_path / "k.conf").write_text("\n".join(conf) + "\n")
    script = (
        "ip link add host0 type veth peer name host0p && ip link set host0 up && "
        "ip addr add 198.18.0.11/24 dev host0 && ip link set lo up && export TMPDIR=$0 && "
        "keepalived -n -l -P -f $0/k.conf -p $0/k.pid -r $0/v.pid >$0/log 2>&1 & "
        "for i in $(seq 50); do [ -s $0/v.pid ] && break; sleep 0.1; done; sleep 0.5; "
        "kill -USR1 $(cat $0/k.pid); for i in $(seq 30); do [ -s $0/keepalived.data ] && break; sleep 0.1; done; "
        "sleep 0.3; kill $(cat $0/k.pid); wait"
    )
    subprocess.run(["unshare", "--net", "sh", "-c", script, str(tmp_path)], timeout=60, capture_output=True)
    time.sleep(0.2)
    dump = (tmp_path / "keepalived.data").read_text(errors="replace")
    read = [line.split("Password = ", 1)[1] for line in dump.splitlines() if "Password = " in line]
    assert sorted(read) == sorted(secrets), (read, (tmp_path / "log").read_text())
