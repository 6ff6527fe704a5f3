"""The proxytier model: pillar (+ Salt mine) -> a validated view of the tier for one node.

Everything the templates need is decided here: members and their addresses, VRRP
instances with VRIDs and per-node priorities, unicast peers, HAProxy frontends and
backends, nginx upstreams and TLS files. Templates only loop over the result.

`build_model()` is pure Python (no Salt needed) so it can be unit-tested; the Salt
execution function `proxytier.model` wraps it with the minion's pillar, id and mine.

Bad input raises ProxytierError whose message names the pillar key path, the bad
value and the fix, e.g. ``proxytier:vips:1:vrid = 300: VRRP router ids are 1..255``.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any

__virtualname__ = "proxytier"

try:  # inside Salt, surface errors as a clean CommandExecutionError
    from salt.exceptions import CommandExecutionError as _Base
except ImportError:  # pure-Python use (tests, tools)
    _Base = Exception


class ProxytierError(_Base, ValueError):
    """A pillar value the tier cannot be built from; the message says where and how to fix it."""


# ---------------------------------------------------------------------------------------
# Defaults and schema. Every key here is documented in pillar.example at the repo root.
# ---------------------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "lookup": {},
    "interface": "eth0",
    "members": None,
    "members_from_mine": None,
    "vips": [],
    "vrrp": {
        "version": 3,
        "advert_interval": 0.1,
        "priority_base": 150,
        "priority_step": 10,
        "preempt_delay": 0,
        "unicast": True,
        "check_unicast_src": True,
        "auth_pass": None,
        "garp_master_delay": 1,
        "garp_master_refresh": 0,
        "garp_lower_prio_repeat": 3,
        "track": "script",
        "check_interval": 1,
        "check_fall": 1,
        "check_rise": 2,
        "extra": {"global_defs": [], "instance": []},
    },
    "haproxy": {
        "monitor_port": 8405,
        "maxconn": None,
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
            # mark-down: live traffic marks a server down after error_limit connection errors in a
            # row (an unplugged node costs 0.6 s instead of 2.15 s), but under reloads it timed out
            # 12 of 161,612 requests (bench/reload, 15 changes) where "none" failed 0 of 158,874
            "on_error": "none",
            "error_limit": 3,
        },
        "extra": {"global": [], "defaults": []},
    },
    "nginx": {
        "worker_processes": "auto",
        "worker_connections": 4096,
        "status_port": 8407,
        "health_path": "/proxytier-health",
        "extra": {"main": [], "events": [], "http": []},
    },
    "exporter": {
        "enabled": True,
        "port": 8408,
        "keepalived_source": "fifo",
        "max_upstreams": 64,
        "extra_args": [],
    },
    "sites": [],
}

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

TLS_DEFAULTS: dict[str, Any] = {
    "port": 443,
    "certificate": None,
    "key": None,
    "certificate_file": None,
    "key_file": None,
    "redirect_http": False,
}

BACKEND_DEFAULTS: dict[str, Any] = {
    "address": None,
    "weight": 1,
    "backup": False,
    "max_fails": 3,
    "fail_timeout": "10s",
}

VIP_DEFAULTS: dict[str, Any] = {"address": None, "vrid": None, "owner": None, "interface": None}
MEMBER_DEFAULTS: dict[str, Any] = {"id": None, "address": None}
MINE_DEFAULTS: dict[str, Any] = {"target": "*", "tgt_type": "glob", "function": "proxytier_address"}

# Keys that hold "free" mappings: their own keys are not checked against a schema.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DURATION_RE = re.compile(r"^\d+(us|ms|s|m|h|d)?$")
_PRIVATE_KEY_RE = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def _p(path: tuple[Any, ...]) -> str:
    return ":".join(["proxytier", *[str(x) for x in path]])


def _fail(path: tuple[Any, ...], value: Any, fix: str) -> ProxytierError:
    return ProxytierError(f"{_p(path)} = {value!r}: {fix}")


def _merge(defaults: dict[str, Any], given: Any, path: tuple[Any, ...]) -> dict[str, Any]:
    """Defaults overlaid with `given`, refusing unknown keys (with a did-you-mean)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise _fail(path, given, "expected a mapping of keys to values")
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(sorted(defaults))
            raise ProxytierError(f"{_p((*path, key))}: unknown key; {hint}")
        sub = defaults[key]
        if isinstance(sub, dict) and sub:  # a nested section: None means "all defaults"
            out[key] = _merge(sub, value, (*path, key))
        else:
            out[key] = value
    return out


def _int(value: Any, path: tuple[Any, ...], lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(path, value, f"{what} must be a whole number {lo}..{hi}")
    return value


def _port(value: Any, path: tuple[Any, ...]) -> int:
    return _int(value, path, 1, 65535, "a TCP port")


def _bool(value: Any, path: tuple[Any, ...]) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, value, "expected true or false")
    return value


def _duration(value: Any, path: tuple[Any, ...]) -> str:
    text = str(value)
    if isinstance(value, bool) or not _DURATION_RE.match(text):
        raise _fail(path, value, "expected a duration like 500ms, 2s or 1m")
    return text


def _lines(value: Any, path: tuple[Any, ...]) -> list[str]:
    """An `extra` escape hatch: a list of raw config lines, rendered in the given order."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, value, "expected a list of raw configuration lines (strings)")
    for line in value:
        if "\n" in line:
            raise _fail(path, line, "one configuration line per list item (no newlines)")
    return list(value)


def _ip(value: Any, path: tuple[Any, ...]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _fail(path, value, "expected an IP address like 198.18.0.11") from None


def _vip(value: Any, path: tuple[Any, ...]) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    text = str(value).strip()
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise _fail(path, value, "expected an address with optional prefix like 198.18.0.101/24") from None
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        raise _fail(path, value, "a VIP must be a unicast address clients can reach")
    if "/" in text and iface.network.prefixlen < iface.network.max_prefixlen and iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise _fail(path, value, "this is the network or broadcast address of its prefix; pick a host address")
    return iface


def _hostport(value: Any, path: tuple[Any, ...]) -> tuple[str, int]:
    text = str(value).strip()
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([A-Za-z0-9.-]+):(\d+)$", text)
    if not m:
        raise _fail(path, value, "expected host:port like 198.18.0.21:8080 (IPv6 as [addr]:port)")
    host, port = m.group(1), int(m.group(2))
    if not 1 <= port <= 65535:
        raise _fail(path, value, "the port must be 1..65535")
    if ":" in host:
        _ip(host, path)
    return host, port


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


# ---------------------------------------------------------------------------------------
# Members
# ---------------------------------------------------------------------------------------


def _members_from_list(given: Any) -> list[dict[str, str]]:
    path: tuple[Any, ...] = ("members",)
    if not isinstance(given, list) or not given:
        raise _fail(path, given, "list the proxy nodes as [{id: proxy1, address: 198.18.0.11}, ...]")
    members, ids, addrs = [], set(), set()
    for i, raw in enumerate(given):
        m = _merge(MEMBER_DEFAULTS, raw, (*path, i))
        if not isinstance(m["id"], str) or not m["id"]:
            raise _fail((*path, i, "id"), m["id"], "each member needs the minion id it runs on")
        addr = str(_ip(m["address"], (*path, i, "address")))
        if m["id"] in ids:
            raise _fail((*path, i, "id"), m["id"], "member ids must be unique; remove the duplicate")
        if addr in addrs:
            raise _fail((*path, i, "address"), addr, "two members cannot share an address")
        ids.add(m["id"])
        addrs.add(addr)
        members.append({"id": m["id"], "address": addr})
    return members


def _members_from_mine(cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]) -> list[dict[str, str]]:
    path: tuple[Any, ...] = ("members_from_mine",)
    if not mine:
        raise _fail(
            (*path, "target"),
            cfg["target"],
            f"no minion matching it has mine data for '{cfg['function']}'; set mine_functions in pillar "
            "(see pillar.example) and run `salt '*' mine.update`, or list proxytier:members explicitly",
        )
    members = []
    for minion in sorted(mine, key=_natural_key):
        data = mine[minion]
        candidates = data if isinstance(data, list) else [data]
        chosen = None
        for cand in candidates:
            try:
                ip = ipaddress.ip_address(str(cand))
            except ValueError:
                continue
            if str(ip) in vips or ip.is_loopback or ip.is_link_local:
                continue
            chosen = str(ip)
            break
        if chosen is None:
            raise _fail(
                (*path, "function"),
                cfg["function"],
                f"mine data of minion {minion} has no usable address ({data!r}); check its interface",
            )
        members.append({"id": str(minion), "address": chosen})
    return members


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def build_model(
    pillar: dict[str, Any] | None,
    minion_id: str,
    mine: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    file_exists: Callable[[str], bool] = os.path.exists,
) -> dict[str, Any]:
    """Validate the `proxytier` pillar and derive what node `minion_id` must render.

    pillar: the content of the `proxytier` pillar key.
    mine: {minion_id: address or [addresses]} when members come from the mine.
    params: OS parameters from map.jinja (paths, users); only paths are read here.
    """
    params = params or {}
    cfg = _merge(DEFAULTS, pillar, ())
    interface = cfg["interface"]
    if not isinstance(interface, str) or not re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", interface):
        raise _fail(("interface",), interface, "expected a network interface name like eth0")

    # VIPs first: mine members must not pick a VIP as their address.
    raw_vips = cfg["vips"]
    if not isinstance(raw_vips, list) or not raw_vips:
        raise _fail(("vips",), raw_vips, "list at least one VIP: [{address: 198.18.0.101/24, vrid: 51}]")
    vips = []
    for i, raw in enumerate(raw_vips):
        v = _merge(VIP_DEFAULTS, raw, ("vips", i))
        iface = _vip(v["address"], ("vips", i, "address"))
        vrid = v["vrid"]
        if isinstance(vrid, bool) or not isinstance(vrid, int) or not 1 <= vrid <= 255:
            raise _fail(("vips", i, "vrid"), vrid, "VRRP router ids are 1..255; pick an unused one in that range")
        vif = v["interface"] or interface
        vips.append({"iface": iface, "vrid": vrid, "owner": v["owner"], "interface": vif, "index": i})
    seen_addr: dict[str, int] = {}
    seen_vrid: dict[tuple[str, int], int] = {}
    for v in vips:
        a = str(v["iface"].ip)
        if a in seen_addr:
            raise _fail(("vips", v["index"], "address"), a, f"duplicate of proxytier:vips:{seen_addr[a]}; remove one")
        seen_addr[a] = v["index"]
        key = (v["interface"], v["vrid"])
        if key in seen_vrid:
            raise _fail(
                ("vips", v["index"], "vrid"),
                v["vrid"],
                f"already used by proxytier:vips:{seen_vrid[key]} on {v['interface']}; each VIP needs its own VRID",
            )
        seen_vrid[key] = v["index"]

    # Members: an explicit list, or the mine of a target.
    if cfg["members"] is not None and cfg["members_from_mine"] is not None:
        raise ProxytierError(
            "proxytier:members and proxytier:members_from_mine are both set: keep one (an explicit list, or the mine)"
        )
    if cfg["members"] is not None:
        members = _members_from_list(cfg["members"])
        source = "pillar"
    elif cfg["members_from_mine"] is not None:
        mine_cfg = _merge(MINE_DEFAULTS, cfg["members_from_mine"], ("members_from_mine",))
        members = _members_from_mine(mine_cfg, mine, set(seen_addr))
        source = "mine"
    else:
        raise ProxytierError(
            "proxytier:members is not set: list the proxy nodes (members: [{id: proxy1, address: ...}]) "
            "or set members_from_mine: {target: 'proxy*'}"
        )
    ids = [m["id"] for m in members]
    if minion_id not in ids:
        raise ProxytierError(
            f"proxytier:members: minion {minion_id!r} is not a member of the tier ({', '.join(ids)}); "
            "add it to proxytier:members or target the formula only at members"
        )
    me = next(m for m in members if m["id"] == minion_id)
    for m in members:
        if m["address"] in seen_addr:
            raise _fail(("members",), m["address"], f"member {m['id']} uses a VIP as its own address")

    vrrp = _vrrp(cfg["vrrp"], len(members))
    nginx_cfg = cfg["nginx"]
    haproxy_cfg = cfg["haproxy"]
    health_path = nginx_cfg["health_path"]
    if not isinstance(health_path, str) or not re.match(r"^/[A-Za-z0-9/_.-]*$", health_path):
        raise _fail(("nginx", "health_path"), health_path, "expected an absolute URL path like /proxytier-health")

    # VRRP instances with per-node priority rotation.
    instances = []
    for v in vips:
        i = v["index"]
        if v["owner"] is None:
            owner_idx = i % len(members)
        elif v["owner"] in ids:
            owner_idx = ids.index(v["owner"])
        else:
            raise _fail(("vips", i, "owner"), v["owner"], f"the owner must be one of the members: {', '.join(ids)}")
        order = [members[(owner_idx + j) % len(members)]["id"] for j in range(len(members))]
        priorities = {mid: vrrp["priority_base"] - j * vrrp["priority_step"] for j, mid in enumerate(order)}
        instances.append(
            {
                "name": f"VI_{v['vrid']}",
                "vrid": v["vrid"],
                "address": str(v["iface"].ip),
                "prefixlen": v["iface"].network.prefixlen,
                "cidr": v["iface"].with_prefixlen,
                "interface": v["interface"],
                "owner": order[0],
                "is_owner": order[0] == minion_id,
                "priority": priorities[minion_id],
                "priorities": priorities,
            }
        )

    sites = _sites(cfg["sites"], members, params, file_exists)
    vip_addrs = [inst["address"] for inst in instances]
    exporter = _exporter(cfg["exporter"], me["address"], vip_addrs, nginx_cfg, params)
    _check_ports(sites, nginx_cfg, haproxy_cfg, cfg["exporter"])

    peers = [m["address"] for m in members if m["id"] != minion_id]
    trusted = [m["address"] for m in members] + vip_addrs

    return {
        "params": params,
        "node": me,
        "members": members,
        "members_source": source,
        "mode": "seed" if len(instances) == 1 else "active-active",
        "interface": interface,
        "peers": peers,
        "vips": vip_addrs,
        "vrrp": {
            **vrrp,
            "instances": instances,
            "router_id": minion_id,
            # rolling changes hold a node's priority down through this file (proxytier.handover)
            "hold_file": params.get("vrrp_hold_file", "/run/proxytier-vrrp-hold"),
        },
        "haproxy": {
            "monitor_port": _port(haproxy_cfg["monitor_port"], ("haproxy", "monitor_port")),
            "maxconn": None
            if haproxy_cfg["maxconn"] is None
            else _int(haproxy_cfg["maxconn"], ("haproxy", "maxconn"), 1, 10_000_000, "maxconn"),
            "retries": _int(haproxy_cfg["retries"], ("haproxy", "retries"), 0, 10, "retries"),
            "log_requests": _choice(
                haproxy_cfg["log_requests"], ("haproxy", "log_requests"), ("abnormal", "all"),
                "abnormal (errors, retries, redispatches, aborts: nginx logs every request) or all",
            ),
            "timeouts": {k: _duration(v, ("haproxy", "timeouts", k)) for k, v in haproxy_cfg["timeouts"].items()},
            "check": _haproxy_check(haproxy_cfg["check"]),
            "extra": {k: _lines(v, ("haproxy", "extra", k)) for k, v in haproxy_cfg["extra"].items()},
            "frontends": [_frontend(s, vip_addrs) for s in sites],
            "backends": [_backend(s, members, health_path) for s in sites],
        },
        "nginx": {
            "worker_processes": _worker_processes(nginx_cfg["worker_processes"]),
            "worker_connections": _int(
                nginx_cfg["worker_connections"], ("nginx", "worker_connections"), 16, 1_000_000, "worker_connections"
            ),
            "status_port": _port(nginx_cfg["status_port"], ("nginx", "status_port")),
            "health_path": health_path,
            "real_ip_from": trusted,
            "extra": {k: _lines(v, ("nginx", "extra", k)) for k, v in nginx_cfg["extra"].items()},
            "sites": [_nginx_site(s, me["address"]) for s in sites],
        },
        "tls_files": [s["tls"]["file"] for s in sites if s["tls"] and s["tls"]["file"]],
        "exporter": exporter,
    }


def _exporter(
    raw: dict[str, Any], address: str, vips: list[str], nginx_cfg: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """The exporter's command line: one source of truth for what it scrapes and where it listens."""
    path: tuple[Any, ...] = ("exporter",)
    enabled = _bool(raw["enabled"], (*path, "enabled"))
    port = _port(raw["port"], (*path, "port"))
    source = raw["keepalived_source"]
    if source not in ("fifo", "json", "none"):
        raise _fail((*path, "keepalived_source"), source, "'fifo' (no root), 'json' (needs root) or 'none'")
    max_up = _int(raw["max_upstreams"], (*path, "max_upstreams"), 1, 10000, "max_upstreams")
    run_dir = params.get("exporter_run_dir", "/run/proxytier-exporter")
    listen = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    status_port = _port(nginx_cfg["status_port"], ("nginx", "status_port"))
    args = [
        f"--web.listen-address={listen}",
        f"--haproxy.stats-socket={params.get('haproxy_stats_socket', '/run/haproxy/stats.sock')}",
        f"--nginx.stub-status-url=http://127.0.0.1:{status_port}/stub_status",
        f"--nginx.access-log-socket={run_dir}/nginx-access.sock",
        f"--nginx.max-upstreams={max_up}",
        f"--keepalived.source={source}",
        f"--keepalived.notify-fifo={run_dir}/keepalived.fifo",
        *[f"--vip={v}" for v in vips],
        *_lines(raw["extra_args"], (*path, "extra_args")),
    ]
    return {
        "enabled": enabled,
        "port": port,
        "listen": listen,
        "args": args,
        "fifo": f"{run_dir}/keepalived.fifo",
        "access_log_socket": f"{run_dir}/nginx-access.sock",
        "run_dir": run_dir,
    }


def _worker_processes(value: Any) -> str:
    if value == "auto":
        return "auto"
    return str(_int(value, ("nginx", "worker_processes"), 1, 1024, "worker_processes ('auto' or)"))


def _vrrp(raw: dict[str, Any], n_members: int) -> dict[str, Any]:
    path: tuple[Any, ...] = ("vrrp",)
    version = raw["version"]
    if version not in (2, 3):
        raise _fail((*path, "version"), version, "VRRP version is 2 or 3 (3 allows sub-second adverts)")
    adv = raw["advert_interval"]
    if isinstance(adv, bool) or not isinstance(adv, (int, float)):
        raise _fail((*path, "advert_interval"), adv, "expected seconds, e.g. 1 or 0.1")
    if version == 2 and (adv != int(adv) or not 1 <= adv <= 255):
        raise _fail((*path, "advert_interval"), adv, "VRRPv2 adverts are whole seconds 1..255; use version 3 for less")
    if version == 3 and not 0.01 <= adv <= 40.95:
        raise _fail((*path, "advert_interval"), adv, "VRRPv3 adverts are 0.01..40.95 seconds")
    base = _int(raw["priority_base"], (*path, "priority_base"), 2, 254, "priority_base")
    step = _int(raw["priority_step"], (*path, "priority_step"), 1, 100, "priority_step")
    if base - (n_members - 1) * step < 1:
        raise _fail(
            (*path, "priority_step"),
            step,
            f"with {n_members} members the lowest priority would be {base - (n_members - 1) * step}; "
            "lower priority_step or raise priority_base",
        )
    auth = raw["auth_pass"]
    if auth is not None:
        if version == 3:
            raise _fail((*path, "auth_pass"), "***", "VRRPv3 has no authentication; remove auth_pass or use version 2")
        if not isinstance(auth, str) or not 1 <= len(auth) <= 8:
            raise _fail((*path, "auth_pass"), "***", "a VRRPv2 password is 1..8 characters")
    track = raw["track"]
    if track not in ("script", "process"):
        raise _fail(
            (*path, "track"),
            track,
            "'script' (vrrp_script, works everywhere) or 'process' (track_process, not inside containers)",
        )
    return {
        "version": version,
        "advert_interval": adv if version == 3 else int(adv),
        "priority_base": base,
        "priority_step": step,
        "preempt_delay": _int(raw["preempt_delay"], (*path, "preempt_delay"), 0, 1000, "preempt_delay (seconds)"),
        "unicast": _bool(raw["unicast"], (*path, "unicast")),
        "check_unicast_src": _bool(raw["check_unicast_src"], (*path, "check_unicast_src")),
        "auth_pass": auth,
        "garp_master_delay": _int(raw["garp_master_delay"], (*path, "garp_master_delay"), 0, 255, "garp delay"),
        "garp_master_refresh": _int(raw["garp_master_refresh"], (*path, "garp_master_refresh"), 0, 3600, "refresh"),
        "garp_lower_prio_repeat": _int(
            raw["garp_lower_prio_repeat"], (*path, "garp_lower_prio_repeat"), 0, 100, "garp_lower_prio_repeat"
        ),
        "track": track,
        "check_interval": _int(raw["check_interval"], (*path, "check_interval"), 1, 3600, "check_interval (seconds)"),
        "check_fall": _int(raw["check_fall"], (*path, "check_fall"), 1, 100, "check_fall"),
        "check_rise": _int(raw["check_rise"], (*path, "check_rise"), 1, 100, "check_rise"),
        "extra": {k: _lines(v, (*path, "extra", k)) for k, v in raw["extra"].items()},
    }


def _sites(
    raw_sites: Any, members: list[dict[str, str]], params: dict[str, Any], file_exists: Callable[[str], bool]
) -> list[dict[str, Any]]:
    if not isinstance(raw_sites, list) or not raw_sites:
        raise _fail(("sites",), raw_sites, "list at least one site: [{name: app, backends: [{address: host:port}]}]")
    tls_dir = params.get("tls_dir", "/etc/haproxy/proxytier-tls")
    sites, names = [], {}
    for i, raw in enumerate(raw_sites):
        path: tuple[Any, ...] = ("sites", i)
        s = _merge(SITE_DEFAULTS, raw, path)
        name = s["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail((*path, "name"), name, "a site needs a name of letters, digits, '.', '_' or '-'")
        if name in names:
            raise _fail((*path, "name"), name, f"already used by proxytier:sites:{names[name]}; site names are unique")
        names[name] = i
        if s["client_address"] not in ("forwardfor", "proxy_v2"):
            raise _fail(
                (*path, "client_address"),
                s["client_address"],
                "'forwardfor' (X-Forwarded-For, keeps connection reuse) or 'proxy_v2' (PROXY protocol v2)",
            )
        backends = s["backends"]
        if not isinstance(backends, list) or not backends:
            raise _fail((*path, "backends"), backends, "a site needs at least one backend: [{address: host:port}]")
        servers, seen = [], {}
        for j, rb in enumerate(backends):
            bpath = (*path, "backends", j)
            if isinstance(rb, str):
                rb = {"address": rb}
            b = _merge(BACKEND_DEFAULTS, rb, bpath)
            host, port = _hostport(b["address"], (*bpath, "address"))
            key = f"{host}:{port}"
            if key in seen:
                raise _fail((*bpath, "address"), b["address"], f"duplicate of proxytier:sites:{i}:backends:{seen[key]}")
            seen[key] = j
            servers.append(
                {
                    "address": f"[{host}]:{port}" if ":" in host else key,
                    "weight": _int(b["weight"], (*bpath, "weight"), 1, 1000, "weight"),
                    "backup": _bool(b["backup"], (*bpath, "backup")),
                    "max_fails": _int(b["max_fails"], (*bpath, "max_fails"), 0, 1000, "max_fails"),
                    "fail_timeout": _duration(b["fail_timeout"], (*bpath, "fail_timeout")),
                }
            )
        if all(sv["backup"] for sv in servers):
            addrs = [sv["address"] for sv in servers]
            raise _fail((*path, "backends"), addrs, "every backend is a backup; make one primary")
        hc = s["health_check"]
        hc_path = hc["path"]
        if hc_path is not None and (not isinstance(hc_path, str) or not hc_path.startswith("/")):
            raise _fail((*path, "health_check", "path"), hc_path, "expected an absolute URL path like /healthz")
        sites.append(
            {
                "name": name,
                "port": _port(s["port"], (*path, "port")),
                "nginx_port": _port(s["nginx_port"], (*path, "nginx_port")),
                "client_address": s["client_address"],
                "health_check_path": hc_path,
                "health_check_status": _int(
                    hc["expect_status"], (*path, "health_check", "expect_status"), 100, 599, "an HTTP status"
                ),
                "timeouts": {k: _duration(v, (*path, "timeouts", k)) for k, v in s["timeouts"].items()},
                "keepalive": _int(s["keepalive"], (*path, "keepalive"), 0, 10000, "keepalive connections"),
                "next_upstream_tries": _int(s["next_upstream_tries"], (*path, "next_upstream_tries"), 0, 100, "tries"),
                "servers": servers,
                "tls": _tls(s["tls"], (*path, "tls"), name, tls_dir, file_exists),
                "extra": {k: _lines(v, (*path, "extra", k)) for k, v in s["extra"].items()},
                "path": path,
            }
        )
    return sites


def _tls(raw: Any, path: tuple[Any, ...], site: str, tls_dir: str, file_exists: Callable[[str], bool]) -> Any:
    if raw is None or raw is False:
        return None
    t = _merge(TLS_DEFAULTS, raw, path)
    inline = t["certificate"] is not None or t["key"] is not None
    files = t["certificate_file"] is not None or t["key_file"] is not None
    if inline and files:
        raise ProxytierError(f"{_p(path)}: give certificate+key (PEM text) or certificate_file+key_file, not both")
    if not inline and not files:
        raise ProxytierError(
            f"{_p(path)}: TLS is on but no certificate is given; set certificate and key (PEM text from pillar) "
            "or certificate_file and key_file (paths on the node)"
        )
    port = _port(t["port"], (*path, "port"))
    redirect = _bool(t["redirect_http"], (*path, "redirect_http"))
    if inline:
        cert, key = t["certificate"], t["key"]
        if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
            raise _fail((*path, "certificate"), str(cert)[:40], "expected a PEM certificate (BEGIN CERTIFICATE)")
        if not isinstance(key, str) or not _PRIVATE_KEY_RE.search(key):
            raise _fail((*path, "key"), "<hidden>", "expected a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        pem = f"{cert.strip()}\n{key.strip()}\n"
        crt_path = f"{tls_dir}/{site}.pem"
        return {"port": port, "redirect_http": redirect, "crt": crt_path, "file": {"path": crt_path, "contents": pem}}
    for k in ("certificate_file", "key_file"):
        value = t[k]
        if not isinstance(value, str) or not value.startswith("/"):
            raise _fail((*path, k), value, "expected an absolute path on the node")
        if not file_exists(value):
            raise _fail((*path, k), value, "no such file on this node; deploy it first or give the PEM text instead")
    crt = t["certificate_file"]
    # HAProxy loads "<crt>.key" next to the certificate when the key is a separate file.
    if t["key_file"] != crt + ".key" and t["key_file"] != crt:
        raise _fail(
            (*path, "key_file"),
            t["key_file"],
            f"HAProxy looks for the key in the certificate file or at {crt}.key; put it there or use PEM text",
        )
    return {"port": port, "redirect_http": redirect, "crt": crt, "file": None}


def _check_ports(
    sites: list[dict[str, Any]], nginx_cfg: dict[str, Any], haproxy_cfg: dict[str, Any], exporter_cfg: dict[str, Any]
) -> None:
    used: dict[int, str] = {}

    def claim(port: int, where: str) -> None:
        if port in used:
            raise ProxytierError(
                f"{where} = {port}: port clash with {used[port]}; every listener of the tier needs its own port"
            )
        used[port] = where

    claim(_port(haproxy_cfg["monitor_port"], ("haproxy", "monitor_port")), _p(("haproxy", "monitor_port")))
    claim(_port(nginx_cfg["status_port"], ("nginx", "status_port")), _p(("nginx", "status_port")))
    if exporter_cfg["enabled"]:
        claim(_port(exporter_cfg["port"], ("exporter", "port")), _p(("exporter", "port")))
    for s in sites:
        claim(s["port"], _p((*s["path"], "port")))
        claim(s["nginx_port"], _p((*s["path"], "nginx_port")))
        if s["tls"]:
            claim(s["tls"]["port"], _p((*s["path"], "tls", "port")))


def _choice(value: Any, path: tuple[Any, ...], choices: tuple[str, ...], fix: str) -> str:
    if value not in choices:
        raise _fail(path, value, fix)
    return value


ON_ERROR = ("mark-down", "sudden-death", "fail-check", "fastinter", "none")


def _haproxy_check(raw: dict[str, Any]) -> dict[str, Any]:
    path = ("haproxy", "check")
    on_error = _choice(
        raw["on_error"], (*path, "on_error"), ON_ERROR,
        "one of " + ", ".join(ON_ERROR) + " (what HAProxy does after error_limit connection errors in a row "
        "to a server; none: only health checks mark it down)",
    )
    return {
        "inter": _duration(raw["inter"], (*path, "inter")),
        "fastinter": _duration(raw["fastinter"], (*path, "fastinter")),
        "downinter": _duration(raw["downinter"], (*path, "downinter")),
        "fall": _int(raw["fall"], (*path, "fall"), 1, 100, "fall"),
        "rise": _int(raw["rise"], (*path, "rise"), 1, 100, "rise"),
        "on_error": on_error,
        "error_limit": _int(raw["error_limit"], (*path, "error_limit"), 1, 1000, "error_limit"),
    }


def _frontend(s: dict[str, Any], vips: list[str]) -> dict[str, Any]:
    def fmt(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    binds = [{"address": fmt(v, s["port"]), "tls": False} for v in vips]
    if s["tls"]:
        binds += [{"address": fmt(v, s["tls"]["port"]), "tls": True, "crt": s["tls"]["crt"]} for v in vips]
    return {
        "name": f"fe_{s['name']}",
        "backend": f"be_{s['name']}",
        "binds": binds,
        "tls": bool(s["tls"]),
        "redirect_http": bool(s["tls"] and s["tls"]["redirect_http"]),
        "client_address": s["client_address"],
        "extra": s["extra"]["frontend"],
    }


def _backend(s: dict[str, Any], members: list[dict[str, str]], health_path: str) -> dict[str, Any]:
    def fmt(addr: str) -> str:
        return f"[{addr}]:{s['nginx_port']}" if ":" in addr else f"{addr}:{s['nginx_port']}"

    return {
        "name": f"be_{s['name']}",
        "check_path": s["health_check_path"] or health_path,
        "check_status": s["health_check_status"],
        "send_proxy": s["client_address"] == "proxy_v2",
        "servers": [{"name": m["id"], "address": fmt(m["address"])} for m in members],
        "extra": s["extra"]["backend"],
        "server_extra": " ".join(s["extra"]["server"]),
    }


def _nginx_site(s: dict[str, Any], my_address: str) -> dict[str, Any]:
    listen = f"[{my_address}]:{s['nginx_port']}" if ":" in my_address else f"{my_address}:{s['nginx_port']}"
    return {
        "name": s["name"],
        "upstream": f"up_{s['name']}",
        "listen": listen,
        "proxy_protocol": s["client_address"] == "proxy_v2",
        "servers": s["servers"],
        "keepalive": s["keepalive"],
        "timeouts": s["timeouts"],
        "next_upstream_tries": s["next_upstream_tries"],
        "extra": {k: s["extra"][k] for k in ("location", "upstream")},
    }


# ---------------------------------------------------------------------------------------
# Salt entry points
# ---------------------------------------------------------------------------------------


def __virtual__():
    return __virtualname__


def model(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated model of the tier for this minion (CLI: ``salt proxy1 proxytier.model``)."""
    pillar = __pillar__.get("proxytier", {})  # noqa: F821 - injected by Salt
    minion_id = __opts__["id"]  # noqa: F821
    mine = None
    mcfg = pillar.get("members_from_mine") if isinstance(pillar, dict) else None
    if isinstance(mcfg, dict) or mcfg == {}:
        m = {**MINE_DEFAULTS, **(mcfg or {})}
        mine = __salt__["mine.get"](m["target"], m["function"], tgt_type=m["tgt_type"])  # noqa: F821
    return build_model(pillar, minion_id, mine=mine, params=params)


def params() -> dict[str, Any]:
    """The formula's OS parameters as map.jinja layers them (defaults, os_family, pillar
    proxytier:lookup), for the runtime functions below. CLI: ``salt proxy1 proxytier.params``."""
    import yaml

    base = "salt://proxytier/parameters"
    layers = [f"{base}/defaults.yaml"]
    family = __grains__.get("os_family", "Debian")  # noqa: F821
    if family in ("Debian", "RedHat"):
        layers.append(f"{base}/os_family/{family}.yaml")
    merged: dict[str, Any] = {}
    for url in layers:
        text = __salt__["cp.get_file_str"](url)  # noqa: F821
        if not text:
            raise ProxytierError(f"{url} is missing on the master: the proxytier formula is not in its file_roots")
        values = (yaml.safe_load(text) or {}).get("values") or {}
        merged = __salt__["slsutil.merge"](merged, values, strategy="recurse")  # noqa: F821
    return __salt__["slsutil.merge"](merged, __salt__["pillar.get"]("proxytier:lookup", {}), strategy="recurse")  # noqa: F821


def address(interface: str | None = None) -> list[str]:
    """This node's own addresses on the tier interface, VIPs left out (the mine function:
    ``mine_functions: {proxytier_address: {mine_function: proxytier.address}}``)."""
    pillar = __pillar__.get("proxytier", {})  # noqa: F821 - injected by Salt
    pillar = pillar if isinstance(pillar, dict) else {}
    iface = interface or pillar.get("interface") or DEFAULTS["interface"]
    vips = set()
    for vip in pillar.get("vips") or []:
        try:
            vips.add(str(ipaddress.ip_interface(str(vip.get("address"))).ip))
        except (AttributeError, ValueError):
            continue  # the model reports bad VIPs; the mine only needs the good ones
    return [ip for ip in __salt__["network.ip_addrs"](interface=iface) if ip not in vips]  # noqa: F821


# ---------------------------------------------------------------------------------------
# Runtime actions for rolling changes (salt/proxytier/orch/rolling.sls)
# ---------------------------------------------------------------------------------------


def reinstall() -> dict[str, Any]:
    """Reinstall the tier's packages (nginx, HAProxy, keepalived) as an upgrade would: their
    maintainer scripts restart the daemons. For rolling changes (the orchestration's
    ``reinstall: true``) and their tests. CLI: ``salt proxy1 proxytier.reinstall``."""
    m = model(params=params())
    pkgs = [m["params"]["pkgs"][k] for k in ("nginx", "haproxy", "keepalived")]
    return __salt__["pkg.install"](pkgs=pkgs, reinstall=True)  # noqa: F821


def haproxy_command(command: str, sock_path: str, timeout: float = 5.0) -> str:
    """One command on HAProxy's runtime API (the admin socket); returns its answer."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sock_path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def set_member_state(
    model_: dict[str, Any], member: str, state: str, command: Callable[[str], str]
) -> dict[str, str]:
    """Set member's nginx server to state (ready, drain or maint) in every HAProxy backend of the model."""
    if state not in ("ready", "drain", "maint"):
        raise ProxytierError(f"state {state!r}: use ready, drain or maint")
    ids = [m["id"] for m in model_["members"]]
    if member not in ids:
        raise ProxytierError(f"{member!r} is not a member of the tier ({', '.join(ids)})")
    done = {}
    for be in model_["haproxy"]["backends"]:
        answer = command(f"set server {be['name']}/{member} state {state}").strip()
        if answer:  # HAProxy answers nothing on success
            raise ProxytierError(f"HAProxy refused 'set server {be['name']}/{member} state {state}': {answer}")
        done[be["name"]] = state
    return done


def member_state(member: str, state: str) -> dict[str, str]:
    """On this node's HAProxy, set member's nginx to ready/drain/maint in every backend.

    CLI: ``salt 'proxy*' proxytier.member_state proxy2 drain``."""
    m = model(params=params())
    sock = m["params"].get("haproxy_admin_socket", "/run/haproxy/admin.sock")
    return set_member_state(m, member, state, lambda cmd: haproxy_command(cmd, sock))


def verify(timeout: float = 30.0, vips: bool = True) -> dict[str, Any]:
    """Is this node serving? nginx answers its health path on every site, HAProxy its monitor
    URI, HAProxy sees every member's nginx UP, keepalived runs, and (unless vips=False, for a
    node whose VIPs were handed over) the node holds the VIPs it owns. Waits up to `timeout`
    seconds for all of it, then fails naming what is still wrong.

    CLI: ``salt proxy1 proxytier.verify``."""
    import csv
    import io
    import time
    import urllib.request

    m = model(params=params())
    sock = m["params"].get("haproxy_stats_socket", "/run/haproxy/stats.sock")
    checks: dict[str, Callable[[], bool]] = {}

    def http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def proxied_ok(listen: str, path: str) -> bool:
        """GET through a PROXY protocol listener: a v1 header first, as HAProxy would send (v2)."""
        import socket

        host, port = listen.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=2) as sock:
                sock.sendall(
                    f"PROXY TCP4 127.0.0.1 {host} 1 {port}\r\n".encode()
                    + f"GET {path} HTTP/1.0\r\nHost: proxytier-verify\r\n\r\n".encode()
                )
                return sock.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
        except OSError:
            return False

    health = m["nginx"]["health_path"]
    for site in m["nginx"]["sites"]:
        checks[f"nginx {site['name']} on {site['listen']}"] = (
            (lambda s=site: proxied_ok(s["listen"], health))
            if site.get("proxy_protocol")
            else (lambda s=site: http_ok(f"http://{s['listen']}{health}"))
        )
    checks["haproxy monitor"] = lambda: http_ok(f"http://127.0.0.1:{m['haproxy']['monitor_port']}/proxytier-monitor")

    me = m["node"]["id"]

    def servers_up() -> bool:
        """This node's nginx is UP (or DRAIN) in this node's HAProxy, in every backend."""
        try:
            stat = haproxy_command("show stat -1 4 -1", sock)
        except OSError:
            return False
        rows = csv.DictReader(io.StringIO(stat.lstrip("# ")))
        status = {(r["pxname"], r["svname"]): r.get("status") or "" for r in rows}
        return all(status.get((be["name"], me), "").startswith(("UP", "DRAIN")) for be in m["haproxy"]["backends"])

    checks[f"haproxy sees {me}'s nginx up"] = servers_up
    keepalived = m["params"].get("services", {}).get("keepalived", "keepalived")
    checks["keepalived running"] = lambda: bool(__salt__["service.status"](keepalived))  # noqa: F821
    owned = [i["address"] for i in m["vrrp"]["instances"] if i["is_owner"]] if vips else []

    def holds_vips() -> bool:
        held = set(__salt__["network.ip_addrs"](include_loopback=False))  # noqa: F821
        return all(v in held for v in owned)

    if owned:
        checks[f"holds its VIPs {', '.join(owned)}"] = holds_vips
    deadline = time.monotonic() + timeout
    while True:
        failing = [name for name, check in checks.items() if not check()]
        if not failing:
            return {"node": m["node"]["id"], "ok": sorted(checks)}
        if time.monotonic() > deadline:
            raise ProxytierError(f"{m['node']['id']} does not serve after {timeout:.0f} s: " + "; ".join(failing))
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------
# Moving VIPs without failing a request (rolling changes)
#
# A VIP that moves resets the client connections in flight on it: the client's next packet
# reaches the new holder, which knows no such connection. So before a VIP moves, the node
# that holds it stops answering new SYNs for it (an nftables rule drops them: the client's
# kernel retransmits the SYN after its 1 s initial timeout), waits for its connections on
# that VIP to finish, and only then lets the VIP go. The retransmitted SYN reaches the new
# holder. Clients see up to ~1 s of extra connect time and no error.
#
# The move itself is a priority change, not a stop: every VRRP instance tracks a file (see
# keepalived.conf.jinja) whose value is subtracted from its priority. A held node (value
# HOLD_VALUE) sits at priority 1: every peer outranks it, yet it still takes its VIPs if it
# is the last node alive. The file lives in /run, so a reboot clears a forgotten hold.
# ---------------------------------------------------------------------------------------

HOLD_VALUE = 253  # keepalived: priority - 253 clamps to 1; below -253 would mean FAULT
GUARD_TABLE = "proxytier_handover"
# /proc/net/tcp states in which a connection still has a request or response on the wire
# (ESTABLISHED, SYN_RECV, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING)
_BUSY_TCP_STATES = {"01", "03", "04", "08", "09", "0B"}


def busy_connections(proc_net_tcp: str, addresses: list[str]) -> int:
    """How many TCP connections in /proc/net/tcp text have a local address in `addresses`
    and may still carry data (a moved VIP would reset them)."""
    wanted = set()
    for a in addresses:
        packed = ipaddress.IPv4Address(a).packed
        wanted.add(packed[::-1].hex().upper())  # /proc/net/tcp: host byte order (little endian)
    busy = 0
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local_ip = fields[1].split(":")[0].upper()
        if local_ip in wanted and fields[3].upper() in _BUSY_TCP_STATES:
            busy += 1
    return busy


def guard_script(vips: list[str]) -> str:
    """nft script: drop new inbound connections (bare SYNs) to `vips`; established traffic passes."""
    for v in vips:
        ipaddress.IPv4Address(v)  # never put anything but an address into the ruleset
    return (
        f"table ip {GUARD_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority -150; policy accept;\n"
        f"    ip daddr {{ {', '.join(vips)} }} tcp flags & (syn | ack) == syn drop\n"
        "  }\n"
        "}\n"
    )


class _Guard:
    """The SYN guard for some VIPs on this node, removed on exit whatever happens."""

    def __init__(self, vips: list[str], run: Callable[..., Any]):
        self.vips, self.run = vips, run

    def __enter__(self) -> _Guard:
        if self.vips:
            self.run(["nft", "delete", "table", "ip", GUARD_TABLE], check=False)  # a killed run's leftover
            self.run(["nft", "-f", "-"], input=guard_script(self.vips))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.vips:
            self.run(["nft", "delete", "table", "ip", GUARD_TABLE], check=False)


def _handover_env() -> dict[str, Any]:
    import subprocess

    m = model(params=params())

    def run(cmd: list[str], input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=10)
        if check and proc.returncode != 0:
            raise ProxytierError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def local_vips() -> set[str]:
        return set(__salt__["network.ip_addrs"](include_loopback=False)) & set(m["vips"])  # noqa: F821

    def busy(vips: list[str]) -> int:
        with open("/proc/net/tcp") as f:
            return busy_connections(f.read(), vips)

    return {"model": m, "run": run, "local_vips": local_vips, "busy": busy}


def _wait(what: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def _set_hold(path: str, value: int) -> None:
    # written in place: keepalived watches this file (a rename would swap the inode under it)
    with open(path, "w") as f:
        f.write(f"{value}\n")


def _probe_dropped(address: str, port: int, timeout: float = 0.2) -> bool:
    """True when a SYN to address:port goes unanswered (the holder's guard is up)."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout):
            return False
    except TimeoutError:
        return True
    except OSError:
        return False


def handover(node: str, action: str, timeout: float = 5.0, drain: float = 2.0) -> dict[str, Any]:
    """Move `node`'s VIPs to its peers (action=release) or back to it (action=reclaim) without
    failing a request. Run it on every member at once (each does its part):

        salt 'proxy*' proxytier.handover proxy2 release
        salt 'proxy*' proxytier.handover proxy2 reclaim

    release: `node` guards the VIPs it holds, waits up to `drain` s for their connections to
    finish, then holds its priority down; fails if a peer has not taken them in `timeout` s
    (and then lets go of the hold: no peer is there to serve them).
    reclaim: the peers holding `node`'s own VIPs guard them and wait for their connections to
    finish; `node` waits until it sees the guard, then lifts its hold and takes its VIPs back."""
    import time

    if action not in ("release", "reclaim"):
        raise ProxytierError(f"action {action!r}: use release or reclaim")
    env = _handover_env()
    m, run, local_vips, busy = env["model"], env["run"], env["local_vips"], env["busy"]
    ids = [x["id"] for x in m["members"]]
    if node not in ids:
        raise ProxytierError(f"{node!r} is not a member of the tier ({', '.join(ids)})")
    me = m["node"]["id"]
    hold_file = m["vrrp"]["hold_file"]
    homes = [i["address"] for i in m["vrrp"]["instances"] if i["owner"] == node]
    t0 = time.monotonic()
    report: dict[str, Any] = {"node": me, "action": action}

    if action == "release" and me == node:
        vips = sorted(local_vips())
        with _Guard(vips, run):
            report["drained"] = _wait(lambda: busy(vips) == 0, drain)
            report["left_busy"] = busy(vips)
            _set_hold(hold_file, HOLD_VALUE)
            if not _wait(lambda: not (local_vips() & set(vips)), timeout):
                _set_hold(hold_file, 0)
                raise ProxytierError(
                    f"{me} still holds {', '.join(sorted(local_vips() & set(vips)))} {timeout:.0f} s after "
                    "lowering its priority: no peer took them (are the peers' keepalived up?); hold lifted"
                )
        report["moved"] = vips
    elif action == "reclaim" and me == node:
        away = [v for v in homes if v not in local_vips()]
        ports = sorted({int(b["address"].rsplit(":", 1)[1]) for f in m["haproxy"]["frontends"] for b in f["binds"]})
        if away and ports:
            # the holders guard first: wait until our SYNs to our VIPs go unanswered
            report["guard_seen"] = _wait(lambda: all(_probe_dropped(v, ports[0]) for v in away), 1.0, step=0.05)
            time.sleep(0.2)  # the holders' in-flight requests finish (milliseconds)
        _set_hold(hold_file, 0)
        if not _wait(lambda: set(homes) <= local_vips(), timeout):
            raise ProxytierError(
                f"{me} did not take back {', '.join(sorted(set(homes) - local_vips()))} in {timeout:.0f} s "
                "after lifting its hold (is its keepalived running and its HAProxy up?)"
            )
        report["moved"] = away
    elif action == "reclaim":
        vips = sorted(local_vips() & set(homes))
        with _Guard(vips, run):
            report["drained"] = _wait(lambda: busy(vips) == 0, drain)
            ok = _wait(lambda: not (local_vips() & set(vips)), timeout)
        if not ok:
            raise ProxytierError(f"{node} did not take {', '.join(vips)} from {me} in {timeout:.0f} s")
        report["moved"] = vips
    else:
        report["moved"] = []
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report
