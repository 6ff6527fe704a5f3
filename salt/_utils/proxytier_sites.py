"""The sites (proxytier:sites): what clients reach on a VIP port, the nginx port behind it, how
the client address is passed (X-Forwarded-For or PROXY v2), the health check, timeouts and the
application backends (nginx upstream servers). Validated once here; HAProxy's and nginx's parts
of the model read the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxytier_schema import (
    ProxytierError,
    boolean,
    extra,
    fail,
    hostport,
    integer,
    join_hostport,
    key,
    merge,
    name,
    nginx_duration,
    nginx_seconds,
    port,
    request_target,
)
from proxytier_tls import tls

SITE_DEFAULTS: dict[str, Any] = {
    "name": None,
    "port": 80,
    "nginx_port": 8080,
    "client_address": "forwardfor",
    "health_check": {"path": None, "expect_status": 200},
    "timeouts": {"connect": "2s", "read": "30s", "send": "30s"},
    "keepalive": 32,
    "next_upstream_tries": 3,
    "tls": None,
    "backends": [],
    "extra": {"frontend": [], "backend": [], "server": [], "location": [], "upstream": []},
}

BACKEND_DEFAULTS: dict[str, Any] = {
    "address": None,
    "weight": 1,
    "backup": False,
    "max_fails": 3,
    "fail_timeout": "10s",
}


def sites(raw_sites: Any, params: dict[str, Any], file_exists: Callable[[str], bool]) -> list[dict[str, Any]]:
    """proxytier:sites -> validated sites, in the order given; names are unique."""
    if not isinstance(raw_sites, list) or not raw_sites:
        raise fail(("sites",), raw_sites, "list at least one site: [{name: app, backends: [{address: host:port}]}]")
    tls_dir = params.get("tls_dir", "/etc/haproxy/proxytier-tls")
    out, names = [], {}
    for i, raw in enumerate(raw_sites):
        site = _site(raw, ("sites", i), tls_dir, file_exists)
        if site["name"] in names:
            raise fail(
                ("sites", i, "name"), site["name"], f"already used by proxytier:sites:{names[site['name']]}; "
                "site names are unique"
            )
        names[site["name"]] = i
        out.append(site)
    return out


def _site(raw: Any, path: tuple[Any, ...], tls_dir: str, file_exists: Callable[[str], bool]) -> dict[str, Any]:
    s = merge(SITE_DEFAULTS, raw, path)
    site_name = name(s["name"], (*path, "name"), "a site")
    if s["client_address"] not in ("forwardfor", "proxy_v2"):
        raise fail(
            (*path, "client_address"),
            s["client_address"],
            "'forwardfor' (X-Forwarded-For, keeps connection reuse) or 'proxy_v2' (PROXY protocol v2)",
        )
    hc = s["health_check"]
    hc_path = hc["path"]
    if hc_path is not None:
        request_target(hc_path, (*path, "health_check", "path"))
    return {
        "name": site_name,
        "port": port(s["port"], (*path, "port")),
        "nginx_port": port(s["nginx_port"], (*path, "nginx_port")),
        "client_address": s["client_address"],
        "health_check_path": hc_path,
        "health_check_status": integer(
            hc["expect_status"], (*path, "health_check", "expect_status"), 100, 599, "an HTTP status"
        ),
        "timeouts": {k: nginx_duration(v, (*path, "timeouts", k)) for k, v in s["timeouts"].items()},
        "keepalive": integer(s["keepalive"], (*path, "keepalive"), 0, 10000, "keepalive connections"),
        "next_upstream_tries": integer(s["next_upstream_tries"], (*path, "next_upstream_tries"), 0, 100, "tries"),
        "servers": _servers(s["backends"], path),
        "tls": tls(s["tls"], (*path, "tls"), site_name, tls_dir, file_exists),
        "extra": extra(s["extra"], (*path, "extra")),
        "path": path,
    }


def _servers(backends: Any, path: tuple[Any, ...]) -> list[dict[str, Any]]:
    if not isinstance(backends, list) or not backends:
        raise fail((*path, "backends"), backends, "a site needs at least one backend: [{address: host:port}]")
    servers, seen = [], {}
    for j, rb in enumerate(backends):
        bpath = (*path, "backends", j)
        b = merge(BACKEND_DEFAULTS, {"address": rb} if isinstance(rb, str) else rb, bpath)
        host, number = hostport(b["address"], (*bpath, "address"))
        k = f"{host}:{number}"
        if k in seen:
            raise fail((*bpath, "address"), b["address"], f"duplicate of {key((*path, 'backends', seen[k]))}")
        seen[k] = j
        servers.append(
            {
                "address": join_hostport(host, number),
                "weight": integer(b["weight"], (*bpath, "weight"), 1, 1000, "weight"),
                "backup": boolean(b["backup"], (*bpath, "backup")),
                "max_fails": integer(b["max_fails"], (*bpath, "max_fails"), 0, 1000, "max_fails"),
                "fail_timeout": nginx_seconds(b["fail_timeout"], (*bpath, "fail_timeout")),
            }
        )
    if all(sv["backup"] for sv in servers):
        addresses = [sv["address"] for sv in servers]
        raise fail((*path, "backends"), addresses, "every backend is a backup; make one primary")
    return servers


def check_ports(sites_: list[dict[str, Any]], fixed: list[tuple[int, tuple[Any, ...]]]) -> set[int]:
    """Every listener of the tier on its own port: `fixed` (port, key path) pairs first, then each
    site's port, nginx_port and TLS port. Raises naming both claimants; returns the ports used."""
    used: dict[int, str] = {}
    claims = list(fixed)
    for s in sites_:
        claims += [(s["port"], (*s["path"], "port")), (s["nginx_port"], (*s["path"], "nginx_port"))]
        if s["tls"]:
            claims.append((s["tls"]["port"], (*s["path"], "tls", "port")))
    for number, path in claims:
        where = key(path)
        if number in used:
            raise ProxytierError(
                f"{where} = {number}: port clash with {used[number]}; every listener of the tier needs its own port"
            )
        used[number] = where
    return set(used)
