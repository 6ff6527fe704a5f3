"""The sites (proxytier:sites): what clients reach on a VIP port, the nginx port behind it, how
the client address is passed (X-Forwarded-For or PROXY v2), the health check, timeouts and the
application backends (nginx upstream servers). Validated once here; HAProxy's and nginx's parts
of the model read the result.

Many sites on one port: a site that lists `hosts` answers only those Host names (and SNI names),
so several such sites may share a VIP port; they then share one HAProxy frontend and backend and
one nginx port, and nginx picks the site by its ``server_name``. A site without `hosts` owns its
port alone, as before. Path `routes` send a prefix to a named pool of proxytier:upstreams; a
site's own `backends` are the route '/' to its own pool (``up_<site>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxytier_schema import (
    ProxytierError,
    boolean,
    extra,
    fail,
    host_name,
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
    route_path,
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
    # many sites on one port: the Host (and SNI) names this site answers; [] = it owns its port
    "hosts": [],
    # the site that also answers Host names no site of its port claims (at most one per port)
    "default": False,
    # path prefixes to named pools of proxytier:upstreams: [{path: /api, upstream: api}]
    "routes": [],
    "extra": {"frontend": [], "backend": [], "server": [], "location": [], "upstream": []},
}

#: what an upstream pool (a site's own or a named one) is made of besides its backends
POOL_KEYS = ("timeouts", "keepalive", "next_upstream_tries")

#: proxytier:upstreams: named pools of backends that routes of any site may use
UPSTREAM_DEFAULTS: dict[str, Any] = {
    "name": None,
    "backends": [],
    **{k: SITE_DEFAULTS[k] for k in POOL_KEYS},
}

ROUTE_DEFAULTS: dict[str, Any] = {"path": None, "upstream": None}

BACKEND_DEFAULTS: dict[str, Any] = {
    "address": None,
    "weight": 1,
    "backup": False,
    "max_fails": 3,
    "fail_timeout": "10s",
}


def upstreams(raw_pools: Any) -> list[dict[str, Any]]:
    """proxytier:upstreams -> validated named pools, in the order given; names are unique. Each is
    {"name", "servers", "timeouts", "keepalive", "next_upstream_tries", "path"}, validated as a
    site's own pool is."""
    if raw_pools is None:
        return []
    if not isinstance(raw_pools, list):
        raise fail(("upstreams",), raw_pools, "expected a list of pools: [{name: api, backends: [host:port]}]")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(raw_pools):
        path = ("upstreams", i)
        u = merge(UPSTREAM_DEFAULTS, raw, path)
        pool_name = name(u["name"], (*path, "name"), "an upstream pool")
        for other in out:
            if other["name"] == pool_name:
                raise fail((*path, "name"), pool_name, f"already used by {key(other['path'])}; pool names are unique")
        out.append({"name": pool_name, "servers": _servers(u["backends"], path), **_pool(u, path), "path": path})
    return out


def sites(
    raw_sites: Any, params: dict[str, Any], file_exists: Callable[[str], bool],
    pools: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """proxytier:sites -> validated sites, in the order given; names are unique; sites sharing a
    port agree on what they share (check_groups). `pools`: proxytier:upstreams (upstreams())."""
    if not isinstance(raw_sites, list) or not raw_sites:
        raise fail(("sites",), raw_sites, "list at least one site: [{name: app, backends: [{address: host:port}]}]")
    tls_dir = params.get("tls_dir", "/etc/haproxy/proxytier-tls")
    pool_names = [p["name"] for p in pools or []]
    out, names = [], {}
    for i, raw in enumerate(raw_sites):
        site = validated_site(raw, ("sites", i), tls_dir, file_exists, pool_names)
        if site["name"] in names:
            raise fail(
                ("sites", i, "name"), site["name"], f"already used by proxytier:sites:{names[site['name']]}; "
                "site names are unique"
            )
        names[site["name"]] = i
        out.append(site)
    check_groups(out)
    return out


def _pool(u: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """The settings of an upstream pool other than its backends (a site's own or a named one)."""
    return {
        "timeouts": {k: nginx_duration(v, (*path, "timeouts", k)) for k, v in u["timeouts"].items()},
        "keepalive": integer(u["keepalive"], (*path, "keepalive"), 0, 10000, "keepalive connections"),
        "next_upstream_tries": integer(u["next_upstream_tries"], (*path, "next_upstream_tries"), 0, 100, "tries"),
    }


def _hosts(value: Any, path: tuple[Any, ...]) -> list[str]:
    if not isinstance(value, list):
        raise fail(path, value, "expected a list of host names like [www.example.com, '*.example.com']")
    out: list[str] = []
    for j, h in enumerate(value):
        host = host_name(h, (*path, j))
        if host in out:
            raise fail((*path, j), h, f"duplicate of {key((*path, out.index(host)))}")
        out.append(host)
    return out


def _routes(value: Any, path: tuple[Any, ...], pool_names: list[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise fail(path, value, "expected a list of routes like [{path: /api, upstream: api}]")
    out: list[dict[str, Any]] = []
    for j, raw in enumerate(value):
        rpath = (*path, j)
        r = merge(ROUTE_DEFAULTS, raw, rpath)
        prefix = route_path(r["path"], (*rpath, "path"))
        for k, other in enumerate(out):
            if other["path"] == prefix:
                raise fail((*rpath, "path"), prefix, f"duplicate of {key((*path, k, 'path'))}")
        if r["upstream"] not in pool_names:
            known = ", ".join(pool_names) if pool_names else "none: proxytier:upstreams is empty"
            raise fail(
                (*rpath, "upstream"), r["upstream"],
                f"no pool of that name in proxytier:upstreams (known: {known}); define it there or fix the name",
            )
        out.append({"path": prefix, "upstream": r["upstream"]})
    return out


def validated_site(
    raw: Any, path: tuple[Any, ...], tls_dir: str, file_exists: Callable[[str], bool], pool_names: list[str]
) -> dict[str, Any]:
    """One site of proxytier:sites (`raw`, at key `path`) -> the validated site sites() lists; checks of
    the whole list (unique names, shared ports) are sites()'s. `pool_names`: the proxytier:upstreams
    pool names its routes may use."""
    s = merge(SITE_DEFAULTS, raw, path)
    site_name = name(s["name"], (*path, "name"), "a site")
    hosts = _hosts(s["hosts"], (*path, "hosts"))
    routes = _routes(s["routes"], (*path, "routes"), pool_names)
    if boolean(s["default"], (*path, "default")) and not hosts:
        raise fail(
            (*path, "default"), True, "only a site with hosts can be its port's default (a site without "
            "hosts owns its port and answers every Host already); list its hosts or remove default",
        )
    root = [j for j, r in enumerate(routes) if r["path"] == "/"]
    if root and s["backends"]:
        raise fail(
            (*path, "routes", root[0], "path"), "/", f"the site's backends ({key((*path, 'backends'))}) are "
            "already its route '/': give backends or a route for '/', not both",
        )
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
    if hosts and hc_path is not None:
        raise fail(
            (*path, "health_check", "path"), hc_path, "a site routed by host name is checked at "
            "nginx.health_path (HAProxy's check names no site's host); leave health_check.path unset",
        )
    return {
        "name": site_name,
        "port": port(s["port"], (*path, "port")),
        "nginx_port": port(s["nginx_port"], (*path, "nginx_port")),
        "client_address": s["client_address"],
        "health_check_path": hc_path,
        "health_check_status": integer(
            hc["expect_status"], (*path, "health_check", "expect_status"), 100, 599, "an HTTP status"
        ),
        **_pool(s, path),
        # the site's own pool (route '/'); [] when a route '/' goes to a named pool instead
        "servers": [] if root else _servers(s["backends"], path, routes=True),
        "tls": tls(s["tls"], (*path, "tls"), site_name, tls_dir, file_exists, hosts),
        "extra": extra(s["extra"], (*path, "extra")),
        "hosts": hosts,
        "default": s["default"],
        "routes": routes,
        "path": path,
    }


def _servers(backends: Any, path: tuple[Any, ...], routes: bool = False) -> list[dict[str, Any]]:
    """The backends of a pool (a site's own, or one of proxytier:upstreams) as nginx upstream servers."""
    if not isinstance(backends, list) or not backends:
        fix = "needs at least one backend: [{address: host:port}]"
        if routes:
            fix += ", or a route for '/' to a pool of proxytier:upstreams"
        raise fail((*path, "backends"), backends, ("a site " if path[0] == "sites" else "a pool ") + fix)
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


#: what the sites of a shared port share (one HAProxy frontend and backend, one nginx port):
#: (key path under the site, what it is)
SHARED = (
    (("nginx_port",), "one nginx port"),
    (("client_address",), "one client_address (one HAProxy frontend and backend)"),
    (("health_check", "expect_status"), "one health check (one HAProxy backend)"),
    (("tls",), "TLS on or off"),
    (("tls", "port"), "one TLS port"),
    (("tls", "redirect_http"), "one redirect_http (one HAProxy frontend)"),
    (("tls", "http2"), "one http2 (one ALPN list on the port's bind)"),
    (("tls", "hsts"), "one hsts (one HAProxy frontend)"),
)


def _shared_value(s: dict[str, Any], what: tuple[str, ...]) -> Any:
    if what == ("health_check", "expect_status"):
        return s["health_check_status"]
    if what == ("tls",):
        return bool(s["tls"])
    if what[0] == "tls":
        return s["tls"][what[1]] if s["tls"] else None
    return s[what[0]]


def port_groups(sites_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sites by HAProxy port, in the order of each port's first site: {"name", "port",
    "sites", "hosts": routed by host name, "default": the default site or None}. A group of one
    site is named after it (fe_<site>, be_<site>, as a site owning its port always was); a shared
    port after its TLS port, else its port (``port443``: site names cannot clash with it,
    check_groups refuses a site named so)."""
    by_port: dict[int, list[dict[str, Any]]] = {}
    for s in sites_:
        by_port.setdefault(s["port"], []).append(s)
    out = []
    for number, members in by_port.items():
        first = members[0]
        shared = len(members) > 1
        public = first["tls"]["port"] if first["tls"] else number
        out.append({
            "name": f"port{public}" if shared else first["name"],
            "port": number,
            "sites": members,
            "hosts": bool(first["hosts"]),
            "default": next((s for s in members if s["default"]), None),
        })
    return out


def check_groups(sites_: list[dict[str, Any]]) -> None:
    """Sites sharing a port all route by host name, agree on what they share (SHARED), claim each
    host once, and have at most one default; a shared port's name is no site's name."""
    names = {s["name"]: s for s in sites_}
    for g in port_groups(sites_):
        members = g["sites"]
        if len(members) > 1 or g["hosts"]:
            with_hosts = next((s for s in members if s["hosts"]), None)
            for s in members:
                if not s["hosts"] and with_hosts is not None:
                    raise fail(
                        (*s["path"], "port"), s["port"], f"shared with {key((*with_hosts['path'], 'hosts'))}, "
                        "which routes by host name: every site on a shared port lists its hosts (give this "
                        "site hosts, or a port of its own)",
                    )
        if len(members) == 1 or not g["hosts"]:
            continue  # a site owning its port; sites without hosts on one port clash in check_ports
        first = members[0]
        for s in members[1:]:
            for what, fix in SHARED:
                if _shared_value(s, what) != _shared_value(first, what):
                    if what[0] == "tls" and len(what) > 1 and not (s["tls"] and first["tls"]):
                        continue  # reported as TLS on/off
                    raise fail(
                        (*s["path"], *what), _shared_value(s, what), f"sites sharing port {g['port']} share "
                        f"{fix}: {key((*first['path'], *what))} is {_shared_value(first, what)!r}; make them equal",
                    )
        _check_hosts(members)
        if g["name"] in names:
            raise fail(
                (*names[g["name"]]["path"], "name"), g["name"], f"is the name of shared port {g['port']}'s HAProxy "
                f"frontend (fe_{g['name']}) and backend; rename the site",
            )


def _check_hosts(members: list[dict[str, Any]]) -> None:
    claimed: dict[str, tuple[Any, ...]] = {}
    default: tuple[Any, ...] | None = None
    for s in members:
        for j, h in enumerate(s["hosts"]):
            where = (*s["path"], "hosts", j)
            if h in claimed:
                raise fail(where, h, f"already claimed by {key(claimed[h])} on port {s['port']}; a host name "
                           "belongs to one site per port")
            claimed[h] = where
        if s["default"]:
            if default is not None:
                raise fail((*s["path"], "default"), True, f"{key(default)} is already the default of port "
                           f"{s['port']}; at most one site per port is")
            default = (*s["path"], "default")


def check_ports(sites_: list[dict[str, Any]], fixed: list[tuple[int, tuple[Any, ...]]]) -> set[int]:
    """Every listener of the tier on its own port: `fixed` (port, key path) pairs first, then each
    site's port, nginx_port and TLS port (sites sharing a port, routed by host name, claim them
    once). Raises naming both claimants; returns the ports used."""
    used: dict[int, str] = {}
    claims = list(fixed)
    routed: set[int] = set()  # ports already claimed by their first site routed by host name
    for s in sites_:
        if s["hosts"]:
            if s["port"] in routed:
                continue  # its port group agreed on port, nginx_port and TLS port (check_groups)
            routed.add(s["port"])
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
