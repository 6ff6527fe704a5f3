"""nginx's part of the model (proxytier:nginx and each site's server block and upstream): nginx
listens on the node's own address (never a VIP), trusts X-Forwarded-For / PROXY v2 only from the
tier's HAProxies (members and VIPs), and balances each site over its application backends.
"""

from __future__ import annotations

import re
from typing import Any

from proxytier_schema import extra, fail, integer, join_hostport, port

NGINX_DEFAULTS: dict[str, Any] = {
    "worker_processes": "auto",
    "worker_connections": 4096,
    "status_port": 8407,
    "health_path": "/proxytier-health",
    "extra": {"main": [], "events": [], "http": []},
}

HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9/_.-]*")


def health_path(value: Any) -> str:
    """nginx's health path (a location both nginx and HAProxy's http-check read as one token)."""
    if not isinstance(value, str) or not HEALTH_PATH_RE.fullmatch(value):
        raise fail(("nginx", "health_path"), value, "expected an absolute URL path like /proxytier-health")
    return value


def nginx(
    raw: dict[str, Any],
    sites: list[dict[str, Any]],
    my_address: str,
    trusted: list[str],
    previous: dict[str, list[int]] | None = None,
    taken: set[int] | None = None,
) -> dict[str, Any]:
    """proxytier:nginx (merged with its defaults) and the sites -> nginx's model for this node.

    previous: {site name: [nginx ports]} as the last apply configured them (the node's record).
    A site whose nginx port changed keeps listening on its previous port too (`listen_also`) until
    the next apply: the HAProxies of the tier switch to the new port one node at a time, and
    until the last one has, some still send to the old port. Ports in `taken` (another listener of
    the new configuration) are never kept."""
    path: tuple[Any, ...] = ("nginx",)
    return {
        "worker_processes": _worker_processes(raw["worker_processes"]),
        "worker_connections": integer(
            raw["worker_connections"], (*path, "worker_connections"), 16, 1_000_000, "worker_connections"
        ),
        "status_port": port(raw["status_port"], (*path, "status_port")),
        "health_path": health_path(raw["health_path"]),
        "real_ip_from": trusted,
        "extra": extra(raw["extra"], (*path, "extra")),
        "sites": [_site(s, my_address, _kept_ports(s, previous or {}, taken or set())) for s in sites],
        # what the node records once the apply succeeded: the next apply's `previous`
        "ports_record": {s["name"]: [s["nginx_port"]] for s in sites},
    }


def _kept_ports(site: dict[str, Any], previous: dict[str, list[int]], taken: set[int]) -> list[int]:
    ports = previous.get(site["name"], [])
    if not isinstance(ports, list):
        return []
    good = {p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536}
    return sorted(good - {site["nginx_port"]} - taken)


def _worker_processes(value: Any) -> str:
    if value == "auto":
        return "auto"
    return str(integer(value, ("nginx", "worker_processes"), 1, 1024, "worker_processes ('auto' or)"))


def _site(s: dict[str, Any], my_address: str, kept: list[int]) -> dict[str, Any]:
    return {
        "name": s["name"],
        "upstream": f"up_{s['name']}",
        "listen": join_hostport(my_address, s["nginx_port"]),
        "listen_also": [join_hostport(my_address, p) for p in kept],
        "proxy_protocol": s["client_address"] == "proxy_v2",
        "servers": s["servers"],
        "keepalive": s["keepalive"],
        "timeouts": s["timeouts"],
        "next_upstream_tries": s["next_upstream_tries"],
        "extra": {k: s["extra"][k] for k in ("location", "upstream")},
    }
