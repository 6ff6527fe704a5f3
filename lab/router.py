"""The lab's router for BGP mode (lab.bgp): a network namespace on the bridge running BIRD 2 with an eBGP
session to every node, ECMP over the nodes that announce the service address, and a client namespace
behind it whose traffic to the service address goes through it.

    host bridge ptlab0 (198.18.0.0/24) -- ptl-router == eth0 of ptlab-router (198.18.0.2, fixed MAC)
    ptlab-router: r-client (198.18.9.1/24) == eth0 of ptlab-client (198.18.9.2/24, 198.18.0.0/15 via .1)

- BIRD (the host's bird2) in the router: AS 64496, one eBGP session per lab node (AS 64512; `direct`,
  BFD, hold 9 s / keepalive 3 s as the formula's defaults), importing only host routes in 198.18.0.0/15,
  exporting nothing; `protocol kernel { merge paths on; }` puts the multipath route into kernel table
  BIRD_TABLE (the bench's layout, bench/ecmp/run.py). `net.ipv4.fib_multipath_hash_policy = 1`: the hash
  takes the ports (L4), so one client's connections spread over the nodes. eBGP, not iBGP: the tier is an
  AS of its own to the network, as an operator peers it with their routers; every node's path then has
  the same AS path (64512) from the same neighbour AS, which is what BIRD's `merge paths` needs to merge
  them, and the router needs no route-reflector or next-hop-self setup.
- Profiles (how the router forwards; BGP is the same in both, a switch never touches a session):
  - plain: `ip rule to SERVICE lookup BIRD_TABLE`: BIRD's multipath route, the kernel's hash-threshold;
  - resilient: no rule; lab/resilient.py (the ECMP bench's helper, moved here) programs the main table's
    route for SERVICE on a resilient next-hop group from `birdc show route` (buckets 512, idle_timer 2,
    unbalanced_timer 0, weight 256; its docstring has the kernel facts), and drains a node whose path
    carries GRACEFUL_SHUTDOWN (weight 1 until its buckets are idle: its established flows stay on it). It
    stops by itself after an hour (`python -m lab bgp --profile resilient` starts it again).
- The client namespace has a route to 198.18.0.0/15 via the router only (no default route).

Everything here is under config.STATE/router (BIRD's config, control socket, log; pid files); `stop()`
and `clean()` end the processes by pid (checked by their command line) and delete both namespaces.
Addresses: 198.18.0.2 on the bridge and 198.18.9.0/24, nothing else (config.check_lab_address).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lab import config, net
from lab.resilient import GSHUT_IMPORT_FILTER
from lab.sh import LabError, cmdline, find_pids, pid_alive, read_pidfile, run, spawn, stop_pids, wait_for

DIR = config.STATE / "router"
BIRD_CONF = DIR / "bird.conf"
BIRD_CTL = DIR / "bird.ctl"
BIRD_PID = DIR / "bird.pid"
HELPER_PID = DIR / "resilient.pid"
PROFILE_FILE = DIR / "profile"
PROFILES = ("plain", "resilient")
#: the kernel table BIRD's multipath route goes to (read through the plain profile's rule)
BIRD_TABLE = 100
RULE_PREF = 1000
#: the resilient next-hop group's id (its members get ids above it: lab/resilient.py --member-base)
GROUP = 100
BUCKETS = 512
#: a bucket not hit for this long is idle and may move (the lab's long-lived flows send every 0.5 s)
IDLE_TIMER = 2
#: the longest a gracefully leaving node keeps its busy buckets
DRAIN_TIMEOUT = 120
HELPER_SECONDS = 3600  # lab/resilient.py's own limit
HOLD_TIME, KEEPALIVE_TIME = 9, 3  # the formula's defaults (proxytier_bgp.BGP_DEFAULTS)
BFD = {"min_rx_interval": 100, "min_tx_interval": 100, "multiplier": 3}  # the formula's defaults too
ROUTER_MAC = "02:70:c6:12:00:02"  # fixed, like the backends' (net: a restarted router keeps the nodes' ARP right)


def service_prefix() -> str:
    return f"{config.BGP_SERVICE}/32"


def session_name(node: config.Node) -> str:
    """BIRD's protocol name of the session to a node: its name (proxy1)."""
    return node.name


def bird_conf(nodes: list[config.Node]) -> str:
    """The router's BIRD 2 configuration: one eBGP session per node in `nodes` (every node the lab can
    have, so a node that joins peers without a reconfiguration), BFD, GRACEFUL_SHUTDOWN honoured (RFC 8326
    section 4: such a path gets local preference 0, so the multipath route leaves it out while another
    path is preferred), the multipath route into kernel table BIRD_TABLE."""
    lines = [
        "# proxytier lab router (lab/router.py): eBGP to every lab node, ECMP over the ones that announce",
        "log stderr all;",
        f"router id {config.ROUTER_ADDR};",
        "protocol device { }",
        "protocol bfd { }",
        f"protocol kernel ecmp4 {{ kernel table {BIRD_TABLE}; merge paths on; "
        "ipv4 { import none; export all; }; }",
    ]
    for n in nodes:
        config.check_lab_address(n.address)
        lines.append(
            f"protocol bgp {session_name(n)} {{ description \"{n.name} at {n.address}\"; "
            f"local {config.ROUTER_ADDR} as {config.ROUTER_ASN}; neighbor {n.address} as {config.TIER_ASN}; "
            f"direct; hold time {HOLD_TIME}; keepalive time {KEEPALIVE_TIME}; connect delay time 1; "
            f"connect retry time 2; bfd {{ min rx interval {BFD['min_rx_interval']} ms; "
            f"min tx interval {BFD['min_tx_interval']} ms; multiplier {BFD['multiplier']}; }}; "
            f"ipv4 {{ import filter {{ if ! (net ~ [ 198.18.0.0/15{{32,32}} ]) then reject; {GSHUT_IMPORT_FILTER} "
            "accept; }; export none; }; }"
        )
    return "\n".join(lines) + "\n"


# ---- reading the router's state back (pure parts first)


def parse_sessions(text: str) -> dict[str, str]:
    """`birdc show protocols` -> {BGP protocol name: its info column ("Established", "Active", ...,
    "" when down)}; other protocols left out."""
    from lab.resilient import parse_protocols

    return {name: p["info"] for name, p in parse_protocols(text).items() if p["proto"] == "BGP"}


def parse_route_next_hops(routes: list[dict[str, Any]]) -> list[str]:
    """`ip -j route show PREFIX table T` (parsed JSON) -> the gateways the route forwards to, sorted: its
    `nexthops` (a multipath route) or its own `gateway` (one path); [] without a route."""
    out: list[str] = []
    for r in routes:
        if r.get("nexthops"):
            out += [h["gateway"] for h in r["nexthops"] if h.get("gateway")]
        elif r.get("gateway"):
            out.append(r["gateway"])
    return sorted(out)


def parse_group_next_hops(nexthops: list[dict[str, Any]], group: int) -> list[str]:
    """`ip -j nexthop show` (parsed JSON) -> the gateways of next-hop group `group`'s members, sorted
    ([] without the group)."""
    by_id = {n["id"]: n for n in nexthops}
    members = by_id.get(group, {}).get("group") or []
    return sorted(by_id[m["id"]]["gateway"] for m in members if m["id"] in by_id and by_id[m["id"]].get("gateway"))


# ---- the namespaces and processes


def ns_run(ns: str, *cmd: str, check: bool = True, timeout: float = 20) -> str:
    return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout).stdout


def birdc(*args: str) -> str:
    """`birdc -s CTL ARGS` in the router ('' when BIRD does not answer)."""
    res = run(["birdc", "-s", BIRD_CTL, *args], check=False, timeout=10)
    return res.stdout if res.returncode == 0 else ""


def bird_pid() -> int | None:
    pid = read_pidfile(BIRD_PID)
    return pid if pid and pid_alive(pid) and str(BIRD_CTL) in " ".join(cmdline(pid)) else None


def helper_pid() -> int | None:
    pid = read_pidfile(HELPER_PID)
    return pid if pid and pid_alive(pid) and "lab.resilient" in " ".join(cmdline(pid)) else None


def running() -> bool:
    return config.ROUTER_NETNS in net.netns_list() and bird_pid() is not None


def profile() -> str | None:
    """The profile the running router forwards with (None when it is not running)."""
    if not running():
        return None
    try:
        return PROFILE_FILE.read_text().strip() or None
    except OSError:
        return None


def _namespaces() -> None:
    """Both namespaces and their links, from nothing (no IPv6 at all: the lab's only IPv6 is 2001:2::/48)."""
    for ns in (config.ROUTER_NETNS, config.CLIENT_NETNS):
        run(["ip", "netns", "add", ns])
        for key in ("all", "default"):
            ns_run(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1", f"net.ipv4.conf.{key}.rp_filter=0")
        ns_run(ns, "ip", "link", "set", "lo", "up")
    r, c = config.ROUTER_NETNS, config.CLIENT_NETNS
    ns_run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
    # the client opens a connection per request to one address and port: at ~500/s the TIME_WAIT sockets
    # use up the default 28k ephemeral ports within a minute, and connect() fails (EADDRNOTAVAIL, seen as
    # a burst of OSError), so it reuses TIME_WAIT ports (safe with TCP timestamps) from the whole range
    ns_run(c, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535")
    for addr in (config.ROUTER_ADDR, config.ROUTER_CLIENT_ADDR, config.CLIENT_ADDR):
        config.check_lab_address(addr)
    # the router's bridge port
    run(["ip", "link", "add", config.ROUTER_VETH, "type", "veth", "peer", "name", "eth0", "address", ROUTER_MAC,
         "netns", r])
    net.no_ipv6(config.ROUTER_VETH)
    run(["ip", "link", "set", config.ROUTER_VETH, "master", config.BRIDGE, "up"])
    ns_run(r, "ip", "address", "add", f"{config.ROUTER_ADDR}/{config.PREFIX}", "dev", "eth0")
    ns_run(r, "ip", "link", "set", "eth0", "up")
    # the client's own link
    run(["ip", "link", "add", "r-client", "netns", r, "type", "veth", "peer", "name", "eth0", "netns", c])
    prefix = config.CLIENT_NET.prefixlen
    ns_run(r, "ip", "address", "add", f"{config.ROUTER_CLIENT_ADDR}/{prefix}", "dev", "r-client")
    ns_run(r, "ip", "link", "set", "r-client", "up")
    ns_run(c, "ip", "address", "add", f"{config.CLIENT_ADDR}/{prefix}", "dev", "eth0")
    ns_run(c, "ip", "link", "set", "eth0", "up")
    ns_run(c, "ip", "route", "add", "198.18.0.0/15", "via", config.ROUTER_CLIENT_ADDR)


def _start_bird() -> None:
    DIR.mkdir(parents=True, exist_ok=True)
    BIRD_CONF.write_text(bird_conf(config.ALL_NODES))
    run(["bird", "-p", "-c", BIRD_CONF])
    spawn(["ip", "netns", "exec", config.ROUTER_NETNS, "bird", "-f", "-c", BIRD_CONF, "-s", BIRD_CTL],
          DIR / "bird.log", BIRD_PID)
    wait_for("the router's BIRD to answer", lambda: "BIRD" in birdc("show", "status"), timeout=15, interval=0.2)


def _start_helper() -> None:
    if helper_pid():
        return
    spawn(["ip", "netns", "exec", config.ROUTER_NETNS, sys.executable, "-m", "lab.resilient",
           "--socket", BIRD_CTL, "--prefix", service_prefix(), "--group", str(GROUP), "--member-base", str(GROUP),
           "--buckets", str(BUCKETS), "--idle-timer", str(IDLE_TIMER), "--unbalanced-timer", "0",
           "--weight", "256", "--drain", "--drain-timeout", str(DRAIN_TIMEOUT),
           "--seconds", str(HELPER_SECONDS)], DIR / "resilient.log", HELPER_PID, cwd=config.REPO)


def _stop_helper() -> None:
    pid = read_pidfile(HELPER_PID)
    if pid:
        stop_pids([pid], marker="lab.resilient", grace=5)
    HELPER_PID.unlink(missing_ok=True)


def _rule(on: bool) -> None:
    rule = ["ip", "rule", "to", service_prefix(), "lookup", str(BIRD_TABLE), "pref", str(RULE_PREF)]
    present = f"lookup {BIRD_TABLE}" in ns_run(config.ROUTER_NETNS, "ip", "rule", "show", "pref", str(RULE_PREF))
    if on and not present:
        ns_run(config.ROUTER_NETNS, *rule[:2], "add", *rule[2:])
    elif not on and present:
        ns_run(config.ROUTER_NETNS, *rule[:2], "del", *rule[2:])


def start(profile_name: str = "plain") -> None:
    """The router and the client namespace up (made when missing), forwarding with `profile_name`
    ("plain" or "resilient"; switching keeps BIRD and its sessions). LabError if BIRD does not start."""
    if profile_name not in PROFILES:
        raise LabError(f"router profile {profile_name!r}: one of {', '.join(PROFILES)}")
    if not net.link_exists(config.BRIDGE):
        raise LabError(f"no bridge {config.BRIDGE}: bring the lab up first (python -m lab up)")
    if not running():
        clean()
        _namespaces()
        _start_bird()
    # the rule wins over the main table: the switch is the rule's addition or deletion, made while the
    # profile switched to has its route ready (the helper's group, or BIRD's route in BIRD_TABLE)
    if profile_name == "plain":
        _rule(True)
        _stop_helper()
    else:
        _start_helper()
        want = bird_next_hops()
        if want:
            wait_for("the resilient helper's group", lambda: parse_group_next_hops(_ip_json("nexthop", "show"),
                                                                                  GROUP) == want, timeout=15,
                     interval=0.1)
        _rule(False)
    PROFILE_FILE.write_text(profile_name + "\n")


def stop() -> None:
    """Stop the helper and BIRD (by pid) and delete both namespaces (their links and routes with them)."""
    clean()


def clean() -> None:
    """Remove the router and client of this or a killed run: processes by pid file and by command line
    (the router's control socket, the helper's module), then the namespaces and the bridge port."""
    pids = {read_pidfile(BIRD_PID) or 0, read_pidfile(HELPER_PID) or 0}
    pids |= set(find_pids("bird", str(BIRD_CTL))) | set(find_pids("lab.resilient", service_prefix(), str(BIRD_CTL)))
    pids.discard(0)
    if pids:
        stop_pids(sorted(pids), marker=str(BIRD_CTL), grace=5)
    listed = net.netns_list()
    for ns in (config.ROUTER_NETNS, config.CLIENT_NETNS):
        if ns in listed:
            run(["ip", "netns", "del", ns])
    if net.link_exists(config.ROUTER_VETH):  # usually gone with the namespace already
        run(["ip", "link", "del", config.ROUTER_VETH], check=False)
    for f in (BIRD_PID, HELPER_PID, PROFILE_FILE):
        f.unlink(missing_ok=True)


def sessions() -> dict[str, str]:
    """{node name: its BGP session's state as BIRD says it ("Established", ...)} for the lab's nodes."""
    got = parse_sessions(birdc("show", "protocols"))
    return {n.name: got.get(session_name(n), "") for n in config.NODES}


def bird_next_hops() -> list[str]:
    """The node addresses BIRD's route for the service address has (one per announcing node), sorted."""
    from lab.resilient import parse_routes

    return sorted({r.via for r in parse_routes(birdc("show", "route", service_prefix()))})


def graceful_next_hops() -> list[str]:
    """The node addresses whose path for the service address carries GRACEFUL_SHUTDOWN (RFC 8326), sorted."""
    from lab.resilient import parse_routes

    return sorted({r.via for r in parse_routes(birdc("show", "route", service_prefix(), "all")) if r.graceful})


def next_hops() -> list[str]:
    """The node addresses the router's kernel forwards the service address to now, sorted: the multipath
    route in BIRD_TABLE (plain) or the resilient group's members (resilient)."""
    if profile() == "resilient":
        return parse_group_next_hops(_ip_json("nexthop", "show"), GROUP)
    return parse_route_next_hops(_ip_json("route", "show", service_prefix(), "table", str(BIRD_TABLE)))


def _ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ARGS` in the router, parsed; [] when `ip` fails (a kernel table BIRD has not written to yet
    does not exist: "FIB table does not exist", after a partial "[" on stdout)."""
    res = run(["ip", "netns", "exec", config.ROUTER_NETNS, "ip", "-j", *args], check=False, timeout=10)
    return json.loads(res.stdout.strip() or "[]") if res.returncode == 0 else []


def wait_next_hops(want: list[str], timeout: float = 60) -> float:
    """Wait until the router forwards the service address to exactly `want` (node addresses) -> seconds."""
    return wait_for(f"the router to forward {config.BGP_SERVICE} to {sorted(want)}",
                    lambda: next_hops() == sorted(want), timeout=timeout, interval=0.2)


def client_load(requests: int = 300, seconds: float = 60, concurrency: int = 4, timeout: float = 2.0,
                rate: float = 0.0) -> dict[str, Any]:
    """Bounded load (lab.load: a new connection per request, each given `timeout` s; at most `rate` requests/s
    over the `concurrency` workers when > 0) from the client namespace to the service address, through the
    router -> LoadResult.as_dict() ({"ok", "failed", "by_node", "by_backend", "clients", "errors", "seconds",
    "max_gap", "failed_at"}). LabError if the load tool prints no result."""
    res = run(["ip", "netns", "exec", config.CLIENT_NETNS, sys.executable, "-m", "lab", "load", "--target",
               config.BGP_SERVICE, "--requests", str(requests), "--seconds", str(seconds), "--concurrency",
               str(concurrency), "--timeout", str(timeout), "--rate", str(rate), "--json"], check=False,
              timeout=seconds + 60, cwd=config.REPO)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise LabError(f"no load result from the client namespace:\n{res.stdout[-2000:]}{res.stderr[-2000:]}") from e


def status() -> list[str]:
    """Lines for `python -m lab status`: the router's profile, its sessions and next hops."""
    if not running():
        return []
    lines = [f"router   {profile() or '?':<10} {config.ROUTER_ADDR} (BGP mode: {config.BGP_SERVICE} via "
             f"{', '.join(next_hops()) or 'nobody'})"]
    for name, state in sessions().items():
        lines.append(f"  BGP session {name:<8} {state or 'down'}")
    return lines


def log_tail(lines: int = 20) -> str:
    """The last lines of the router's BIRD and helper logs (for error messages)."""
    out = []
    for f in (DIR / "bird.log", DIR / "resilient.log"):
        try:
            out.append(f"{f}:\n" + "\n".join(Path(f).read_text(errors="replace").splitlines()[-lines:]))
        except OSError:
            continue
    return "\n".join(out)

