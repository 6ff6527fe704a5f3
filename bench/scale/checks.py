"""The biggest case's rendered files checked by the real daemons once (not timed), the way tests/render
checks them (nginx -t, haproxy -c, the formula's check-keepalived, check-haproxy-crt for the crt-list and
each PEM), but on this host's own network: no network namespace. So where a daemon needs the node's
network the check runs on a copy changed for that only, and says so:
- nginx -t binds its listen addresses: the node's address (198.18.0.x, not on this host) becomes the
  loopback address 127.18.0.<same last byte> in the copy;
- keepalived -t needs the VRRP interface to exist (and refuses lo for VRRP): the node's interface (host0)
  becomes this host's default-route interface in the copy (`interface X` and the VIPs' `dev X`); keepalived
  -t only parses, it sends nothing and adds no address.
haproxy -c binds nothing: its file is checked as rendered, with the crt-list and PEMs written beside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from bench.scale.formula_cost import pem_from_site, render_group
from tests.formula import FORMULA, HOST_CHECK_USER, build_model, os_params

FILES = FORMULA / "files"
TIMEOUT = 120


def loopback_for(address: str) -> str:
    """The loopback address standing in for a node's IPv4 address: 127.18.0.<its last byte>."""
    return "127.18.0." + address.rsplit(".", 1)[1]


def on_loopback(nginx_conf: str, address: str) -> str:
    """nginx.conf with every ``listen <address>:<port>`` on loopback_for(address) instead."""
    return re.sub(rf"(\blisten\s+){re.escape(address)}:", rf"\g<1>{loopback_for(address)}:", nginx_conf)


def host_interface() -> str:
    """This host's default-route interface (/proc/net/route), else its first non-loopback one."""
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 1 and fields[1] == "00000000":
                return fields[0]
    except OSError:
        pass
    others = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    if not others:
        raise RuntimeError("no network interface but lo: keepalived -t cannot check a VRRP instance here")
    return others[0]


def on_interface(keepalived_conf: str, interface: str, other: str) -> str:
    """keepalived.conf with the VRRP interface `interface` named `other` (``interface X``, ``dev X``)."""
    return re.sub(rf"(\b(?:interface|dev)\s+){re.escape(interface)}\b", rf"\g<1>{other}", keepalived_conf)


def _run(cmd: list[str]) -> dict[str, Any]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"ok": False, "output": str(e)}
    return {"ok": res.returncode == 0, "output": (res.stdout + res.stderr).strip()[-2000:]}


def check_node(pillar: dict[str, Any], node: str, mine: dict[str, Any] | None, tmp: Path) -> dict[str, Any]:
    """Render `node`'s files into `tmp` and check them -> {check name: {"ok", "output"}}."""
    tls_dir = tmp / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    params = os_params(libexec_dir=str(FILES), tls_dir=str(tls_dir), **HOST_CHECK_USER)
    model = build_model(pillar, node, mine=mine, params=params)
    pem = pem_from_site(pillar, params)
    for f, text in zip(model["tls_files"], render_group(model, "tls.pem", pem), strict=True):
        Path(f["path"]).write_text(text)
        Path(f["path"]).chmod(0o600)
    lists = []
    for c, text in zip(model.get("crt_lists", []), render_group(model, "crt-list", pem), strict=True):
        Path(c["path"]).write_text(text)
        Path(c["path"]).chmod(0o600)
        lists.append(c["path"])
    address = model["node"]["address"]
    [nginx] = render_group(model, "nginx.conf", pem)
    [haproxy] = render_group(model, "haproxy.cfg", pem)
    [keepalived] = render_group(model, "keepalived.conf", pem)
    paths = {"nginx": tmp / f"{node}-nginx.conf", "haproxy": tmp / f"{node}-haproxy.cfg",
             "keepalived": tmp / f"{node}-keepalived.conf"}
    paths["nginx"].write_text(on_loopback(nginx, address))
    paths["haproxy"].write_text(haproxy)
    paths["keepalived"].write_text(on_interface(keepalived, model["interface"], host_interface()))
    out = {
        "nginx -t": _run(["nginx", "-t", "-q", "-c", str(paths["nginx"])]),
        "haproxy -c": _run(["haproxy", "-c", "-q", "-f", str(paths["haproxy"])]),
        "keepalived -t": _run([str(FILES / "check-keepalived"), str(paths["keepalived"])]),
    }
    for path in lists:
        out[f"crt-list {Path(path).name}"] = _run([str(FILES / "check-haproxy-crt"), "--list", path])
    pems = [_run([str(FILES / "check-haproxy-crt"), f["path"]]) for f in model["tls_files"][:3]]
    if pems:
        out[f"PEM files (first {len(pems)} of {len(model['tls_files'])})"] = {
            "ok": all(p["ok"] for p in pems), "output": "; ".join(p["output"] for p in pems if p["output"])}
    return out
