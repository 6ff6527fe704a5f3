"""A router's service route on a Linux resilient next-hop group, programmed from BIRD's BGP routes.

Neither bird2 (2.0.12) nor FRR 8.4 installs resilient next-hop groups: BIRD's `protocol kernel { merge
paths on; }` installs a plain multipath route (hash-threshold, RFC 2992), where one next hop leaving or
joining moves part of every other next hop's hash range, so established flows of nodes that stay land on
a node that resets them. This helper runs beside BIRD on the router, polls `birdc show route PREFIX all`
(the next hops BGP learned for the service prefix, one per announcing node, with their communities),
and keeps, with `ip`:

    ip nexthop replace id M via ADDRESS dev IFACE          one per next hop (ids from --member-base up)
    ip nexthop add id G group M1,W/M2,W/... type resilient buckets B idle_timer I unbalanced_timer U
    ip route replace PREFIX nhid G [table T]
    ip nexthop replace id G group ... type resilient idle_timer I unbalanced_timer U   on every change

BIRD's own kernel export must go elsewhere (a kernel table of its own, or none), so that only this route
serves PREFIX. The lab's router runs it in its resilient profile (lab/router.py), and so does the ECMP
bench (bench/ecmp/run.py). Standard library only; needs CAP_NET_ADMIN in the router's network namespace.

Kernel facts this relies on (Linux >= 5.13: the resilient groups were merged into net-next as
2a0186a37700 "Merge branch 'nexthop-Resilient-next-hop-groups'" on 2021-03-11, after 5.12's merge
window; iproute2 >= 5.13 for `type resilient`; this host: kernel 6.18, iproute2 6.1):

- Documentation/networking/nexthop-group-resilient.rst (https://docs.kernel.org/networking/
  nexthop-group-resilient.html): the group is a table of B buckets; a packet's flow hash picks a bucket
  and the bucket names the next hop. Each bucket has a last-used time; it is "idle" when no packet hit
  it for `idle_timer`. Upkeep moves a bucket to an underweight next hop only if (1) it has no next hop,
  (2) its next hop was removed, (3) it is idle and its next hop is overweight, or (4) its next hop is
  overweight and the table has been out of balance longer than `unbalanced_timer` (if that is not 0).
  `unbalanced_timer 0`: the table "will stay out of balance until idle buckets do appear, possibly
  never". The netlink timers are in clock_t; `ip` takes seconds.
- ip-nexthop(8) (iproute2 6.1): `buckets` "Cannot be changed for an existing group"; `idle_timer`
  default 120 s; `unbalanced_timer` default 0 ("no rebalancing will take place"). Weights are 1..256.
- net/ipv4/nexthop.c (torvalds/linux, replace_nexthop_grp_res -> nh_res_table_migrate_buckets): a
  replace keeps the old bucket table; every bucket whose next hop is still in the new group keeps it
  (only re-pointed at the new group's entry), buckets of removed next hops are unset, then the new
  weights' wants counts are computed and upkeep runs. So `ip nexthop replace` of the group removes a
  leaver by moving only the leaver's buckets, and adds a joiner by moving idle buckets of the others
  (all of them at idle_timer 0: a bucket is idle as soon as it is not hit in the same jiffy).
- Measured on this host (kernel 6.18, tests/render/test_ecmp_resilient.py): buckets that no packet ever
  hit move to a joiner even at idle_timer 120, so "busy" means hit by traffic; with traffic every 0.5 s
  and idle_timer 3, a join broke no connection (bench/ecmp/run.py, BENCHMARKS.md section ecmp).

Graceful leave (`--drain`): a node that announces its path with the GRACEFUL_SHUTDOWN community
(65535:0, RFC 8326; proxytier's gate does on a graceful hold, salt/_utils/proxytier_bgp.py) is leaving on
purpose and still serves. Instead of removing it (which moves all its buckets, so all its connections
reset elsewhere), the helper keeps it in the group at weight 1 (the others at --weight): its idle
buckets move to the others at once, its busy buckets stay until they are idle for `idle_timer` (its
established flows finish where they are), and it is removed when it holds no busy bucket or after
--drain-timeout seconds. A path that is withdrawn (HAProxy dead, the session lost, or the leave's final
withdraw) goes at once: a dead node is never drained, which a router cannot tell from a plain withdraw.
Without --drain, a GRACEFUL_SHUTDOWN path is left out like a less preferred one (what a router that sets
its local preference to 0 does with ECMP), unless every path has it (then they all serve: RFC 8326's
last resort). New flows whose hash falls in a draining node's busy buckets still reach it, which serves
them. Run with `unbalanced_timer 0` (else the kernel moves busy buckets after U s anyway).
BIRD's side (the router): `show route PREFIX all` lists every path with its communities
(`BGP.community: (65535,0)`), preferred or not; the router's import filter should set
`bgp_local_pref = 0` on such paths (GSHUT_IMPORT_FILTER), so that BIRD's own multipath route drops them.

Usage (in the router's namespace):
    python -m lab.resilient --socket /run/bird.ctl --prefix 198.19.255.100/32 \\
        [--group 100] [--buckets 512] [--idle-timer 0] [--unbalanced-timer 0] [--weight 64] [--drain] \\
        [--seconds 600]
Prints one JSON line per change: {"t": epoch s, "members": [[address, dev, weight, draining]], "argv": [...]}.
Runs until SIGTERM or --seconds (at most 3600); with --cleanup (the default) it deletes its route, group
and next hops on the way out.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

#: `birdc show route` (BIRD 2.0.12): an entry line names its protocol in brackets ("unicast [n1 12:00:01.234]
#: * (100) [AS64512i]"); the next hop follows on its own line ("\tvia 198.19.241.2 on r-n1")
_ENTRY = re.compile(r"^(?:\S+)?\s+(?:unicast|unreachable|blackhole|prohibited)\s+\[(?P<proto>[\w.-]+)\s")
_VIA = re.compile(r"^\s+via\s+(?P<via>[0-9A-Fa-f.:]+)\s+on\s+(?P<dev>\S+)")
#: `birdc show route PREFIX all`: the path's communities ("\tBGP.community: (64512,100) (65535,0)")
_COMMUNITY = re.compile(r"^\s+BGP\.community:\s+(?P<list>.*)$")
#: RFC 8326's GRACEFUL_SHUTDOWN as BIRD prints it
GRACEFUL_SHUTDOWN = "(65535,0)"
#: what a router's BIRD puts in a BGP session's import filter to honour it (RFC 8326 section 4)
GSHUT_IMPORT_FILTER = "if (65535, 0) ~ bgp_community then bgp_local_pref = 0;"
#: `ip nexthop bucket show id G`: "id 100 index 3 idle_time 1.25 nhid 101"
_BUCKET = re.compile(r"\bindex\s+(?P<index>\d+)\s+idle_time\s+(?P<idle>[\d.]+)\s+nhid\s+(?P<nhid>\d+)")
MAX_WEIGHT = 256  # ip-nexthop(8) GROUP id[,weight]; the kernel keeps weight - 1 in a u8


@dataclass(frozen=True)
class Route:
    """One BGP path of the service prefix: the protocol (BIRD's session name), its next hop, and whether it
    carries GRACEFUL_SHUTDOWN (read only from `show route ... all`)."""

    proto: str
    via: str
    dev: str
    graceful: bool = False


@dataclass
class Member:
    """A next hop in the group: its nexthop object id, weight (1..256) and, while draining, since when
    (epoch seconds)."""

    via: str
    dev: str
    nhid: int
    weight: int
    draining_since: float | None = None


@dataclass
class Settings:
    """The group's settings: ids, buckets (>= 1, fixed once created), timers (whole seconds), the weight of
    serving members (1..256), drain on/off and its limit (seconds)."""

    prefix: str
    group: int = 100
    member_base: int = 100
    buckets: int = 512
    idle_timer: int = 0
    unbalanced_timer: int = 0
    weight: int = 64
    drain: bool = False
    drain_timeout: float = 120.0
    table: str | None = None


@dataclass
class State:
    """What the helper programmed: the members by address (in group order) and whether the group exists."""

    members: dict[str, Member] = field(default_factory=dict)
    group_exists: bool = False


def parse_routes(text: str) -> list[Route]:
    """`birdc show route PREFIX [all]` output -> its paths [Route(proto, via, dev, graceful)], in BIRD's
    order; with `all`, a path whose `BGP.community` line lists (65535,0) is graceful. Lines other than
    entries, `via` and community lines are ignored (the banner, "Table master4:", other attributes); an
    entry without a `via` (a blackhole, a device route) gives nothing."""
    out: list[Route] = []
    proto: str | None = None
    for line in text.splitlines():
        m = _ENTRY.match(line)
        if m:
            proto = m["proto"]
            continue
        v = _VIA.match(line)
        if v and proto is not None:
            out.append(Route(proto, v["via"], v["dev"]))
            continue
        c = _COMMUNITY.match(line)
        if c and out and out[-1].proto == proto and GRACEFUL_SHUTDOWN in c["list"].split():
            out[-1] = Route(proto, out[-1].via, out[-1].dev, True)
    return out


def parse_protocols(text: str) -> dict[str, dict[str, str]]:
    """`birdc show protocols` output -> {name: {"proto", "state", "info"}} (state: up, down, start, ...;
    info: "Established", "Active", ...); the header and banner lines are skipped. For lab/router.py."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[0] in ("Name", "BIRD") or parts[3] not in ("up", "down", "start", "stop",
                                                                                "flush"):
            continue
        out[parts[0]] = {"proto": parts[1], "state": parts[3], "info": parts[5].strip() if len(parts) > 5 else ""}
    return out


def parse_buckets(text: str) -> list[tuple[int, float, int]]:
    """`ip nexthop bucket show id G` -> [(index, idle seconds, nhid)]."""
    return [(int(m["index"]), float(m["idle"]), int(m["nhid"])) for m in _BUCKET.finditer(text)]


def busy_buckets(buckets: list[tuple[int, float, int]], nhid: int, idle_timer: float) -> int:
    """How many of next hop `nhid`'s buckets were hit within `idle_timer` seconds (busy: the kernel keeps
    them where they are while unbalanced_timer is 0)."""
    return sum(1 for _, idle, n in buckets if n == nhid and idle < idle_timer)


def reconcile(
    state: State, routes: list[Route], settings: Settings, now: float, buckets: list[tuple[int, float, int]],
) -> dict[str, Member]:
    """The members the group should have now -> {via: Member} (serving ones in BGP order, then draining
    ones). Serving: the paths without GRACEFUL_SHUTDOWN (all of them if every path has it). With
    settings.drain, a member whose path now has GRACEFUL_SHUTDOWN stays at weight 1 while it holds a busy
    bucket and settings.drain_timeout has not passed since its drain began; a member whose path is gone is
    dropped at once (a dead node is never drained)."""
    new: dict[str, Member] = {}
    used = {m.nhid for m in state.members.values()}

    def nhid_for(via: str) -> int:
        if via in state.members:
            return state.members[via].nhid
        n = settings.member_base + 1
        while n in used or n == settings.group:
            n += 1
        used.add(n)
        return n

    serving = [r for r in routes if not r.graceful] or routes
    for r in serving:
        if r.via not in new:
            new[r.via] = Member(r.via, r.dev, nhid_for(r.via), settings.weight)
    if not settings.drain or not new:
        return new
    graceful = {r.via for r in routes if r.graceful}
    for via, m in state.members.items():
        if via in new or via not in graceful:
            continue
        since = m.draining_since if m.draining_since is not None else now
        if now - since < settings.drain_timeout and (
                m.draining_since is None or busy_buckets(buckets, m.nhid, settings.idle_timer) > 0):
            new[via] = Member(via, m.dev, m.nhid, 1, since)
    return new


def group_spec(members: dict[str, Member]) -> str:
    """The `group` argument: "101,64/102,64/103,1"."""
    return "/".join(f"{m.nhid},{m.weight}" for m in members.values())


def commands(state: State, new: dict[str, Member], settings: Settings) -> list[list[str]]:
    """The `ip` commands (argv lists, in order) that take the kernel from `state` to `new`: next-hop
    objects for new members, then the group (add with buckets the first time, replace later: the
    kernel keeps the bucket table), the route on the group, and last the removed members' next hops
    (after no group references them). No members: the route and the group go."""
    table = ["table", settings.table] if settings.table else []
    timers = ["idle_timer", str(settings.idle_timer), "unbalanced_timer", str(settings.unbalanced_timer)]
    out: list[list[str]] = []
    for via, m in new.items():
        old = state.members.get(via)
        if old is None or old.dev != m.dev:
            out.append(["ip", "nexthop", "replace", "id", str(m.nhid), "via", via, "dev", m.dev])
    old_spec = group_spec(state.members) if state.group_exists else None
    if new:
        spec = group_spec(new)
        if not state.group_exists:
            out.append(["ip", "nexthop", "add", "id", str(settings.group), "group", spec, "type", "resilient",
                        "buckets", str(settings.buckets), *timers])
            out.append(["ip", "route", "replace", settings.prefix, "nhid", str(settings.group), *table])
        elif spec != old_spec:
            out.append(["ip", "nexthop", "replace", "id", str(settings.group), "group", spec, "type", "resilient",
                        *timers])
    elif state.group_exists:
        out.append(["ip", "route", "del", settings.prefix, *table])
        out.append(["ip", "nexthop", "del", "id", str(settings.group)])
    for via, m in state.members.items():
        if via not in new:
            out.append(["ip", "nexthop", "del", "id", str(m.nhid)])
    return out


def run_ip(argv: list[str]) -> bool:
    """Run one `ip` command; its error goes to stderr. -> success."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        print(f"{' '.join(argv)}: {res.stderr.strip()}", file=sys.stderr, flush=True)
    return res.returncode == 0


def birdc(socket: str, *args: str) -> str:
    """`birdc -s SOCKET ARGS` output ('' when BIRD does not answer within 5 s)."""
    try:
        return subprocess.run(["birdc", "-s", socket, *args], capture_output=True, text=True, timeout=5).stdout
    except subprocess.TimeoutExpired:
        return ""


class Helper:
    """The polling loop: BIRD's paths (and the group's buckets while draining) -> `ip`."""

    def __init__(self, socket: str, settings: Settings) -> None:
        self.socket, self.settings = socket, settings
        self.state = State()
        self.stop = False

    def step(self, now: float) -> None:
        routes = parse_routes(birdc(self.socket, "show", "route", self.settings.prefix, "all"))
        draining = any(m.draining_since is not None for m in self.state.members.values())
        buckets: list[tuple[int, float, int]] = []
        if draining and self.state.group_exists:
            res = subprocess.run(["ip", "nexthop", "bucket", "show", "id", str(self.settings.group)],
                                 capture_output=True, text=True, timeout=10)
            buckets = parse_buckets(res.stdout)
        new = reconcile(self.state, routes, self.settings, now, buckets)
        argv = commands(self.state, new, self.settings)
        if not argv:
            self.state.members = new  # drain timestamps carried
            return
        ok = all([run_ip(a) for a in argv])
        self.state = State(new, bool(new))
        print(json.dumps({"t": round(now, 3), "ok": ok, "argv": [" ".join(a) for a in argv],
                          "members": [[m.via, m.dev, m.weight, m.draining_since is not None]
                                      for m in new.values()]}), flush=True)

    def cleanup(self) -> None:
        for argv in commands(self.state, {}, self.settings):
            run_ip(argv)
        self.state = State()

    def run(self, seconds: float, interval: float, cleanup: bool) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stop", True))
        # a group or route of a killed run: start from nothing
        run_ip(["ip", "route", "del", self.settings.prefix, *(["table", self.settings.table]
                                                              if self.settings.table else [])])
        subprocess.run(["ip", "nexthop", "del", "id", str(self.settings.group)], capture_output=True, timeout=10)
        end = time.monotonic() + seconds
        try:
            while not self.stop and time.monotonic() < end:
                started = time.monotonic()
                self.step(time.time())
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        finally:
            if cleanup:
                self.cleanup()
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="BIRD's control socket")
    ap.add_argument("--prefix", required=True, help="the service prefix, e.g. 198.19.255.100/32")
    ap.add_argument("--group", type=int, default=100, help="the group's nexthop id")
    ap.add_argument("--member-base", type=int, default=100, help="next hops get ids above this")
    ap.add_argument("--buckets", type=int, default=512, help="buckets (1..65535), fixed once created")
    ap.add_argument("--idle-timer", type=int, default=0, help="seconds without a hit before a bucket is idle")
    ap.add_argument("--unbalanced-timer", type=int, default=0, help="seconds out of balance before busy "
                    "buckets move anyway (0: never)")
    ap.add_argument("--weight", type=int, default=64, help="weight of a serving next hop (2..256)")
    ap.add_argument("--drain", action="store_true", help="keep a next hop whose path has GRACEFUL_SHUTDOWN at "
                    "weight 1 until its buckets are idle")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--table", default=None, help="the route's kernel table (default main)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between two polls of BIRD")
    ap.add_argument("--seconds", type=float, default=600.0, help="stop after this (at most 3600)")
    ap.add_argument("--no-cleanup", dest="cleanup", action="store_false")
    a = ap.parse_args(argv)
    if not 1 <= a.buckets <= 65535 or not 2 <= a.weight <= MAX_WEIGHT or a.idle_timer < 0 or a.unbalanced_timer < 0:
        ap.error("--buckets 1..65535, --weight 2..256, timers >= 0")
    s = Settings(a.prefix, a.group, a.member_base, a.buckets, a.idle_timer, a.unbalanced_timer, a.weight,
                 a.drain, a.drain_timeout, a.table)
    return Helper(a.socket, s).run(min(a.seconds, 3600.0), max(0.02, a.interval), a.cleanup)


if __name__ == "__main__":
    sys.exit(main())
