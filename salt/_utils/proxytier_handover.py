"""Moving VIPs without failing a request (rolling changes: ``proxytier.handover``).

A VIP that moves resets the client connections in flight on it: the client's next packet
reaches the new holder, which knows no such connection. So before a VIP moves, the node that
holds it stops answering new SYNs for it (an nftables rule drops them: the client's kernel
retransmits the SYN after its 1 s initial timeout), waits for its connections on that VIP to
finish, and only then lets the VIP go. The retransmitted SYN reaches the new holder. Clients see
up to ~1 s of extra connect time and no error.

In vip_mode bgp there is no VIP to move: a node leaves the routers' routes through its health gate's
hold file (first a graceful shutdown, RFC 8326, while its connections finish; then a withdraw; BIRD's
sessions stay up) and keeps serving the connections it has (_bgp_release, _bgp_reclaim).

A reclaim's members begin together. The holders' guards drop every new SYN to the node's VIPs until
the VIPs move, and a client retransmits a dropped SYN once after 1 s: so from the first guard up, the
VIPs must move within that second. The move itself takes ~0.6 s (the reclaiming node sees the guards,
lifts its hold, and takes over a master-down interval later). The rest of the second went to the
members' own start: each runs its part in its own process of one Salt job, and they began up to 0.3 s
apart on an idle lab (more on a loaded host, where CI once lost 4 requests on one IPv6 VIP). So every
member waits for one instant, the job's publish time (its JID) + START_DELAY, before it guards or
probes (start_at): a holder that is up early no longer drops SYNs while the others start.

The move itself is a priority change, not a stop: every VRRP instance tracks a file (see
keepalived.conf.jinja) whose value is subtracted from its priority. A held node (value
HOLD_VALUE) sits at priority 1: every peer outranks it, yet it still takes its VIPs if it is the
last node alive. The file lives in /run, so a reboot clears a forgotten hold.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from proxytier_runtime import wait_until
from proxytier_schema import ProxytierError

#: VRRP mode: how long a release waits for the connections on the VIPs it hands over (new SYNs to them
#: are dropped meanwhile, so this delays new clients by up to the client's SYN retransmission)
DEFAULT_DRAIN = 2.0
HOLD_VALUE = 253  # keepalived: priority - 253 clamps to 1; below -253 would mean FAULT
GUARD_TABLE = "proxytier_handover"
# one table for both address families: set `vips` holds the IPv4 VIPs, `vips6` the IPv6 ones
GUARD_FAMILY = "inet"
# a guard outlives no handover by much: drain (2 s) + VIP move (5 s) by default, plus margin
GUARD_LIFETIME = 30
# /proc/net/tcp (and tcp6) states in which a connection still has a request or response on the wire
# (ESTABLISHED, SYN_RECV, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING)
BUSY_TCP_STATES = {"01", "03", "04", "08", "09", "0B"}


def _proc_net_hex(address: str) -> set[str]:
    """How /proc/net/tcp and /proc/net/tcp6 print `address` as a local address (upper-case hex):
    IPv4 as one 32-bit word in host byte order (tcp), IPv6 as four 32-bit words each in host byte
    order (tcp6). An IPv4 address also as the IPv4-mapped ::ffff:a.b.c.d of a dual-stack socket
    (tcp6). Host byte order is little endian (x86-64, arm64)."""
    addr = ipaddress.ip_address(address)
    v6 = addr if addr.version == 6 else ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    words = [v6.packed[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4)]
    out = {"".join(words)}
    if addr.version == 4:
        out.add(addr.packed[::-1].hex().upper())
    return out


def busy_connections(proc_net_tcp: str, addresses: list[str]) -> int:
    """How many TCP connections in /proc/net/tcp or /proc/net/tcp6 text (or both, one after the
    other) have a local address in `addresses` (IPv4 or IPv6; an IPv4 address also counts as
    ::ffff:a.b.c.d in tcp6) and may still carry data (a moved VIP would reset them): states
    ESTABLISHED, SYN_RECV, FIN_WAIT1, CLOSE_WAIT, LAST_ACK, CLOSING. Listeners and TIME_WAIT do
    not count. Header lines and lines of another shape are skipped."""
    wanted = set().union(*(_proc_net_hex(a) for a in addresses)) if addresses else set()
    busy = 0
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            continue
        local_ip = fields[1].split(":")[0].upper()
        if local_ip in wanted and fields[3].upper() in BUSY_TCP_STATES:
            busy += 1
    return busy


def guard_script(vips: list[str], lifetime: int = GUARD_LIFETIME) -> str:
    """nft script: drop new inbound connections (bare SYNs) to `vips` (IPv4 and IPv6) for
    `lifetime` seconds; established traffic passes. One ``inet`` table: the IPv4 VIPs are elements
    of set `vips`, the IPv6 ones of set `vips6`, each with a timeout, so a handover killed midway
    (its guard never deleted) heals by itself: after `lifetime` s the rules match nothing."""
    parsed = [ipaddress.ip_address(v) for v in vips]  # never put anything but an address into the ruleset
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1:
        raise ValueError(f"guard lifetime {lifetime!r}: whole seconds >= 1")

    def elements(version: int) -> str:
        chosen = [f"{a} timeout {lifetime}s" for a in parsed if a.version == version]
        return f"    elements = {{ {', '.join(chosen)} }}\n" if chosen else ""

    return (
        f"table {GUARD_FAMILY} {GUARD_TABLE} {{\n"
        "  set vips {\n"
        "    type ipv4_addr; flags timeout;\n"
        f"{elements(4)}"
        "  }\n"
        "  set vips6 {\n"
        "    type ipv6_addr; flags timeout;\n"
        f"{elements(6)}"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority -150; policy accept;\n"
        "    ip daddr @vips tcp flags & (syn | ack) == syn drop\n"
        "    ip6 daddr @vips6 tcp flags & (syn | ack) == syn drop\n"
        "  }\n"
        "}\n"
    )


def guard_lifetime(timeout: float, drain: float) -> int:
    """Seconds a handover's guard may live: its drain and VIP-move waits, plus a margin."""
    return max(GUARD_LIFETIME, int(drain + timeout) + 10)


def guarded(nft_list_json: str) -> list[str]:
    """The VIPs a SYN guard still holds, from ``nft -j list table inet proxytier_handover`` (every
    set's elements: IPv4 and IPv6; empty when the table is gone or every element has expired)."""
    import json

    try:
        doc = json.loads(nft_list_json or "{}")
    except ValueError:
        return []
    out = []
    for item in doc.get("nftables", []):
        for elem in (item.get("set") or {}).get("elem", []):
            value = elem.get("elem", {}).get("val") if isinstance(elem, dict) else elem
            out.append(str(value))
    return out


class Guard:
    """The SYN guard for some VIPs on this node, removed on exit whatever happens.
    `run(argv, input=None, check=True)` runs a command (nft)."""

    def __init__(self, vips: list[str], run: Callable[..., Any], lifetime: int = GUARD_LIFETIME):
        self.vips, self.run, self.lifetime = vips, run, lifetime

    def __enter__(self) -> Guard:
        if self.vips:
            # a killed run's leftover (and the IPv4-only `ip` table of formula versions before dual stack)
            for family in (GUARD_FAMILY, "ip"):
                self.run(["nft", "delete", "table", family, GUARD_TABLE], check=False)
            self.run(["nft", "-f", "-"], input=guard_script(self.vips, self.lifetime))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.vips:
            self.run(["nft", "delete", "table", GUARD_FAMILY, GUARD_TABLE], check=False)


def gate_state(model: dict[str, Any]) -> dict[str, Any] | None:
    """vip_mode bgp: the node's health gate's state file (files/proxytier_bgp_gate.py: {"announced",
    "graceful", "held", "healthy", ...}); None when it is missing or unreadable (the gate is not running)."""
    try:
        with open(model["bgp"]["gate"]["state_file"], encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def gate_announces(model: dict[str, Any]) -> bool | None:
    """vip_mode bgp: whether the node's health gate announces its addresses now (gate_state's
    "announced"); None when the gate is not running."""
    state = gate_state(model)
    return None if state is None else bool(state.get("announced"))


#: graceful release: the node's addresses must carry no connection for this long (sampled every 20 ms)
#: before the withdraw. A router that drains (lab/resilient.py) may still send a new flow to a leaving
#: node until its last hash bucket idles; a second with no connection seen makes one in flight at the
#: withdraw unlikely at any rate of new flows that such a router still sends the node (short requests
#: of a few ms each are caught by ~20% of samples at 70 per second).
GRACEFUL_QUIET = 1.0


def wait_quiet(idle: Callable[[], bool], quiet: float, timeout: float, step: float = 0.02) -> bool:
    """Poll `idle` every `step` s until it has been true at every poll for `quiet` s (True) or `timeout` s
    pass (False)."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while True:
        now = time.monotonic()
        if idle():
            since = now if since is None else since
            if now - since >= quiet:
                return True
        else:
            since = None
        if now > deadline:
            return False
        time.sleep(step)


def write_bgp_hold(path: str, word: str) -> None:
    """The gate's hold file with `word` first ("graceful" or "withdraw"), replaced whole (the gate
    reads it every check: a half-written file must never be seen)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{word} (proxytier.handover release)\n")
    os.replace(tmp, path)


def _bgp_release(
    model: dict[str, Any], busy: Callable[[list[str]], int], timeout: float, drain: float
) -> dict[str, Any]:
    """vip_mode bgp, on the node itself: stop new flows, let the node's connections on its addresses
    finish (at most `drain` s), withdraw. The node keeps serving throughout (the addresses stay on it).

    With bgp:graceful_shutdown (the default), first the hold file says "graceful": the gate keeps
    announcing with the GRACEFUL_SHUTDOWN community (RFC 8326), so the routers move new flows away
    while the node's path stays, and a router that drains keeps the node's established flows on it;
    the connections are waited for then. Next the hold file says "withdraw" and the gate withdraws
    (its BGP sessions stay up). Without it, the withdraw comes first and the wait after. Raises
    ProxytierError, the hold taken away again, when the gate neither marks nor withdraws within
    `timeout` s. -> {"withdrawn", "graceful" (addresses marked first, or []), "drained" (bool),
    "left_busy" (connections left), "moved"}."""
    gate = model["bgp"]["gate"]
    addresses = list(gate["addresses"])
    graceful = bool(model["bgp"].get("graceful_shutdown"))

    def give_up(what: str) -> ProxytierError:
        with contextlib.suppress(FileNotFoundError):
            os.remove(gate["hold_file"])
        return ProxytierError(
            f"{model['node']['id']}: the BGP gate {what} ({', '.join(addresses)}) {timeout:.0f} s after its "
            f"hold file {gate['hold_file']} was written (is proxytier-bgp-gate running?); hold taken away"
        )

    report: dict[str, Any] = {"graceful": []}
    drain_end = time.monotonic() + drain
    if graceful:
        write_bgp_hold(gate["hold_file"], "graceful")

        def marked() -> bool:
            state = gate_state(model)
            return state is not None and (bool(state.get("graceful")) or not state.get("announced"))

        if not wait_until(marked, timeout):
            raise give_up("did not mark its addresses for a graceful shutdown")
        state = gate_state(model) or {}
        if state.get("graceful"):
            report["graceful"] = addresses
            wait_quiet(lambda: busy(addresses) == 0, GRACEFUL_QUIET, drain)
    write_bgp_hold(gate["hold_file"], "withdraw")
    if not wait_until(lambda: gate_announces(model) is False, timeout):
        raise give_up("still announces its addresses")
    report["withdrawn"] = addresses
    report["drained"] = wait_until(lambda: busy(addresses) == 0, max(0.0, drain_end - time.monotonic()))
    report["left_busy"] = busy(addresses)
    report["moved"] = addresses
    return report


def _bgp_reclaim(model: dict[str, Any], timeout: float) -> dict[str, Any]:
    """vip_mode bgp, on the node itself: the hold file removed, wait until the gate announces again
    (HAProxy healthy for `rise` checks, not in bgp:maintenance). Raises ProxytierError after `timeout` s."""
    bgp = model["bgp"]
    gate = bgp["gate"]
    if os.path.exists(gate["hold_file"]):
        os.remove(gate["hold_file"])
    if bgp["maintenance"]:
        return {"moved": [], "maintenance": True}
    if not wait_until(lambda: gate_announces(model) is True, timeout):
        raise ProxytierError(
            f"{model['node']['id']}: the BGP gate does not announce {', '.join(gate['addresses'])} {timeout:.0f} s "
            "after its hold was taken away (is HAProxy answering its monitor URI? journalctl -u proxytier-bgp-gate)"
        )
    return {"moved": list(gate["addresses"])}


#: reclaim: members begin this long after the Salt job's publish time. A member's part is ready once the
#: minion has forked the job and built the model: 1.05 to 2.6 s after the publish on an idle lab (5
#: reclaims, 15 members), where the members of one reclaim were ready up to 0.25 s apart.
START_DELAY = 4.0
#: a JID further than this from the node's clock is not trusted as the job's publish time (the master's
#: local time in another time zone, or a clock out of step): the member then begins at once
START_MAX_SKEW = 30.0


def start_at(jid: object, now: float | None = None) -> float | None:
    """The wall-clock time (s since the epoch) at which the members of one reclaim begin: the Salt job's
    publish time, read from its JID (``YYYYmmddHHMMSSffffff``, the master's local time: salt.utils.jid
    gen_jid) + START_DELAY. None for no JID, one that is no time (a custom ``jid``), or one further than
    START_MAX_SKEW s from `now` (default: this node's clock): the member then begins at once. The members'
    clocks must be in step (NTP) for them to begin together, as their VRRP timers assume."""
    if not isinstance(jid, str) or len(jid) != 20 or not jid.isdigit():
        return None
    try:
        published = datetime.datetime.strptime(jid, "%Y%m%d%H%M%S%f").timestamp()
    except ValueError:
        return None
    now = time.time() if now is None else now
    return published + START_DELAY if abs(published - now) <= START_MAX_SKEW else None


def wait_start(at: float | None) -> float | None:
    """Sleep until wall-clock time `at` (start_at) -> how late this member began, in seconds (<= 0: on
    time; None: no common start). Never sleeps longer than START_DELAY."""
    if at is None:
        return None
    early = at - time.time()
    if early > 0:
        time.sleep(min(early, START_DELAY))
    return round(-early, 3)


def set_hold(path: str, value: int) -> None:
    """Write keepalived's hold file in place (keepalived watches the inode: no rename)."""
    with open(path, "w") as f:
        f.write(f"{value}\n")


# reclaim: a SYN to a VIP unanswered this long means its holder's guard is up (an unguarded
# holder on the same link answers in well under a millisecond)
PROBE_TIMEOUT = 0.1
# reclaim: once every holder guards, this long for their in-flight requests before the hold is
# lifted; the VIP then moves a master-down interval later (3 x advert + skew, ~0.34 s at 0.1 s)
SETTLE = 0.1


def probe_dropped(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when a SYN to address:port goes unanswered (the holder's guard is up)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return False
    except TimeoutError:
        return True
    except OSError:
        return False


def all_dropped(addresses: list[str], port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when SYNs to every address (at `port`) go unanswered, probed all at once: the wait is
    one `timeout`, not one per address. A client's SYN dropped by a guard is retransmitted after
    1 s, and the VIP must have moved by then: every probe in series (0.2 s each, a dual-stack
    node's two VIPs) cost enough of that second to lose SYNs in the lab (see reclaim)."""
    if not addresses:
        return True
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        return all(pool.map(lambda a: probe_dropped(a, port, timeout), addresses))


def handover(
    model: dict[str, Any],
    node: str,
    action: str,
    run: Callable[..., Any],
    local_vips: Callable[[], set[str]],
    busy: Callable[[list[str]], int],
    timeout: float = 5.0,
    drain: float | None = None,
    start: float | None = None,
) -> dict[str, Any]:
    """Move `node`'s VIPs to its peers (action=release) or back to it (action=reclaim), this
    node's part of it (every member runs it at once; in a VRRP reclaim every member first waits for
    wall-clock time `start`, start_at of the job's JID, and reports how late it began as "start_late").
    `local_vips()` -> the VIPs this node holds;
    `busy(vips)` -> connections still carrying data on them. `drain` (seconds, 0..3600): how long a
    release waits for them; None: DEFAULT_DRAIN in VRRP mode (new connections are held back meanwhile),
    bgp:drain in BGP mode (the routers send them elsewhere). Returns a report with "moved" and
    "seconds"; raises ProxytierError when the VIPs do not move within `timeout` s, or naming a
    `timeout` or `drain` that is no number of seconds."""
    if action not in ("release", "reclaim"):
        raise ProxytierError(f"action {action!r}: use release or reclaim")
    for name, value, hi in (("timeout", timeout, 3600), ("drain", drain, 3600)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= hi):
            raise ProxytierError(f"{name}={value!r}: seconds, a number 0..{hi} (e.g. {name}=30)")
    if drain is None:
        drain = float(model["bgp"]["drain"]) if "bgp" in model else DEFAULT_DRAIN
    ids = [x["id"] for x in model["members"]]
    if node not in ids:
        raise ProxytierError(f"{node!r} is not a member of the tier ({', '.join(ids)})")
    me = model["node"]["id"]
    t0 = time.monotonic()
    report: dict[str, Any] = {"node": me, "action": action}
    if "bgp" in model:
        if me == node:
            report.update(_bgp_release(model, busy, timeout, drain) if action == "release"
                          else _bgp_reclaim(model, timeout))
        else:
            report["moved"] = []
        report["seconds"] = round(time.monotonic() - t0, 3)
        return report
    homes = [i["address"] for i in model["vrrp"]["instances"] if i["owner"] == node]
    if action == "reclaim":
        report["start_late"] = wait_start(start)
    if action == "release" and me == node:
        report.update(_release(model, run, local_vips, busy, timeout, drain))
    elif action == "reclaim" and me == node:
        report.update(_reclaim(model, homes, local_vips, timeout))
    elif action == "reclaim":
        vips = sorted(local_vips() & set(homes))
        with Guard(vips, run, guard_lifetime(timeout, drain)):
            report["drained"] = wait_until(lambda: busy(vips) == 0, drain)
            ok = wait_until(lambda: not (local_vips() & set(vips)), timeout)
        if not ok:
            raise ProxytierError(f"{node} did not take {', '.join(vips)} from {me} in {timeout:.0f} s")
        report["moved"] = vips
    else:
        report["moved"] = []
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report


def _release(
    model: dict[str, Any], run: Callable[..., Any], local_vips: Callable[[], set[str]],
    busy: Callable[[list[str]], int], timeout: float, drain: float,
) -> dict[str, Any]:
    me, hold_file = model["node"]["id"], model["vrrp"]["hold_file"]
    vips = sorted(local_vips())
    report: dict[str, Any] = {}
    with Guard(vips, run, guard_lifetime(timeout, drain)):
        report["drained"] = wait_until(lambda: busy(vips) == 0, drain)
        report["left_busy"] = busy(vips)
        set_hold(hold_file, HOLD_VALUE)
        if not wait_until(lambda: not (local_vips() & set(vips)), timeout):
            set_hold(hold_file, 0)
            raise ProxytierError(
                f"{me} still holds {', '.join(sorted(local_vips() & set(vips)))} {timeout:.0f} s after "
                "lowering its priority: no peer took them (are the peers' keepalived up?); hold lifted"
            )
    report["moved"] = vips
    return report


def _reclaim(
    model: dict[str, Any], homes: list[str], local_vips: Callable[[], set[str]], timeout: float
) -> dict[str, Any]:
    me, hold_file = model["node"]["id"], model["vrrp"]["hold_file"]
    report: dict[str, Any] = {}
    away = [v for v in homes if v not in local_vips()]
    ports = sorted({int(b["address"].rsplit(":", 1)[1]) for f in model["haproxy"]["frontends"] for b in f["binds"]})
    if away and ports:
        # The holders guard first (all at once: start_at): wait until our SYNs to our VIPs go
        # unanswered. From a client SYN's first drop, its retransmit comes 1 s later: guard seen
        # (<= PROBE_TIMEOUT + a poll step) + SETTLE + the master-down interval must stay well inside it.
        t0 = time.monotonic()
        report["guard_seen"] = wait_until(lambda: all_dropped(away, ports[0]), 1.0, step=0.02)
        report["guard_seen_seconds"] = round(time.monotonic() - t0, 3)
        time.sleep(SETTLE)  # the holders' in-flight requests finish (milliseconds)
    set_hold(hold_file, 0)
    t1 = time.monotonic()
    if not wait_until(lambda: set(homes) <= local_vips(), timeout):
        raise ProxytierError(
            f"{me} did not take back {', '.join(sorted(set(homes) - local_vips()))} in {timeout:.0f} s "
            "after lifting its hold (is its keepalived running and its HAProxy up?)"
        )
    report["moved"] = away
    # from the hold lifted to every VIP here: the master-down interval and keepalived's reaction
    report["move_seconds"] = round(time.monotonic() - t1, 3)
    return report
