"""Runtime operations on a running node, for the execution module: the one client of HAProxy's
runtime API (a unix stream socket: one command, read until HAProxy closes, the whole exchange
bounded in time and size), setting a member's nginx server state in every backend, and the
checks of ``proxytier.verify`` (is this node serving what its model says?).

The functions take what they touch (a command callable, probes) as arguments, so they run in
tests against real daemons or recorded answers without Salt.
"""

from __future__ import annotations

import csv
import io
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from proxytier_schema import ProxytierError, join_hostport

MAX_ANSWER_BYTES = 64 * 1024 * 1024
MEMBER_STATES = ("ready", "drain", "maint")


def unix_command(path: str, command: str, timeout: float = 5.0, max_bytes: int = MAX_ANSWER_BYTES) -> str:
    """Send `command` to the unix socket at `path`; return the whole answer as text.

    HAProxy's runtime API (non-interactive mode) answers one command and closes the connection.
    The whole exchange, not each read, is bounded by `timeout` seconds; an answer over
    `max_bytes` is refused. Raises OSError (TimeoutError included) or ProxytierError (too long).
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{path}: no complete answer to {command!r} within {timeout} s")
            sock.settimeout(remaining)
            chunk = sock.recv(262144)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ProxytierError(f"{path}: the answer to {command!r} is over {max_bytes} bytes")
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def set_member_state(model: dict[str, Any], member: str, state: str, command: Callable[[str], str]) -> dict[str, str]:
    """Set `member`'s nginx server to `state` (ready, drain or maint) in every HAProxy backend of
    the model, through `command` (one runtime API command -> its answer). Returns {backend: state}."""
    if state not in MEMBER_STATES:
        raise ProxytierError(f"state {state!r}: use ready, drain or maint")
    ids = [m["id"] for m in model["members"]]
    if member not in ids:
        raise ProxytierError(f"{member!r} is not a member of the tier ({', '.join(ids)})")
    done = {}
    for be in model["haproxy"]["backends"]:
        answer = command(f"set server {be['name']}/{member} state {state}").strip()
        if answer:  # HAProxy answers nothing on success
            raise ProxytierError(f"HAProxy refused 'set server {be['name']}/{member} state {state}': {answer}")
        done[be["name"]] = state
    return done


def server_status(show_stat: str) -> dict[tuple[str, str], str]:
    """`show stat` CSV -> {(backend, server): status}, read by header name."""
    rows = csv.DictReader(io.StringIO(show_stat.lstrip("# ")))
    return {(r["pxname"], r["svname"]): r.get("status") or "" for r in rows}


def servers_state(text: str) -> list[dict[str, str]]:
    """`show servers state` (format version 1: a "1" line, a "# field ..." header, one row per
    server) -> one dict per server keyed by the header's field names (be_name, srv_name,
    srv_addr, srv_port, srv_admin_state, ...). Raises ProxytierError on another version or a row
    whose field count differs from the header's (a cut or changed answer)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("# "):
        raise ProxytierError(f"unexpected 'show servers state' answer: {text[:200]!r}")
    fields = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        if not line.strip():
            continue
        values = line.split()
        if len(values) != len(fields):
            raise ProxytierError(
                f"'show servers state' row has {len(values)} fields, the header {len(fields)}: {line!r}"
            )
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def configured_servers(model: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """{(backend, server): (address, port)} of every HAProxy server the model renders."""
    out = {}
    for be in model["haproxy"]["backends"]:
        for sv in be["servers"]:
            host, number = sv["address"].rsplit(":", 1)
            out[(be["name"], sv["name"])] = (host.strip("[]"), number)
    return out


def state_to_keep(text: str, model: dict[str, Any]) -> tuple[str, list[str]]:
    """The part of a `show servers state` dump that the next HAProxy process may load: the rows of
    servers that the new configuration still has at the same address and port. HAProxy takes a
    saved server's port (and state) over a changed port in the new config (haproxy/haproxy #1412,
    #3296), so a server whose address or port changed must start from its configuration.
    -> (state file text, ["backend/server: why", ...] for the rows left out)."""
    wanted = configured_servers(model)
    head, rows = text.splitlines()[:2], servers_state(text)
    kept, dropped = [], []
    for row in rows:
        k = (row["be_name"], row["srv_name"])
        have = (row["srv_addr"], row["srv_port"])
        if wanted.get(k) == have:
            kept.append(" ".join(row.values()))
        else:
            why = f"now {':'.join(wanted[k])}" if k in wanted else "no longer configured"
            dropped.append(f"{k[0]}/{k[1]} at {have[0]}:{have[1]}: {why}")
    return "\n".join([*head, *kept]) + "\n", dropped


def live_differences(text: str, model: dict[str, Any]) -> list[str]:
    """Where HAProxy's live servers (`show servers state`) differ from the model: a server missing,
    one that the model does not have, or one at another address or port."""
    wanted = configured_servers(model)
    live = {(r["be_name"], r["srv_name"]): (r["srv_addr"], r["srv_port"]) for r in servers_state(text)}
    diffs = [f"{b}/{s}: configured at {':'.join(a)}, not running" for (b, s), a in wanted.items() if (b, s) not in live]
    for (b, s), have in live.items():
        if (b, s) not in wanted:
            if b in {k[0] for k in wanted}:
                diffs.append(f"{b}/{s}: running at {':'.join(have)}, not configured")
        elif wanted[(b, s)] != have:
            diffs.append(f"{b}/{s}: runs at {':'.join(have)}, configured at {':'.join(wanted[(b, s)])}")
    return diffs


def http_ok(url: str) -> bool:
    """GET `url` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def proxy_v1_header(listen: str) -> bytes:
    """The PROXY protocol v1 line a check sends to the listener ``host:port`` (``[v6]:port``):
    ``TCP4 127.0.0.1`` to an IPv4 listener, ``TCP6 ::1`` to an IPv6 one (the header's two
    addresses are of one family, the listener's)."""
    host, number = listen.rsplit(":", 1)
    host = host.strip("[]")
    proto, source = ("TCP6", "::1") if ":" in host else ("TCP4", "127.0.0.1")
    return f"PROXY {proto} {source} {host} 1 {number}\r\n".encode()


def proxied_ok(listen: str, path: str) -> bool:
    """GET `path` through a PROXY protocol listener (``host:port``, ``[v6]:port``) answers 200: a
    v1 header first (proxy_v1_header), which nginx accepts on a `proxy_protocol` listener as it
    does HAProxy's v2."""
    host, number = listen.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(number)), timeout=2) as sock:
            sock.sendall(
                proxy_v1_header(listen)
                + f"GET {path} HTTP/1.0\r\nHost: proxytier-verify\r\n\r\n".encode()
            )
            return sock.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False


def serving_checks(
    model: dict[str, Any],
    stat_command: Callable[[str], str],
    keepalived_running: Callable[[], bool] | None,
    held_addresses: Callable[[], set[str]],
    vips: bool = True,
    guarded: Callable[[], list[str]] | None = None,
) -> dict[str, Callable[[], bool]]:
    """The checks of "is this node serving?", by name: nginx answers its health path on every
    site, HAProxy its monitor URI, HAProxy sees this node's nginx UP (or DRAIN) in every backend
    and runs exactly the configured servers (address and port), keepalived runs, and (unless
    `vips` is False) the node holds the VIPs it owns, and no handover SYN guard is left (`guarded`
    -> the VIPs a guard still drops new connections to). keepalived_running=None: keepalived is
    not checked (a joining node holds it down until its peers know it)."""
    checks: dict[str, Callable[[], bool]] = {}
    health = model["nginx"]["health_path"]
    for site in model["nginx"]["sites"]:
        # a dual-stack node's nginx also listens on its IPv6 address (listen6)
        for listen in [site["listen"], *([site["listen6"]] if "listen6" in site else [])]:
            checks[f"nginx {site['name']} on {listen}"] = (
                (lambda a=listen: proxied_ok(a, health))
                if site.get("proxy_protocol")
                else (lambda a=listen: http_ok(f"http://{a}{health}"))
            )
    monitor = join_hostport("127.0.0.1", model["haproxy"]["monitor_port"])
    checks["haproxy monitor"] = lambda: http_ok(f"http://{monitor}/proxytier-monitor")
    me = model["node"]["id"]

    def servers_up() -> bool:
        try:
            status = server_status(stat_command("show stat -1 4 -1"))
        except OSError:
            return False
        return all(status.get((be["name"], me), "").startswith(("UP", "DRAIN")) for be in model["haproxy"]["backends"])

    checks[f"haproxy sees {me}'s nginx up"] = servers_up

    def servers_as_configured() -> bool:
        try:
            return live_differences(stat_command("show servers state"), model) == []
        except (OSError, ProxytierError):
            return False

    checks["haproxy's servers are the configured ones (address, port)"] = servers_as_configured
    if keepalived_running is not None:
        checks["keepalived running"] = keepalived_running
    if guarded is not None:
        checks["no handover SYN guard left (nft list table inet proxytier_handover)"] = lambda: not guarded()
    owned = [i["address"] for i in model["vrrp"]["instances"] if i["is_owner"]] if vips else []
    if owned:
        checks[f"holds its VIPs {', '.join(owned)}"] = lambda: set(owned) <= held_addresses()
    return checks


def bgp_checks(
    model: dict[str, Any], service_running: Callable[[str], bool],
    gate_state: Callable[[], dict[str, Any] | None],
) -> dict[str, Callable[[], bool]]:
    """vip_mode bgp: the checks of "is this node serving?" besides nginx's and HAProxy's, by name:
    BIRD and proxytier-bgp-gate run, and the gate announces the model's addresses (its state file,
    files/proxytier_bgp_gate.py), unless the node is in maintenance (bgp:maintenance) or held (its
    hold file exists), where it must announce nothing. `service_running(unit)`: is that unit active;
    `gate_state()`: the gate's state file as a dict, None when missing or unreadable
    (proxytier_handover.gate_state)."""
    import os

    bgp = model["bgp"]
    gate = bgp["gate"]

    def announces() -> bool:
        state = gate_state()
        if state is None:
            return False
        held = os.path.exists(gate["hold_file"])
        want = not held and not bgp["maintenance"]
        # in maintenance BIRD exports nothing whatever the gate says; the gate still gates
        return state.get("addresses") == gate["addresses"] and (bool(state.get("announced")) or not want)

    return {
        f"{bgp['service']} running": lambda: service_running(bgp["service"]),
        "proxytier-bgp-gate running": lambda: service_running("proxytier-bgp-gate"),
        f"the gate announces {', '.join(gate['addresses'])}": announces,
    }


def wait_until(what: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `what` every `step` s until it is true (True) or `timeout` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_all(node: str, checks: dict[str, Callable[[], bool]], timeout: float) -> dict[str, Any]:
    """Run `checks` until all pass (-> {"node", "ok": names}) or `timeout` s pass (ProxytierError
    naming those still failing)."""
    failing: list[str] = []

    def passed() -> bool:
        failing[:] = [name for name, check in checks.items() if not check()]
        return not failing

    if not wait_until(passed, timeout, step=0.5):
        raise ProxytierError(f"{node} does not serve after {timeout:.0f} s: " + "; ".join(failing))
    return {"node": node, "ok": sorted(checks)}
