"""Pillars of the lab's shape (pillar/proxytier.sls: members from the mine, one pool VIP per member),
grown to N host-routed sites x B backends each.

Every site answers its own host name ``s<i>.scale.example`` on the shared ports 80 (redirected) and 443
(TLS by SNI from one crt-list), the way tests/pillar/vhosts.sls and `python -m lab vhosts` share ports, all
with one wildcard certificate ``*.scale.example`` (made by lab.tlsgen; the model checks it once per site).
Backend k (counting over all sites) is ``198.19.<k // 250>.<k % 250 + 1>:8080``: the benchmarking range
198.18.0.0/15 only, outside the lab's 198.18.0.0/24, so nothing ever answers there (the bench sends no
request to them; nginx and HAProxy only load them).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from lab.tlsgen import make_cert

REPO = Path(__file__).resolve().parents[2]
LAB_PILLAR = REPO / "pillar" / "proxytier.sls"
DOMAIN = "scale.example"
BACKEND_NET = ipaddress.ip_network("198.19.0.0/16")
BACKEND_PORT = 8080
MAX_NODES = 5  # the lab pillar's VIP pool has five addresses


def make_tls() -> tuple[str, str]:
    """(certificate PEM, key PEM): one ECDSA wildcard certificate for every site, valid 2 days from now."""
    return make_cert([f"*.{DOMAIN}"], "ec")


def backend_address(k: int) -> str:
    """The k-th backend (0-based, over all sites) as host:port, in 198.19.0.0/16 (k < 250 * 256)."""
    if not 0 <= k < 250 * 256:
        raise ValueError(f"backend index {k} outside 0..{250 * 256 - 1}")
    address = ipaddress.ip_address(f"198.19.{k // 250}.{k % 250 + 1}")
    assert address in BACKEND_NET
    return f"{address}:{BACKEND_PORT}"


def host(i: int) -> str:
    return f"s{i}.{DOMAIN}"


def scale_pillar(sites: int, backends: int, tls: tuple[str, str] | None) -> dict[str, Any]:
    """The whole pillar SLS document (``mine_functions`` and ``proxytier``), as lab.tier.write_pillar
    takes it: pillar/proxytier.sls with its one site replaced by `sites` sites ``s0..`` of `backends`
    backends each. `tls`: (certificate, key) for every site (make_tls()), or None for plain HTTP on 80."""
    if sites < 1 or backends < 1:
        raise ValueError(f"sites and backends must be >= 1, not {sites} x {backends}")
    data = yaml.safe_load(LAB_PILLAR.read_text())
    base = data["proxytier"]["sites"][0]
    out = []
    for i in range(sites):
        site: dict[str, Any] = {
            "name": f"s{i}", "port": base["port"], "nginx_port": base["nginx_port"], "hosts": [host(i)],
            "backends": [{"address": backend_address(i * backends + j)} for j in range(backends)],
        }
        if tls is not None:
            site["tls"] = {"port": 443, "redirect_http": True, "certificate": tls[0], "key": tls[1]}
        out.append(site)
    data["proxytier"]["sites"] = out
    return data


def lab_mine(nodes: int) -> dict[str, list[str]]:
    """What the lab's mine answers with `nodes` nodes up: proxy<i> -> [198.18.0.(10+i)] (lab.config)."""
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"the lab pillar serves 1..{MAX_NODES} nodes, not {nodes}")
    return {f"proxy{i}": [f"198.18.0.{10 + i}"] for i in range(1, nodes + 1)}

