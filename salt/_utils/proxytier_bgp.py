"""BGP mode (proxytier:vip_mode: bgp): every healthy node announces the tier's service addresses
(proxytier:vips) to the pillar's routers with BIRD 2, health-gated from HAProxy, with BFD; the
routers spread flows over the nodes with ECMP. keepalived holds no address in this mode.

The speaker: BIRD 2 (Debian 12: bird2 2.0.12; Debian 13: 2.17), not FRR 8.4. Why, with the facts
this module relies on (sources: BIRD's own source and manual at tag v2.0.12, github.com/CZ-NIC/bird,
and what was run here against Debian 12's bird2 2.0.12):

- One daemon, one file, one check: ``bird -p -c FILE`` parses a file and exits (Debian's unit runs
  ``bird -p`` as ExecStartPre), so a staged file is checked exactly as a live one would be read.
  FRR splits BGP and BFD over two daemons (bgpd, bfdd; enabled in /etc/frr/daemons) behind vtysh.
- Reload without dropping sessions: Debian's bird.service has ``ExecReload=/usr/sbin/birdc
  configure``. BIRD compares each protocol's old and new configuration and reconfigures it in place
  when it can (nest/proto.c proto_reconfigure, proto/bgp/bgp.c bgp_reconfigure): a changed export
  filter only re-exports (measured, tests/render/test_render_bgp.py: the maintenance filter loaded
  by ``birdc configure`` withdrew the addresses in 12 ms, and the router's sessions kept their
  "Established since" time); a changed neighbor, ASN or timer restarts that one session. FRR's
  reload is frr-reload.py (package frr-pythontools: "Without this package installed, reload ...
  will not work"), which diffs the running configuration and replays vtysh commands.
- BFD: ``protocol bfd`` plus ``bfd { min rx interval; min tx interval; multiplier; }`` in each BGP
  protocol (nest/config.Y bfd_item; doc/bird.sgml "bgp-bfd": on a BFD failure "the BGP session is
  restarted"). BIRD does not bound the interval or the multiplier (proto/bfd/config.Y): the bounds
  here are RFC 5880's fields (Detect Mult is 8 bits, non-zero) narrowed to what makes sense.
- Timers: ``hold time`` is 3..65535 or 0 ("Hold time must be in range 3-65535 or zero"),
  ``keepalive time`` 1..65535 (proto/bgp/config.Y); RFC 4271 4.4: keepalive about a third of hold.
- Strings (``password "..."``): BIRD's lexer (conf/cf-lex.l) ends a string at the next '"', has no
  escapes and refuses a newline; Linux's TCP-MD5 key is at most 80 bytes (TCP_MD5SIG_MAXKEYLEN).
- IPv4 and IPv6 in one daemon (one ``ipv4``/``ipv6`` channel per session).

Health gate: the node announces an address only while a route for it exists in a kernel table of
its own (``bgp:gate:table``), which BIRD learns (``protocol kernel { kernel table N; learn; }``).
proxytier-bgp-gate (files/proxytier_bgp_gate.py), a small service, polls HAProxy's monitor URI and
adds or deletes those routes. BIRD hears route changes on netlink at once (sysdep/linux/netlink.c
nl_async_msg -> RTM_NEWROUTE/RTM_DELROUTE): here, a route deleted from the table was gone from
BIRD's table within 50 ms, so the withdraw follows HAProxy's death by the gate's `interval` x
`fall` plus one BGP UPDATE (measured against a router running BIRD in network namespaces,
tests/render/test_render_bgp.py: 0.27..0.38 s from HAProxy's last answer to the route gone from
the router, at the defaults 0.2 s x 2). Rejected alternatives:
- ``birdc disable/enable`` of a protocol: ``birdc configure`` resets a protocol's runtime state to
  the config's (nest/proto.c v2.0.12 proto_reconfigure: ``nc->disabled != p->disabled`` restarts it),
  so every reload would re-announce a withdrawn node, or withdraw an announcing one.
- ``check link`` on a static route via a dummy interface whose carrier the gate switches
  (proto/static/static.c static_decide: IF_LINK_UP is IFF_LOWER_UP): this kernel has no dummy
  driver ("Unknown device type"), and the loopback's carrier cannot be switched.
The gate's state lives in the kernel, so a BIRD restart or reload reads it back (its kernel scan),
and the gate's unit deletes the table's routes whenever the gate stops, however it stops.

Maintenance (``bgp:maintenance``: member ids): that node's export filter rejects every address, so
a ``birdc configure`` withdraws them with the BGP sessions up and the addresses still local: the
routers stop sending new flows and the node's established connections go on. The gate's hold file
(``bgp_hold_file``, in /run) does the same at run time, for orchestrations.

Graceful shutdown (``bgp:graceful_shutdown``, default true; RFC 8326): before a node leaves the
routes for a rolling change or a leave, proxytier.handover asks its gate (the word ``graceful`` in the
hold file) to keep announcing with the GRACEFUL_SHUTDOWN community (65535:0) added: the gate marks
its routes with protocol GRACEFUL_PROTO, which the export filter reads as ``krt_source``. A router
that honours the community (RFC 8326 section 4: local preference 0 for such paths; lab/router.py's
BIRD does) sends new flows elsewhere while the path stays, so a router that drains (lab/resilient.py:
the node keeps the hash buckets of its established flows until they idle) can tell a leaving node,
which still serves, from a dead one, which withdraws. Once the node's connections have finished (or
after ``bgp:drain`` seconds, default 30: the handover's default drain in this mode, where waiting
holds back no new connection) the handover withdraws as before. With false, the handover withdraws at
once, then waits for the connections.

The service addresses live on the loopback (``bgp:interface``, default ``lo``) as host routes, so
HAProxy binds them and every node answers on them; with ``arp_ignore`` 1 and ``arp_announce`` 2
(proxytier.bgp) a node does not answer ARP for them on its LAN.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

from proxytier_members import address_of, family_name
from proxytier_schema import (
    ProxytierError,
    boolean,
    extra,
    fail,
    integer,
    ip,
    member_id,
    merge,
    vip,
)

BGP_DEFAULTS: dict[str, Any] = {
    "asn": None,
    "router_id": None,
    "interface": "lo",
    "hold_time": 9,
    "keepalive_time": 3,
    "connect_retry_time": 5,
    "bfd": {"min_rx_interval": 100, "min_tx_interval": 100, "multiplier": 3},
    "communities": [],
    "peers": [],
    "maintenance": [],
    "graceful_shutdown": True,
    "drain": 30,
    "gate": {"table": 200, "interval": 0.2, "fall": 2, "rise": 3},
    "extra": {"global": [], "peer": []},
}
PEER_DEFAULTS: dict[str, Any] = {"address": None, "asn": None, "password": None, "bfd": True}

#: RFC 6793: AS_TRANS (23456) stands in for a 4-byte ASN and is never a speaker's own; RFC 7607:
#: ASN 0 is invalid; RFC 7300: 4294967295 is reserved
AS_TRANS = 23456
ASN_MAX = 4294967294
#: what BIRD reads back as written inside "...": printable ASCII without '"' (the end of the string;
#: no escapes, conf/cf-lex.l) and '\\'; 1..80 bytes (Linux TCP_MD5SIG_MAXKEYLEN)
PASSWORD_RE = re.compile(r"[ !#-\[\]-~]{1,80}")
#: a community: "ASN:value" (RFC 1997, 16 + 16 bits) or "ASN:value:value" (RFC 8092, 32 bits each)
COMMUNITY_RE = re.compile(r"([0-9]{1,10}):([0-9]{1,10})(?::([0-9]{1,10}))?")
#: the kernel route protocol number the gate gives a route it keeps for a graceful shutdown (bird.conf's
#: export filter reads it as krt_source and adds GRACEFUL_SHUTDOWN); 201 is in no iproute2 rt_protos list
#: (4 is static, the serving routes'; 186..192 are routing daemons')
GRACEFUL_PROTO = 201
#: RFC 8326: the well-known GRACEFUL_SHUTDOWN community, 65535:0
GRACEFUL_SHUTDOWN = (65535, 0)
#: kernel routing tables the gate must not use: unspec, default, main, local (rtnetlink.h)
RESERVED_TABLES = (0, 253, 254, 255)


def asn(value: Any, path: tuple[Any, ...]) -> int:
    """An AS number BIRD reads as `local as` / `neighbor ... as`: a whole number 1..4294967294, not
    23456 (AS_TRANS, RFC 6793). Private use: 64512..65534 and 4200000000..4294967294 (RFC 6996);
    documentation: 64496..64511 and 65536..65551 (RFC 5398). Raises ProxytierError."""
    fix = ("an AS number is a whole number 1..4294967294 (not 23456, AS_TRANS); private ones are "
           "64512..65534 and 4200000000..4294967294")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ASN_MAX or value == AS_TRANS:
        raise fail(path, value, fix)
    return value


def router_id(value: Any, path: tuple[Any, ...]) -> str:
    """A BGP router id: an IPv4 address in dotted form (BIRD's `router id`), not 0.0.0.0
    (RFC 6286: a non-zero 32-bit number)."""
    try:
        addr = ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        raise fail(path, value, "a router id is written as an IPv4 address like 198.18.0.11 (unique per "
                   "speaker; the default is the node's IPv4 address)") from None
    if int(addr) == 0:
        raise fail(path, value, "a router id must not be 0.0.0.0 (RFC 6286)")
    return str(addr)


def community(value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
    """"ASN:value" -> {"kind": "standard", "parts": [a, b]} (each 0..65535, RFC 1997) or
    "ASN:value:value" -> {"kind": "large", "parts": [a, b, c]} (each 0..4294967295, RFC 8092), as
    BIRD's bgp_community.add((a, b)) / bgp_large_community.add((a, b, c)) take them."""
    m = COMMUNITY_RE.fullmatch(value) if isinstance(value, str) else None
    fix = ("a community is 'ASN:value' (each 0..65535) or a large community 'ASN:value:value' (each "
           "0..4294967295), e.g. '64512:100' or '4200000000:1:2'")
    if m is None:
        raise fail(path, value, fix)
    parts = [int(g) for g in m.groups() if g is not None]
    limit = 65535 if len(parts) == 2 else 4294967295
    if any(p > limit for p in parts):
        raise fail(path, value, fix)
    return {"kind": "standard" if len(parts) == 2 else "large", "parts": parts}


def _password(value: Any, path: tuple[Any, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not PASSWORD_RE.fullmatch(value):
        # the value is a secret: never echo it
        raise fail(path, "***", "a TCP-MD5 password (RFC 2385) is 1..80 printable ASCII characters without "
                   "'\"' or '\\' (BIRD ends its string at the next '\"' and has no escapes)")
    return value


def _ms(value: Any, path: tuple[Any, ...], lo: int, hi: int, what: str) -> int:
    return integer(value, path, lo, hi, f"{what} (milliseconds)")


def settings(raw: Any) -> dict[str, Any]:
    """proxytier:bgp -> the validated section (node-independent): {"asn", "router_id" (None: the
    node's IPv4 address), "interface", "hold_time", "keepalive_time", "connect_retry_time" (seconds),
    "bfd": {"min_rx_interval", "min_tx_interval" (ms), "multiplier"}, "communities" ([community]),
    "peers" ([{"name", "address", "family", "asn", "password", "bfd", "path"}]), "maintenance"
    ([member ids]), "graceful_shutdown" (bool), "drain" (whole seconds 0..3600), "gate": {"table",
    "interval" (s), "fall", "rise"}, "extra"}. Raises ProxytierError
    naming the key, the value and the fix."""
    from proxytier_vrrp import interface  # one interface grammar for the whole pillar

    path: tuple[Any, ...] = ("bgp",)
    cfg = merge(BGP_DEFAULTS, raw, path)
    if cfg["asn"] is None:
        raise fail((*path, "asn"), None, "set this node's AS number (the tier's local ASN), e.g. 64512")
    local_as = asn(cfg["asn"], (*path, "asn"))
    hold = cfg["hold_time"]
    if isinstance(hold, bool) or not isinstance(hold, int) or not (hold == 0 or 3 <= hold <= 65535):
        raise fail((*path, "hold_time"), hold, "the BGP hold time is 0 (no keepalives) or 3..65535 seconds "
                   "(RFC 4271; BIRD refuses 1 and 2)")
    keep = integer(cfg["keepalive_time"], (*path, "keepalive_time"), 1, 65535, "keepalive_time (seconds)")
    if hold and keep > hold // 3:
        raise fail((*path, "keepalive_time"), keep, f"at most a third of hold_time ({hold} s, RFC 4271 4.4): "
                   f"a peer must hear about three keepalives per hold time; use {max(1, hold // 3)} or less")
    retry = integer(cfg["connect_retry_time"], (*path, "connect_retry_time"), 1, 65535,
                    "connect_retry_time (seconds)")
    bfd_path = (*path, "bfd")
    bfd = {
        "min_rx_interval": _ms(cfg["bfd"]["min_rx_interval"], (*bfd_path, "min_rx_interval"), 10, 10000,
                               "the BFD receive interval"),
        "min_tx_interval": _ms(cfg["bfd"]["min_tx_interval"], (*bfd_path, "min_tx_interval"), 10, 10000,
                               "the BFD transmit interval"),
        "multiplier": integer(cfg["bfd"]["multiplier"], (*bfd_path, "multiplier"), 1, 255,
                              "the BFD detect multiplier (RFC 5880: 8 bits, not 0)"),
    }
    communities = cfg["communities"]
    if not isinstance(communities, list):
        raise fail((*path, "communities"), communities, "a list like ['64512:100', '4200000000:1:2']")
    comms = [community(c, (*path, "communities", i)) for i, c in enumerate(communities)]
    maint = cfg["maintenance"]
    if not isinstance(maint, list):
        raise fail((*path, "maintenance"), maint, "a list of member ids whose addresses are withdrawn: [proxy2]")
    return {
        "asn": local_as,
        "router_id": None if cfg["router_id"] is None else router_id(cfg["router_id"], (*path, "router_id")),
        "interface": interface(cfg["interface"], (*path, "interface")),
        "hold_time": hold,
        "keepalive_time": keep,
        "connect_retry_time": retry,
        "bfd": bfd,
        "communities": comms,
        "peers": peers(cfg["peers"], local_as),
        "maintenance": [member_id(m, (*path, "maintenance", i)) for i, m in enumerate(maint)],
        "graceful_shutdown": boolean(cfg["graceful_shutdown"], (*path, "graceful_shutdown")),
        "drain": integer(cfg["drain"], (*path, "drain"), 0, 3600, "the longest a release waits for the node's "
                         "connections to finish (seconds)"),
        "gate": gate(cfg["gate"]),
        "extra": extra(cfg["extra"], (*path, "extra")),
    }


def peers(raw: Any, local_as: int) -> list[dict[str, Any]]:
    """proxytier:bgp:peers -> [{"name": "peer<n>" (BIRD protocol name, 1-based in pillar order),
    "address", "family" (4|6), "asn", "ibgp", "password", "bfd", "path"}]: at least one, directly
    connected routers (sessions are single-hop, `direct`), each address once, unicast and global."""
    path: tuple[Any, ...] = ("bgp", "peers")
    if not isinstance(raw, list) or not raw:
        raise fail(path, raw, "list the routers to announce to: [{address: 198.18.0.1, asn: 64496}]")
    out, seen = [], {}
    for i, given in enumerate(raw):
        p = merge(PEER_DEFAULTS, given, (*path, i))
        if p["address"] is None:
            raise fail((*path, i, "address"), None, "the router's address on the node's link, e.g. 198.18.0.1")
        addr = ip(p["address"], (*path, i, "address"))
        if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr.is_link_local:
            raise fail((*path, i, "address"), p["address"], "a router's global unicast address on the node's link "
                       "(not multicast, loopback, link-local or unspecified)")
        if str(addr) in seen:
            raise fail((*path, i, "address"), p["address"], f"duplicate of proxytier:bgp:peers:{seen[str(addr)]}; "
                       "one session per router")
        seen[str(addr)] = i
        if p["asn"] is None:
            raise fail((*path, i, "asn"), None, "the router's AS number, e.g. 64496")
        peer_as = asn(p["asn"], (*path, i, "asn"))
        out.append({
            "name": f"peer{i + 1}",
            "address": str(addr),
            "family": addr.version,
            "asn": peer_as,
            "ibgp": peer_as == local_as,
            "password": _password(p["password"], (*path, i, "password")),
            "bfd": boolean(p["bfd"], (*path, i, "bfd")),
            "path": (*path, i),
        })
    return out


def gate(raw: dict[str, Any]) -> dict[str, Any]:
    """proxytier:bgp:gate -> {"table" (kernel table 1..2^32-1, not 253..255), "interval" (seconds
    between HAProxy checks, 0.05..5), "fall", "rise" (checks in a row, 1..100)}."""
    path: tuple[Any, ...] = ("bgp", "gate")
    table = raw["table"]
    if isinstance(table, bool) or not isinstance(table, int) or not 1 <= table <= 2**32 - 1 or table in RESERVED_TABLES:
        raise fail((*path, "table"), table, "a kernel routing table of the gate's own: 1..4294967295 except 253, "
                   "254 and 255 (default, main, local); nothing else may use it")
    interval = raw["interval"]
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.05 <= interval <= 5:
        raise fail((*path, "interval"), interval, "seconds between two checks of HAProxy, 0.05..5 (the withdraw "
                   "follows HAProxy's death by interval x fall)")
    return {
        "table": table,
        "interval": interval,
        "fall": integer(raw["fall"], (*path, "fall"), 1, 100, "fall (failed checks in a row)"),
        "rise": integer(raw["rise"], (*path, "rise"), 1, 100, "rise (passed checks in a row)"),
    }


def service_addresses(raw_vips: Any, pool: Any) -> list[dict[str, Any]]:
    """proxytier:vips in BGP mode: the service addresses every node announces, each
    {"iface": IPv4Interface|IPv6Interface (a host route: /32 or /128), "path"}. No VRRP key (vrid,
    owner, interface) and no vip_pool: every node announces every address. At least one; unique."""
    has_pool = isinstance(pool, dict) and any(pool.get(k) for k in ("addresses", "addresses6", "pins"))
    if has_pool:
        raise fail(("vip_pool",), pool, "vip_pool hands one VRRP VIP to each member; with vip_mode bgp every "
                   "node announces every address: list them in proxytier:vips and remove vip_pool")
    if not isinstance(raw_vips, list) or not raw_vips:
        raise fail(("vips",), raw_vips, "list at least one service address to announce: [{address: 198.18.0.100}]")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_vips):
        entry = {"address": raw} if isinstance(raw, str) else raw
        if isinstance(entry, dict):
            for k in ("vrid", "owner", "interface"):
                if entry.get(k) is not None:
                    raise fail(("vips", i, k), entry[k], f"{k} is a VRRP setting; with vip_mode bgp every node "
                               "announces every address: remove it (bgp:interface says where addresses live)")
        cfg = merge({"address": None, "vrid": None, "owner": None, "interface": None}, entry, ("vips", i))
        iface = vip(cfg["address"], ("vips", i, "address"))
        if iface.network.prefixlen != iface.network.max_prefixlen:
            raise fail(("vips", i, "address"), cfg["address"], f"announced as a host route: write {iface.ip} "
                       f"(or {iface.ip}/{iface.network.max_prefixlen})")
        if str(iface.ip) in seen:
            raise fail(("vips", i, "address"), cfg["address"], f"duplicate of proxytier:vips:{seen[str(iface.ip)]}; "
                       "remove one")
        seen[str(iface.ip)] = i
        out.append({"iface": iface, "path": ("vips", i)})
    return out


def check_reach(addrs: list[dict[str, Any]], bgp: dict[str, Any], members: list[dict[str, str]]) -> None:
    """Every family of service addresses has a peer of that family (else it would never be
    announced), and every member has an address of each peer's family (its session's source)."""
    families = {p["family"] for p in bgp["peers"]}
    for a in addrs:
        fam = a["iface"].version
        if fam not in families:
            raise fail((*a["path"], "address"), str(a["iface"].ip), f"no {family_name(fam)} peer in "
                       f"proxytier:bgp:peers would carry this {family_name(fam)} address: add one, or remove it")
    for p in bgp["peers"]:
        for m in members:
            if address_of(m, p["family"]) is None:
                raise fail((*p["path"], "address"), p["address"], f"member {m['id']} has no "
                           f"{family_name(p['family'])} address to peer from; give it one (address6 for IPv6) "
                           "or remove this peer")


def node_bgp(
    bgp: dict[str, Any], addrs: list[dict[str, Any]], me: dict[str, str], members: list[dict[str, str]],
    params: dict[str, Any], monitor_port: int,
) -> dict[str, Any]:
    """The `bgp` part of one node's model: the validated settings with this node's router id, its
    source address per peer ("local"), whether it is in maintenance, the addresses to announce per
    family, and what the SLS and the gate need (paths, the gate's configuration). Raises
    ProxytierError for a maintenance id that is no member, or a node without an IPv4 router id."""
    ids = [m["id"] for m in members]
    for i, mid in enumerate(bgp["maintenance"]):
        if mid not in ids:
            raise fail(("bgp", "maintenance", i), mid, f"not a member ({', '.join(ids)}); remove it")
    rid = bgp["router_id"] or address_of(me, 4)
    if rid is None:
        raise fail(("bgp", "router_id"), None, f"{me['id']} has no IPv4 address to take its router id from: set "
                   "router_id per node (pillar targeted at it), an IPv4 address unique among the speakers")
    v4 = [str(a["iface"].ip) for a in addrs if a["iface"].version == 4]
    v6 = [str(a["iface"].ip) for a in addrs if a["iface"].version == 6]
    where = files(params)
    gate_cfg = {
        "table": bgp["gate"]["table"],
        "interval": bgp["gate"]["interval"],
        "fall": bgp["gate"]["fall"],
        "rise": bgp["gate"]["rise"],
        "interface": bgp["interface"],
        "addresses": v4 + v6,
        "monitor_url": f"http://127.0.0.1:{monitor_port}/proxytier-monitor",
        "hold_file": params.get("bgp_hold_file", "/run/proxytier-bgp-hold"),
        "state_file": gate_state_file(params),
        "graceful_proto": GRACEFUL_PROTO,
    }
    return {
        "asn": bgp["asn"],
        "router_id": rid,
        "interface": bgp["interface"],
        "hold_time": bgp["hold_time"],
        "keepalive_time": bgp["keepalive_time"],
        "connect_retry_time": bgp["connect_retry_time"],
        "bfd": bgp["bfd"],
        "bfd_used": any(p["bfd"] for p in bgp["peers"]),
        "communities": bgp["communities"],
        # a peer's password never enters the model (printed, passed as state context, kept by the job
        # cache): its sha256 only, so a change still changes the model; the template asks
        # proxytier.bgp_password for the text (`password`, below)
        "peers": [
            {**{k: v for k, v in p.items() if k not in ("path", "password")},
             "password": None if p["password"] is None else _digest(p["password"]),
             "local": address_of(me, p["family"])}
            for p in bgp["peers"]
        ],
        "maintenance": me["id"] in bgp["maintenance"],
        "graceful_shutdown": bgp["graceful_shutdown"],
        "drain": bgp["drain"],
        "graceful_shutdown_community": list(GRACEFUL_SHUTDOWN),
        "addresses4": v4,
        "addresses6": v6,
        "gate": gate_cfg,
        "extra": bgp["extra"],
        "gate_unit": {
            "user": params.get("check_user", "proxytier-check"),
            "script": where["gate_script"],
            "python3": params.get("python3", "/usr/bin/python3"),
            "ip": params.get("ip_bin", "/usr/sbin/ip"),
            "runtime_directory": _runtime_directory(gate_cfg["state_file"]),
            "after": [f"{params.get('services', {}).get(d, d)}.service" for d in ("haproxy",)],
        },
        "paths": {k: where[k] for k in ("config", "bin", "gate_config", "gate_unit")},
        "package": where["package"],
        "service": where["service"],
        "user": where["user"],
    }


def files(params: dict[str, Any]) -> dict[str, str]:
    """Where BGP mode puts things on a node, from the OS parameters (each key's default here):
    {"package" (bird2), "service" (bird), "user" (bird), "config" (/etc/bird/bird.conf), "bin"
    (/usr/sbin/bird), "gate_config" (/etc/proxytier/bgp-gate.json), "gate_unit"
    (<systemd_dropin_dir>/proxytier-bgp-gate.service), "gate_script"
    (<libexec_dir>/proxytier_bgp_gate.py), "bird_dropin" (BIRD's proxytier drop-in, systemd_dropins)}.
    The model of BGP mode reads them here, and so does keepalived.sls in VRRP mode
    (``proxytier.bgp_files``), to take away what BGP mode left."""
    dropin_dir = params.get("systemd_dropin_dir", "/etc/systemd/system")
    service = params.get("bird_service", "bird")
    return {
        "package": params.get("bird_pkg", "bird2"),
        "service": service,
        "user": params.get("bird_user", "bird"),
        "config": params.get("bird_config", "/etc/bird/bird.conf"),
        "bin": params.get("bird_bin", "/usr/sbin/bird"),
        "gate_config": params.get("bgp_gate_config", "/etc/proxytier/bgp-gate.json"),
        "gate_unit": f"{dropin_dir}/proxytier-bgp-gate.service",
        "gate_script": f"{params.get('libexec_dir', '/usr/local/libexec/proxytier')}/proxytier_bgp_gate.py",
        "bird_dropin": f"{dropin_dir}/{service}.service.d/proxytier.conf",
    }


def gate_state_file(params: dict[str, Any]) -> str:
    """Where the gate writes its state (lookup bgp_gate_state_file), for the gate and the exporter."""
    return str(params.get("bgp_gate_state_file", "/run/proxytier-bgp-gate/state.json"))


def exporter_sources(params: dict[str, Any]) -> dict[str, str]:
    """What the exporter's bgp collector reads in BGP mode, from the OS parameters: {"bird_socket" (BIRD's
    control socket, Debian's /run/bird/bird.ctl: owner bird, group bird, mode 0660, as bird2 2.0.12 makes it
    for `bird -u bird -g bird`), "bird_group" (the socket's group, a supplementary group of the exporter's
    unit), "bird_config_dir" (the directory of bird.conf, kept out of the exporter's sight: bird.conf is
    group-readable by that group and holds the peers' passwords), "state_file" (the gate's state file)}."""
    return {
        "bird_socket": str(params.get("bird_socket", "/run/bird/bird.ctl")),
        "bird_group": str(params.get("bird_group", params.get("bird_user", "bird"))),
        "bird_config_dir": files(params)["config"].rsplit("/", 1)[0] or "/",
        "state_file": gate_state_file(params),
    }


def _digest(secret: str) -> dict[str, str]:
    return {"sha256": hashlib.sha256(secret.encode()).hexdigest()}


def _runtime_directory(state_file: str) -> str:
    """The gate's state file's directory as systemd's RuntimeDirectory= (relative to /run), which
    systemd makes for the gate's user."""
    directory = state_file.rsplit("/", 1)[0]
    if not directory.startswith("/run/") or directory == "/run":
        raise fail(("lookup", "bgp_gate_state_file"), state_file, "a file in a directory of its own under /run, "
                   "like /run/proxytier-bgp-gate/state.json (systemd's RuntimeDirectory= makes it for the gate)")
    return directory[len("/run/"):]


def password(raw_bgp: Any, name: str) -> str:
    """The TCP-MD5 password of peer `name` ("peer<n>") from the pillar's bgp section, validated as
    `settings` validates it: what bird.conf.jinja writes (through proxytier.bgp_password), so that
    the text never passes through the model. Raises ProxytierError for a peer without one."""
    cfg = settings(raw_bgp)
    for p in cfg["peers"]:
        if p["name"] == name and p["password"] is not None:
            return str(p["password"])
    raise ProxytierError(f"proxytier:bgp:peers: no peer {name!r} with a password")


def check_exporter(raw_pillar: Any) -> None:
    """In BGP mode no keepalived runs: the exporter reads none (exporter:keepalived_source none);
    another source named in pillar is a mistake."""
    given = raw_pillar.get("exporter") if isinstance(raw_pillar, dict) else None
    source = given.get("keepalived_source") if isinstance(given, dict) else None
    if source not in (None, "none"):
        raise ProxytierError(
            f"proxytier:exporter:keepalived_source = {source!r}: with vip_mode bgp no keepalived runs; "
            "remove it (the exporter reads none)"
        )
