"""HAProxy's part of the model (proxytier:haproxy and each site's frontend and backend): the
global settings, timeouts and health checks, one frontend per site binding every VIP, and one
backend per site with every member's nginx as a server (the server name is the member id).

Sites sharing a port (routed by host name) share one frontend and one backend named after the
port (``fe_port443``/``be_port443``, proxytier_sites.port_groups): HAProxy passes Host unchanged
and nginx picks the site; on a TLS port the bind loads a crt-list (proxytier_tls.crt_list) so each
SNI name gets its site's certificate.

Facts used (FIELD-NOTES): `observe layer4 error-limit N on-error MODE` marks a server by live
traffic; `option dontlog-normal` logs only abnormal requests.
"""

from __future__ import annotations

from typing import Any

from proxytier_schema import choice, duration, extra, integer, join_hostport, port
from proxytier_sites import port_groups
from proxytier_tls import alpn

HAPROXY_DEFAULTS: dict[str, Any] = {
    "monitor_port": 8405,
    "maxconn": None,
    # threads of the one HAProxy process: auto (HAProxy's own: one per CPU it may run on) or a number.
    # Fewer than the CPUs when the node does not own them: on the lab's 2 CPUs shared by 3 nodes, 1
    # thread took 29.9 us of CPU per request against 38.1 with 2, and gave 1.10x the requests/s at 8
    # connections (bench/throughput --variants, BENCHMARKS.md section throughput-trims)
    "nbthread": "auto",
    "retries": 2,
    # nginx logs every request (its access log and the exporter's stream); HAProxy logs the
    # abnormal ones (errors, retries, redispatches, aborts) unless told "all"
    "log_requests": "abnormal",
    "timeouts": {
        "connect": "500ms",  # LAN: a dead node's nginx costs 0.5 s, then a retry elsewhere
        "client": "30s",
        "server": "30s",
        "http_request": "10s",
        "http_keep_alive": "10s",
        "queue": "10s",
        "check": "500ms",
    },
    "check": {
        "inter": "1s",
        "fastinter": "250ms",
        "downinter": "1s",
        "fall": 2,
        "rise": 2,
        # mark-down: live traffic marks a server down after error_limit connection errors in a row,
        # before the health checks' `fall` (bench/failover, section failover-on-error: an unplugged
        # node's outage, "none" against "mark-down"); 100 reloads of every daemon under load with it
        # failed 0 of 1,484,604 requests (bench/reload, section reload-on-error-mark-down)
        "on_error": "mark-down",
        "error_limit": 3,
    },
    "extra": {"global": [], "defaults": []},
}

ON_ERROR = ("mark-down", "sudden-death", "fail-check", "fastinter", "none")


def haproxy(
    raw: dict[str, Any], sites: list[dict[str, Any]], members: list[dict[str, str]], vips: list[str], health_path: str,
    crt_lists: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """proxytier:haproxy (merged with its defaults) and the sites -> HAProxy's model.
    crt_lists: the crt-lists of the shared TLS ports ({"group", "path", ...})."""
    path: tuple[Any, ...] = ("haproxy",)
    groups = port_groups(sites)
    lists = {c["group"]: c["path"] for c in crt_lists or []}
    return {
        "monitor_port": port(raw["monitor_port"], (*path, "monitor_port")),
        "maxconn": None
        if raw["maxconn"] is None
        else integer(raw["maxconn"], (*path, "maxconn"), 1, 10_000_000, "maxconn"),
        "nbthread": _nbthread(raw["nbthread"]),
        "retries": integer(raw["retries"], (*path, "retries"), 0, 10, "retries"),
        "log_requests": choice(
            raw["log_requests"], (*path, "log_requests"), ("abnormal", "all"),
            "abnormal (errors, retries, redispatches, aborts: nginx logs every request) or all",
        ),
        "timeouts": {k: duration(v, (*path, "timeouts", k)) for k, v in raw["timeouts"].items()},
        "check": _check(raw["check"]),
        "extra": extra(raw["extra"], (*path, "extra")),
        "frontends": [
            _frontend(g["sites"][0], vips) if len(g["sites"]) == 1 else _shared_frontend(g, vips, lists)
            for g in groups
        ],
        "backends": [
            _backend(g["sites"][0], members, health_path) if len(g["sites"]) == 1
            else _shared_backend(g, members, health_path)
            for g in groups
        ],
    }


def _nbthread(value: Any) -> str:
    """'auto' or 1..64 (HAProxy 2.6's MAX_THREADS on 64-bit builds; its `nbthread` refuses more)."""
    if value == "auto":
        return "auto"
    return str(integer(value, ("haproxy", "nbthread"), 1, 64, "nbthread ('auto' or)"))


def _check(raw: dict[str, Any]) -> dict[str, Any]:
    path = ("haproxy", "check")
    on_error = choice(
        raw["on_error"], (*path, "on_error"), ON_ERROR,
        "one of " + ", ".join(ON_ERROR) + " (what HAProxy does after error_limit connection errors in a row "
        "to a server; none: only health checks mark it down)",
    )
    return {
        "inter": duration(raw["inter"], (*path, "inter"), min_ms=1),
        "fastinter": duration(raw["fastinter"], (*path, "fastinter"), min_ms=1),
        "downinter": duration(raw["downinter"], (*path, "downinter"), min_ms=1),
        "fall": integer(raw["fall"], (*path, "fall"), 1, 100, "fall"),
        "rise": integer(raw["rise"], (*path, "rise"), 1, 100, "rise"),
        "on_error": on_error,
        "error_limit": integer(raw["error_limit"], (*path, "error_limit"), 1, 1000, "error_limit"),
    }


def _frontend(s: dict[str, Any], vips: list[str]) -> dict[str, Any]:
    binds = [{"address": join_hostport(v, s["port"]), "tls": False} for v in vips]
    if s["tls"]:
        binds += [{"address": join_hostport(v, s["tls"]["port"]), "tls": True, "crt": s["tls"]["crt"],
                   "alpn": alpn(s["tls"])} for v in vips]
    return {
        "name": f"fe_{s['name']}",
        "backend": f"be_{s['name']}",
        "binds": binds,
        "tls": bool(s["tls"]),
        "redirect_http": bool(s["tls"] and s["tls"]["redirect_http"]),
        "hsts": s["tls"]["hsts"] if s["tls"] else None,
        "client_address": s["client_address"],
        "extra": s["extra"]["frontend"],
    }


def _backend(s: dict[str, Any], members: list[dict[str, str]], health_path: str) -> dict[str, Any]:
    return {
        "name": f"be_{s['name']}",
        "check_path": s["health_check_path"] or health_path,
        "check_status": s["health_check_status"],
        "send_proxy": s["client_address"] == "proxy_v2",
        "servers": [{"name": m["id"], "address": join_hostport(m["address"], s["nginx_port"])} for m in members],
        "extra": s["extra"]["backend"],
        "server_extra": " ".join(s["extra"]["server"]),
    }


def _shared_frontend(g: dict[str, Any], vips: list[str], crt_lists: dict[str, str]) -> dict[str, Any]:
    """The one frontend of sites sharing a port: they agree on port, TLS port, redirect and client
    address (check_groups); their `extra.frontend` lines go here in site order."""
    first = g["sites"][0]
    binds = [{"address": join_hostport(v, first["port"]), "tls": False} for v in vips]
    if first["tls"]:
        binds += [{"address": join_hostport(v, first["tls"]["port"]), "tls": True, "crt_list": crt_lists[g["name"]],
                   "alpn": alpn(first["tls"])} for v in vips]
    return {
        "name": f"fe_{g['name']}",
        "backend": f"be_{g['name']}",
        "binds": binds,
        "tls": bool(first["tls"]),
        "redirect_http": bool(first["tls"] and first["tls"]["redirect_http"]),
        "hsts": first["tls"]["hsts"] if first["tls"] else None,
        "client_address": first["client_address"],
        "extra": [line for s in g["sites"] for line in s["extra"]["frontend"]],
    }


def _shared_backend(g: dict[str, Any], members: list[dict[str, str]], health_path: str) -> dict[str, Any]:
    """Every member's nginx on the port's one nginx port, checked at nginx's own health path."""
    first = g["sites"][0]
    return {
        **_backend(first, members, health_path),
        "name": f"be_{g['name']}",
        "extra": [line for s in g["sites"] for line in s["extra"]["backend"]],
        "server_extra": " ".join(line for s in g["sites"] for line in s["extra"]["server"]),
    }
