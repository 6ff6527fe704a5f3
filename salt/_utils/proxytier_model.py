"""The model: pillar (+ Salt mine) -> one validated view of the tier for one node.

Owns the assembly and the pillar's top level (DEFAULTS): each part is decided by its own module
(members, VRRP, sites and TLS, HAProxy, nginx, exporter) and this one puts them together in the
order their dependencies need (VIPs before mine members, which must not pick a VIP; sites before
HAProxy and nginx). Everything the templates need is in the result; they only loop over it.
Pure Python (standard library and PyYAML): ``build_model`` runs without Salt.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

import proxytier_bgp as bgp_
import proxytier_members as members_
import proxytier_vrrp as vrrp_
from proxytier_exporter_cfg import EXPORTER_DEFAULTS, exporter
from proxytier_firewall import firewall
from proxytier_haproxy import HAPROXY_DEFAULTS, haproxy
from proxytier_nginx import NGINX_DEFAULTS, health_path, nginx
from proxytier_schema import (
    ProxytierError,
    abs_path,
    choice,
    fail,
    merge,
    package_name,
    port,
    unit_name,
    user_name,
)
from proxytier_sites import check_ports, port_groups, sites, upstreams, validated_site
from proxytier_tls import crt_list

#: the kind of each OS parameter (parameters/*.yaml, overridden by proxytier:lookup) that reaches a
#: config file, a unit file or a command: "path" (absolute, safe characters), "glob" (a path with
#: '*'), "user" (a user or group name), "package", "unit" (a systemd service name); a "*" key stands
#: for every key of that mapping. A parameter not listed here must be a plain word (WORD_RE).
PARAM_KINDS: dict[str, Any] = {
    "pkgs": {"*": "package"},
    "services": {"*": "unit"},
    "config": {"*": "path"},
    "bin": {"*": "path"},
    "tls_dir": "path",
    "staging_dir": "path",
    "filter_file": "path",
    "nginx_ports_file": "path",
    "nft": "path",
    "libexec_dir": "path",
    "check_user": "user",
    "haproxy_user": "user",
    "haproxy_group": "user",
    "haproxy_chroot": "path",
    "haproxy_admin_socket": "path",
    "haproxy_stats_socket": "path",
    "haproxy_state_file": "path",
    "nginx_user": "user",
    "nginx_pid": "path",
    "nginx_modules_include": "glob",
    "nginx_mime_types": "path",
    "nginx_log_dir": "path",
    "sysctl_file": "path",
    "vrrp_hold_file": "path",
    "systemd_dropin_dir": "path",
    "restart_on_failure": ["unit"],
    "exporter_pkgs": ["package"],
    "exporter_user": "user",
    "exporter_lib_dir": "path",
    "exporter_run_dir": "path",
    "exporter_log_dir": "path",
    "exporter_state_dir": "path",
    "logrotate_dir": "path",
    "exporter_service": "unit",
    "python3": "path",
    "tmpfiles_dir": "path",
    # vip_mode bgp (proxytier_bgp): BIRD's package, unit, user, files, and the health gate's files
    "bird_pkg": "package",
    "bird_service": "unit",
    "bird_user": "user",
    "bird_group": "user",
    "bird_socket": "path",
    "bird_config": "path",
    "bird_bin": "path",
    "bgp_gate_config": "path",
    "bgp_hold_file": "path",
    "bgp_gate_state_file": "path",
    "ip_bin": "path",
}
_CHECK: dict[str, Callable[[Any, tuple[Any, ...]], Any]] = {
    "path": abs_path,
    "glob": lambda v, p: abs_path(v, p, glob=True),
    "user": user_name,
    "package": package_name,
    "unit": unit_name,
}


def check_params(params: dict[str, Any], kinds: Any = None, path: tuple[Any, ...] = ("lookup",)) -> None:
    """Validate the OS parameters to the grammar of where they are rendered (PARAM_KINDS); an error
    names the parameter as ``proxytier:lookup:<key>`` (where an override is written). Parameters the
    table does not know are checked as plain words, lists and mappings recursively."""
    kinds = PARAM_KINDS if kinds is None else kinds
    if not isinstance(params, dict):
        raise fail(path, params, "expected a mapping of parameters")
    for k, value in params.items():
        kind = kinds.get(k, kinds.get("*")) if isinstance(kinds, dict) else None
        where = (*path, k)
        if isinstance(value, dict):
            check_params(value, kind if isinstance(kind, dict) else {}, where)
        elif isinstance(value, list):
            item_kind = kind[0] if isinstance(kind, list) else None
            for i, item in enumerate(value):
                _check_param(item, item_kind, (*where, i))
        else:
            _check_param(value, kind, where)


def _check_param(value: Any, kind: Any, path: tuple[Any, ...]) -> None:
    if isinstance(kind, str):
        _CHECK[kind](value, path)
    elif isinstance(value, str) and not WORD_RE.fullmatch(value):
        raise fail(path, value, "a parameter is a plain word: letters, digits and _.:/@+=,*- (no spaces or quotes)")
    elif not isinstance(value, (str, int, float, bool, type(None), dict, list)):
        raise ProxytierError(f"proxytier:{':'.join(map(str, path))}: unexpected {type(value).__name__}")


WORD_RE = re.compile(r"[A-Za-z0-9_.:/@+=,*-]*")

DEFAULTS: dict[str, Any] = {
    "lookup": {},
    "vip_mode": "vrrp",
    "interface": "eth0",
    "members": None,
    "members_from_mine": None,
    "vips": [],
    "vip_pool": vrrp_.VIP_POOL_DEFAULTS,
    "dns_name": None,
    "vrrp": vrrp_.VRRP_DEFAULTS,
    "bgp": bgp_.BGP_DEFAULTS,
    "haproxy": HAPROXY_DEFAULTS,
    "nginx": NGINX_DEFAULTS,
    "exporter": EXPORTER_DEFAULTS,
    "sites": [],
    "upstreams": [],
}


def _digest(pem_file: dict[str, str]) -> dict[str, str]:
    """A TLS file without its key material: its path and the sha256 of its contents (so a renewal
    still changes the model)."""
    return {"path": pem_file["path"], "sha256": hashlib.sha256(pem_file["contents"].encode()).hexdigest()}


def build_model(
    pillar: dict[str, Any] | None,
    minion_id: str,
    mine: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    file_exists: Callable[[str], bool] = os.path.exists,
    with_secrets: bool = False,
    nginx_previous: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Validate the `proxytier` pillar and derive what node `minion_id` must render.

    pillar: the content of the `proxytier` pillar key.
    mine: {minion_id: address or [addresses]} when members come from the mine.
    params: OS parameters (proxytier_params.load_params); paths and names are read from it.
    file_exists: checks TLS files named by path on the node.
    with_secrets: False (the default, for everything that may be printed, logged or passed as state
    context): each TLS file is {"path", "sha256"} of its PEM, never the key; True: {"path",
    "contents"}, for the one function that writes the file (``proxytier.tls_pem``).
    nginx_previous: {site: [nginx ports]} the node's last apply configured (its record), so that a
    site whose nginx port changes keeps the old one open until the next apply.
    Raises ProxytierError naming the key path, the value and the fix.
    """
    params = params or {}
    check_params(params)
    cfg = merge(DEFAULTS, pillar, ())
    interface = vrrp_.interface(cfg["interface"], ("interface",))
    bgp_mode = vip_mode(cfg["vip_mode"], pillar)
    nginx_cfg, haproxy_cfg, exporter_cfg = cfg["nginx"], cfg["haproxy"], cfg["exporter"]
    if bgp_mode:
        # every node announces every service address (proxytier_bgp); no VRRP instance, no pool
        bgp = bgp_.settings(cfg["bgp"])
        vip_list = bgp_.service_addresses(cfg["vips"], (pillar or {}).get("vip_pool"))
        pool_list, contested = [], []
        found, source, ignored = members_.members_checked(cfg, mine, {str(v["iface"].ip) for v in vip_list})
        bgp_.check_reach(vip_list, bgp, found)
        bgp_.check_exporter(pillar)
        exporter_cfg = {**exporter_cfg, "keepalived_source": "none"}
    else:
        vip_list, pool_list, contested, (found, source, ignored) = _vips_and_members(cfg, mine, interface)
    me = members_.me(found, minion_id, ignored)
    dns_name = vrrp_.dns_name(cfg["dns_name"])
    vip_addrs = [str(v["iface"].ip) for v in vip_list]
    vrrp = vrrp_.settings(cfg["vrrp"], len(found))
    check_path = health_path(nginx_cfg["health_path"])
    if bgp_mode:
        instances: list[dict[str, Any]] = []
    else:
        vrrp_.check_families(vip_list, vrrp)
        instances = vrrp_.instances(vip_list, found, vrrp, minion_id)
    pools, site_list, crt_lists = _sites(cfg, params, file_exists)
    status_port = port(nginx_cfg["status_port"], ("nginx", "status_port"))
    exp = exporter(exporter_cfg, me["address"], vip_addrs, status_port, params,
                   bgp=bgp_.exporter_sources(params) if bgp_mode else None)
    taken = _listener_ports(haproxy_cfg, status_port, exp, site_list)
    return {
        "params": params,
        "node": me,
        "members": found,
        "members_source": source,
        # minions of the mine target the allow-list kept out: {"id", "address", "why"} (a warning)
        "members_ignored": ignored,
        # bgp mode: every node serves every address at once
        "mode": "active-active" if bgp_mode else "seed" if len(instances) == 1 else "active-active",
        "interface": interface,
        "peers": [m["address"] for m in found if m["id"] != minion_id],
        "vips": vip_addrs,
        # one record per VIP, for round robin (`salt proxy1 proxytier.model` shows them)
        "dns": _dns(vip_addrs, dns_name) if bgp_mode else vrrp_.dns_records(instances, dns_name),
        # proxytier:vip_pool: {member id: its pool VIP}; contested: members whose pool VIP depends
        # on another member staying ({"id", "address", "first_choice", "held_by"}; pin them)
        "vip_pool": {
            "assigned": {v["owner"]: str(v["iface"].ip) for v in pool_list},
            "contested": contested,
        },
        "vrrp": {
            **vrrp,
            "instances": instances,
            "router_id": minion_id,
            # rolling changes hold a node's priority down through this file (proxytier.handover)
            "hold_file": params.get("vrrp_hold_file", "/run/proxytier-vrrp-hold"),
        },
        "haproxy": haproxy(haproxy_cfg, site_list, found, vip_addrs, check_path, crt_lists),
        "nginx": nginx(
            nginx_cfg, site_list, me["address"],
            [m["address"] for m in found] + [m["address6"] for m in found if "address6" in m] + vip_addrs,
            previous=nginx_previous, taken=taken, pools=pools, my_address6=me.get("address6"),
        ),
        "tls_files": [
            s["tls"]["file"] if with_secrets else _digest(s["tls"]["file"])
            for s in site_list if s["tls"] and s["tls"]["file"]
        ],
        "exporter": exp,
        "systemd_dropins": systemd_dropins(params, instances, vrrp=not bgp_mode),
        "firewall": firewall(found, site_list, params, vip_addrs),
        # only with vip_mode bgp: BIRD's configuration and the health gate's (proxytier_bgp), and no
        # VRRP instance above (keepalived is stopped: proxytier.bgp)
        **({"vip_mode": "bgp", "bgp": bgp_.node_bgp(
            bgp, vip_list, me, found, params, port(haproxy_cfg["monitor_port"], ("haproxy", "monitor_port")),
        )} if bgp_mode else {}),
        # the crt-lists of shared TLS ports (paths and host names, no key), only when there are some
        **({"crt_lists": crt_lists} if crt_lists else {}),
        # only in a tier with IPv6 (VIPs or member addresses): HAProxy binds IPv6 VIPs the node does
        # not hold (net.ipv6.ip_nonlocal_bind, proxytier.common)
        **({"ipv6": ipv6_summary(vip_list, found)} if vrrp_.uses_ipv6(vip_list, found) else {}),
    }


def vip_mode(value: Any, pillar: Any) -> bool:
    """proxytier:vip_mode: "vrrp" (the default: keepalived moves each VIP between the nodes) or
    "bgp" (every node announces every address to routers, proxytier_bgp); -> True for bgp. A
    `bgp` section beside vip_mode vrrp is refused (it would silently do nothing)."""
    choice(value, ("vip_mode",), ("vrrp", "bgp"), "'vrrp' (keepalived VIPs, the default) or 'bgp' (every node "
           "announces the addresses to the routers in proxytier:bgp)")
    if value == "vrrp" and isinstance(pillar, dict) and pillar.get("bgp") is not None:
        raise fail(("vip_mode",), value, "proxytier:bgp is set but the VIPs are VRRP's: set vip_mode: bgp, or "
                   "remove the bgp section")
    return value == "bgp"


def _dns(addresses: list[str], name: str | None) -> list[dict[str, Any]]:
    """bgp mode: one record per service address, owned by no node (every node announces it)."""
    return [{"name": name, "type": "AAAA" if ":" in a else "A", "address": a, "owner": None} for a in addresses]


def tls_pem(
    pillar: dict[str, Any] | None,
    path: str,
    params: dict[str, Any] | None = None,
    file_exists: Callable[[str], bool] = os.path.exists,
) -> str:
    """The PEM text (certificate, chain, key) the formula writes at `path`: the same bytes as that
    file's entry of ``build_model(..., with_secrets=True)["tls_files"]``, from the one site that
    writes there, validated as build_model validates it (its routes against proxytier:upstreams).

    tls.sls renders one file per TLS site, each asking for its PEM: building the whole model for
    each made a tier of N TLS sites cost N full models per apply. Only the site whose name gives
    `path` (``<tls_dir>/<site>.pem``) is validated here; the rest of the pillar was validated by the
    model the same run built first (map.jinja). Raises ProxytierError when no site writes `path`."""
    params = params or {}
    cfg = merge(DEFAULTS, pillar, ())
    raw_sites = cfg["sites"] if isinstance(cfg["sites"], list) else []
    tls_dir = params.get("tls_dir", "/etc/haproxy/proxytier-tls")
    pool_names: list[str] | None = None
    for i, raw in enumerate(raw_sites):
        if not isinstance(raw, dict) or f"{tls_dir}/{raw.get('name')}.pem" != path:
            continue
        if pool_names is None:
            pool_names = [p["name"] for p in upstreams(cfg["upstreams"])]
        site = validated_site(raw, ("sites", i), tls_dir, file_exists, pool_names)
        written = site["tls"]["file"] if site["tls"] else None
        if written and written["path"] == path:
            return str(written["contents"])
    raise ProxytierError(f"{path}: no TLS file of this node's model is written there")


def ipv6_summary(vip_list: list[dict[str, Any]], found: list[dict[str, str]]) -> dict[str, Any]:
    """The IPv6 side of a dual-stack or IPv6-only tier: {"vips": [IPv6 VIP addresses], "members":
    {member id: its IPv6 address}} (members without one are left out)."""
    return {
        "vips": [str(v["iface"].ip) for v in vip_list if v["iface"].version == 6],
        "members": {m["id"]: members_.address_of(m, 6) for m in found if members_.address_of(m, 6)},
    }


def _sites(
    cfg: dict[str, Any], params: dict[str, Any], file_exists: Callable[[str], bool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The named pools, the sites (which route to them) and one crt-list per TLS port shared by
    several sites ({"group", "path", "lines"})."""
    pools = upstreams(cfg["upstreams"])
    site_list = sites(cfg["sites"], params, file_exists, pools)
    tls_dir = params.get("tls_dir", "/etc/haproxy/proxytier-tls")
    crt_lists = [
        {"group": g["name"], **crt_list(g, tls_dir)}
        for g in port_groups(site_list) if len(g["sites"]) > 1 and g["sites"][0]["tls"]
    ]
    return pools, site_list, crt_lists


def _vips_and_members(
    cfg: dict[str, Any], mine: dict[str, Any] | None, interface: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], tuple[Any, str, Any]]:
    """VIPs (pillar vips, then the pool's, assigned to the members) and the members: VIPs first,
    since no member may take a VIP (pool addresses included, held or not) as its own address, and
    every member needs an address of each VIP family (members_.check_families).
    -> (all VIPs, the pool's VIPs, contested pool members, (members, source, ignored))."""
    pool = vrrp_.vip_pool(cfg["vip_pool"], interface)
    vip_list = vrrp_.vips(cfg["vips"], interface, pool=bool(pool["slots"]))
    vrrp_.check_unique(vip_list + pool["slots"] + pool["slots6"])
    reserved = {str(v["iface"].ip) for v in vip_list + pool["slots"] + pool["slots6"]}
    membership = members_.members_checked(cfg, mine, reserved)
    members_.check_families(membership[0], vip_list + pool["slots"] + pool["slots6"], membership[1])
    pool_list, contested = vrrp_.pool_vips(pool, membership[0])
    return vip_list + pool_list, pool_list, contested, membership


def _listener_ports(
    haproxy_cfg: dict[str, Any], status_port: int, exp: dict[str, Any], site_list: list[dict[str, Any]]
) -> set[int]:
    """Every listener of the node on its own port (check_ports); -> the ports taken."""
    fixed = [
        (port(haproxy_cfg["monitor_port"], ("haproxy", "monitor_port")), ("haproxy", "monitor_port")),
        (status_port, ("nginx", "status_port")),
    ]
    if exp["enabled"]:
        fixed.append((exp["port"], ("exporter", "port")))
    return check_ports(site_list, fixed)


def systemd_dropins(
    params: dict[str, Any], instances: list[dict[str, Any]], vrrp: bool = True
) -> list[dict[str, Any]]:
    """The systemd drop-ins for the daemons in params `restart_on_failure`: each comes back by
    itself when killed (Restart=always); keepalived stops after HAProxy and nginx on shutdown (so
    its priority-0 advert hands the VIPs over while they still serve) and, however it ends (a
    SIGKILL leaves its addresses behind, FIELD-NOTES), removes its VIPs from the interface.
    `vrrp` False (vip_mode bgp): keepalived does not run, and gets no drop-in; BIRD gets one
    (Debian's unit restarts it only on abort).
    -> [{"service", "path", "after": [units], "exec_stop_post": [command lines]}]."""
    services = params.get("services", {})
    dropin_dir = params.get("systemd_dropin_dir", "/etc/systemd/system")
    out = []
    daemons = list(params.get("restart_on_failure", []))
    if not vrrp:
        daemons = [d for d in daemons if d != "keepalived"] + ["bird"]
    for daemon in daemons:
        service = params.get("bird_service", "bird") if daemon == "bird" else services.get(daemon, daemon)
        after, stop_post = [], []
        if daemon == "keepalived":
            after = [f"{services.get(d, d)}.service" for d in ("haproxy", "nginx")]
            stop_post = [
                f"-ip -{4 if ':' not in i['address'] else 6} addr del {i['cidr']} dev {i['interface']}"
                for i in instances
            ]
        out.append(
            {
                "service": service,
                "path": f"{dropin_dir}/{service}.service.d/proxytier.conf",
                "after": after,
                "exec_stop_post": stop_post,
            }
        )
    return out
