"""nginx's part of the model (proxytier:nginx and each site's server block and upstream): nginx
listens on the node's own address (never a VIP), trusts X-Forwarded-For / PROXY v2 only from the
tier's HAProxies (members and VIPs), and balances each site over its application backends.

Sites sharing a port (routed by host name) are server blocks on one nginx port, told apart by
``server_name`` (nginx prefers an exact name to a wildcard by itself). A Host no site of the port
claims is answered ``421 Misdirected Request`` by the port's ``default_server`` (unless a site is
the port's `default`): RFC 9110 15.5.20, the status that tells a client (an HTTP/2 client that
reuses one connection for every name its certificate covers, RFC 9113 9.1.1) to retry on a new
connection, instead of serving it some site it did not ask for.
"""

from __future__ import annotations

import re
from typing import Any

from proxytier_schema import choice, extra, fail, integer, join_hostport, port
from proxytier_sites import port_groups

NGINX_DEFAULTS: dict[str, Any] = {
    "worker_processes": "auto",
    "worker_connections": 4096,
    # the operator's access log (/var/log/nginx/access.log, combined, buffered) beside the exporter's;
    # off: no access.log. Buffered, it costs no measurable CPU per request (bench/throughput --variants,
    # BENCHMARKS.md section throughput-trims: off gave 0.95x the requests/s at 8 connections, noise)
    "access_log": "combined",
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
    pools: list[dict[str, Any]] | None = None,
    my_address6: str | None = None,
) -> dict[str, Any]:
    """proxytier:nginx (merged with its defaults) and the sites -> nginx's model for this node.

    my_address6: the node's IPv6 address beside its IPv4 `my_address` (members' address6), or
    None. With it, every listener is also on that address: a site's (and a 421 server's)
    `listen6` and `listen6_also` (its `listen` and `listen_also` on the IPv6 address); the keys
    are there only then. `trusted` (set_real_ip_from) holds every address HAProxy connects from:
    members' addresses of both families and the VIPs.

    previous: {site name: [nginx ports]} as the last apply configured them (the node's record).
    A site whose nginx port changed keeps listening on its previous port too (`listen_also`) until
    the next apply: the HAProxies of the tier switch to the new port one node at a time, and
    until the last one has, some still send to the old port. Ports in `taken` (another listener of
    the new configuration) are never kept. Sites sharing a port keep the union of their ports.

    pools: proxytier:upstreams (proxytier_sites.upstreams), rendered as upstreams ``pool_<name>``.
    The keys `upstreams` (pools) and `misdirected` (the 421 servers) are there only when the
    pillar has pools or host-routed ports, and a site's `server_names`, `default_server` and
    `routes` only when it has hosts or routes: a pillar without them has the model it always had."""
    path: tuple[Any, ...] = ("nginx",)
    pools = pools or []
    kept: dict[str, list[int]] = {}
    misdirected = []
    for g in port_groups(sites):
        ports = sorted({p for s in g["sites"] for p in _kept_ports(s, previous or {}, taken or set())})
        kept.update({s["name"]: ports for s in g["sites"]})
        if g["hosts"] and g["default"] is None:
            first = g["sites"][0]
            misdirected.append({
                "listen": join_hostport(my_address, first["nginx_port"]),
                "listen_also": [join_hostport(my_address, p) for p in ports],
                **_listen6(my_address6, first["nginx_port"], ports),
                "proxy_protocol": first["client_address"] == "proxy_v2",
            })
    out = {
        "worker_processes": _worker_processes(raw["worker_processes"]),
        "access_log": choice(
            raw["access_log"], (*path, "access_log"), ("combined", "off"),
            "combined (nginx's access.log for operators, beside the exporter's log) or off",
        ),
        "worker_connections": integer(
            raw["worker_connections"], (*path, "worker_connections"), 16, 1_000_000, "worker_connections"
        ),
        "status_port": port(raw["status_port"], (*path, "status_port")),
        "health_path": health_path(raw["health_path"]),
        "real_ip_from": trusted,
        "extra": extra(raw["extra"], (*path, "extra")),
        "sites": [_site(s, my_address, kept[s["name"]], {p["name"]: p for p in pools}, my_address6) for s in sites],
        # what the node records once the apply succeeded: the next apply's `previous`
        "ports_record": {s["name"]: [s["nginx_port"]] for s in sites},
        "site_map": site_map(sites, kept),
    }
    if pools:  # named pools (proxytier:upstreams) routes send to
        out["upstreams"] = [
            {"name": pool_upstream(p["name"]), "servers": p["servers"], "keepalive": p["keepalive"]} for p in pools
        ]
    if misdirected:  # per host-routed nginx port without a default site: 421 for unclaimed Host names
        out["misdirected"] = misdirected
    return out


def site_map(sites: list[dict[str, Any]], kept: dict[str, list[int]]) -> list[dict[str, str]]:
    """Which site a request went to, as nginx can tell for every request it logs (the per-site metrics
    of proxytier-exporter, log field ``site``): ``map "$server_port $server_name" $proxytier_site``
    -> [{"key": "<nginx port> <first server_name>", "site": name}], for the site's nginx port and the
    ports it still listens on (`kept`). Unique: a site without hosts owns its port (server_name
    ``_``), host names are unique per port. Everything else (the 421 server ``_`` of a host-routed
    port) maps to "": the exporter's ``__unclaimed__``. $server_name is the first name of the server
    block that took the request, also for a request nginx refused before any location (400, 408),
    which is why this is a map and not a ``set`` in each server (nginx warns for every request
    logged with a variable its rewrite phase never set)."""
    out = []
    for s in sites:
        name = s["hosts"][0] if s["hosts"] else "_"
        for p in [s["nginx_port"], *kept[s["name"]]]:
            out.append({"key": f"{p} {name}", "site": s["name"]})
    return out


def pool_upstream(pool: str) -> str:
    """The nginx upstream of a named pool (a site's own pool is ``up_<site>``: no clash)."""
    return f"pool_{pool}"


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


def _listen6(my_address6: str | None, nginx_port: int, kept: list[int]) -> dict[str, Any]:
    """{"listen6", "listen6_also"} on the node's IPv6 address beside its IPv4 one; {} without."""
    if my_address6 is None:
        return {}
    return {
        "listen6": join_hostport(my_address6, nginx_port),
        "listen6_also": [join_hostport(my_address6, p) for p in kept],
    }


def _site(
    s: dict[str, Any], my_address: str, kept: list[int], pools: dict[str, dict[str, Any]], my_address6: str | None
) -> dict[str, Any]:
    out = {
        "name": s["name"],
        # the site's own pool (its backends: the route '/'); None when a route '/' goes to a named pool
        "upstream": f"up_{s['name']}" if s["servers"] else None,
        "listen": join_hostport(my_address, s["nginx_port"]),
        "listen_also": [join_hostport(my_address, p) for p in kept],
        **_listen6(my_address6, s["nginx_port"], kept),
        "proxy_protocol": s["client_address"] == "proxy_v2",
        "servers": s["servers"],
        "keepalive": s["keepalive"],
        "timeouts": s["timeouts"],
        "next_upstream_tries": s["next_upstream_tries"],
        "extra": {k: s["extra"][k] for k in ("location", "upstream")},
    }
    if s["hosts"]:
        out["server_names"] = s["hosts"]
        out["default_server"] = s["default"]
    if s["routes"]:
        out["routes"] = [_route(r, pools[r["upstream"]]) for r in s["routes"]]
    return out


def _route(r: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    """A path prefix as nginx locations: ``/api`` is ``location = /api`` plus ``location /api/``
    (so /api and /api/... match, /apiary does not); ``/`` is ``location /``. Longest prefix wins
    (nginx's own rule for prefix locations), whatever the order."""
    root = r["path"] == "/"
    return {
        "path": r["path"],
        "exact": None if root else r["path"],
        "prefix": "/" if root else r["path"] + "/",
        "upstream": pool_upstream(pool["name"]),
        "timeouts": pool["timeouts"],
        "next_upstream_tries": pool["next_upstream_tries"],
    }
