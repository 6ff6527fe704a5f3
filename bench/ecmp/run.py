#!/usr/bin/env python3
"""ECMP flow breakage: how many established TCP connections a node's graceful leave, or a join, breaks
behind a router spreading flows over BGP next hops, plain multipath vs a resilient next-hop group.

In plain network namespaces of its own (all named ptecmp-*; nothing of the lab's is touched), as root:

    client (ptecmp-c) -- router (ptecmp-r: BIRD 2, kernel ECMP, fib_multipath_hash_policy 1)
                                  |-- node n1..n4 (ptecmp-n1..4: BIRD 2, the service address on lo)

Every node runs BIRD with the formula's gate mechanism (a minimal equivalent of bird.conf.jinja: the
service address is announced while a route for it is in kernel table 200, which BIRD learns; a graceful
leave gives that route the gate's graceful protocol, so the announcement carries GRACEFUL_SHUTDOWN,
RFC 8326) and a TCP server on the service address that answers with its name (bench/ecmp/flows.py). The
router's BIRD learns the nodes' routes (eBGP, hold 3 s; GRACEFUL_SHUTDOWN paths at local preference 0)
and merges the preferred ones (`merge paths on`) into kernel table 100. Profiles:

- plain: the router forwards on BIRD's own multipath route (`ip rule to SERVICE lookup 100`);
- resilient (idle_timer 0), resilient-idle (idle_timer --idle-timer, unbalanced_timer 0) and
  resilient-drain (the same, and a node whose path has GRACEFUL_SHUTDOWN is kept at weight 1 until its
  buckets are idle): the service route on a resilient next-hop group that lab/resilient.py
  programs from BIRD's routes in the main table (see its docstring for the kernel facts).

Events, each from a fresh start (n1..n3 announced, n4 not; --connections long-lived connections from the
client, spread by the L4 hash): a leave (one node's path gets GRACEFUL_SHUTDOWN; its server keeps
serving) and a join (n4 announces). Counted per connection (pinged every 0.5 s for --observe s after the
event): reset, closed or unanswered for 2 s = broken; per node they held at the start. Then --new new
connections show where new flows go. Writes bench/out/ecmp-<time>.json and the ecmp section of BENCHMARKS.md.

    .venv/bin/python -m bench.ecmp.run [--connections 320] [--leavers n1,n2,n3] [--observe 6]

Addresses: 198.19.240.0/20 only (links 198.19.241-244.0/24 and 198.19.250.0/24, service
198.19.255.100/32). Bounded: every wait has a timeout, each process is started with a time limit and
stopped by its PID on the way out; the namespaces are deleted on the way out, and stale ptecmp-*
namespaces of a killed run (with the processes in them) at the start. About 15 s per scenario.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import report
from lab.resilient import GSHUT_IMPORT_FILTER, parse_routes
from lab.sh import seconds_until

BENCH = "ecmp"
PREFIX = "ptecmp-"
ROUTER, CLIENT = f"{PREFIX}r", f"{PREFIX}c"
NODES = ["n1", "n2", "n3", "n4"]
SERVICE = "198.19.255.100"
PORT = 7000
GATE_TABLE = 200
#: the gate's protocol number for a route kept for a graceful shutdown (the formula's GRACEFUL_PROTO,
#: salt/_utils/proxytier_bgp.py)
GRACEFUL_PROTO = 201
BIRD_TABLE = 100
ROUTER_AS, NODE_AS = 64496, 64512
PROFILES: dict[str, dict] = {
    "plain": {"resilient": False},
    "resilient": {"resilient": True, "idle_timer": 0, "unbalanced_timer": 0, "drain": False},
    "resilient-idle": {"resilient": True, "idle_timer": 3, "unbalanced_timer": 0, "drain": False},
    "resilient-drain": {"resilient": True, "idle_timer": 3, "unbalanced_timer": 0, "drain": True},
}
LEAVE_PROFILES = ["plain", "resilient", "resilient-drain"]
JOIN_PROFILES = ["plain", "resilient", "resilient-idle"]


def log(msg: str) -> None:
    print(f"[ecmp] {msg}", file=sys.stderr, flush=True)


def link_net(node: str) -> str:
    """The router-node link of `node` ("n1".."n4"): 198.19.241.0/24 .. 198.19.244.0/24."""
    return f"198.19.{240 + int(node[1:])}"


# ---- pure parts: configs, counting, the report


def node_bird_conf(node: str) -> str:
    """The node's BIRD config: the formula's gate mechanism (kernel table 200 learned, exported only
    from there) with one session to the router."""
    me, peer = f"{link_net(node)}.2", f"{link_net(node)}.1"
    return f"""router id {me};
protocol device {{ }}
protocol kernel gate4 {{
    kernel table {GATE_TABLE}; learn; scan time 10;
    ipv4 {{ import where net ~ [ {SERVICE}/32 ]; export none; }};
}}
protocol bgp uplink {{
    local {me} as {NODE_AS}; neighbor {peer} as {ROUTER_AS}; direct;
    hold time 3; keepalive time 1; connect delay time 1; connect retry time 1;
    ipv4 {{ import none; next hop self; export filter {{
        if proto != "gate4" then reject;
        if krt_source = {GRACEFUL_PROTO} then bgp_community.add((65535, 0));
        accept;
    }}; }};
}}
"""


def router_bird_conf(nodes: list[str]) -> str:
    """The router's BIRD config: one eBGP session per node (GRACEFUL_SHUTDOWN paths at local preference 0,
    RFC 8326), the merged multipath route into kernel table 100 (`merge paths on`)."""
    out = ["router id 198.19.250.1;", "protocol device { }",
           f"protocol kernel ecmp4 {{ kernel table {BIRD_TABLE}; merge paths on; "
           "ipv4 { import none; export all; }; }"]
    for n in nodes:
        out.append(f"protocol bgp {n} {{ local {link_net(n)}.1 as {ROUTER_AS}; neighbor {link_net(n)}.2 as "
                   f"{NODE_AS}; direct; hold time 3; keepalive time 1; connect delay time 1; "
                   f"ipv4 {{ import filter {{ {GSHUT_IMPORT_FILTER} accept; }}; export none; }}; }}")
    return "\n".join(out) + "\n"


def count(conns: list[dict], moved: str | None) -> dict:
    """Connections (the client's RESULT "conns": [{"node", "state"}]) -> {"per_node": {node: {"conns",
    "broken", "reset", "timeout", "closed"}}, "others": {"conns", "broken"} (every node but `moved`),
    "moved": {"conns", "broken"} (the leaver; zeros for a join), "all": {"conns", "broken"}}."""
    per: dict[str, dict[str, int]] = {}
    for c in conns:
        d = per.setdefault(c["node"], {"conns": 0, "broken": 0, "reset": 0, "timeout": 0, "closed": 0})
        d["conns"] += 1
        if c["state"] != "ok":
            d["broken"] += 1
            d[c["state"]] = d.get(c["state"], 0) + 1

    def total(keep: Callable[[str], bool]) -> dict[str, int]:
        return {k: sum(v[k] for n, v in per.items() if keep(n)) for k in ("conns", "broken")}

    return {"per_node": dict(sorted(per.items())), "others": total(lambda n: n != moved),
            "moved": total(lambda n: n == moved), "all": total(lambda n: True)}


def pct(broken: int, conns: int) -> str:
    return f"{broken} of {conns} ({100 * broken / conns:.0f}%)" if conns else "-"


def render(run: dict) -> str:
    """The ecmp section's markdown: one table for the leaves, one for the joins."""
    s = run["settings"]
    lines = ["## ECMP flow breakage on a leave and a join (`bench/ecmp`)", "",
             f"### Run {run['date']} (commit `{run['git_commit']}`)", "",
             f"Machine: {report.machine_line(run['machine'])}.", "",
             f"Network namespaces: a router running BIRD {run.get('bird', '2')} with eBGP to {len(NODES)} nodes "
             "(BIRD announcing the service /32 from the gate's kernel table), `merge paths on`, "
             "`fib_multipath_hash_policy=1` (L4). Per scenario, from n1..n3 announced: "
             f"{s['connections']} long-lived TCP connections from one client address, each pinged every "
             f"{s['interval']} s for {s['observe']} s after the event; broken = reset, closed or unanswered for "
             f"{s['timeout']} s. Resilient groups: {s['buckets']} buckets, programmed by "
             "`lab/resilient.py` from `birdc show route ... all`. Then "
             f"{s['new']} new connections show where new flows go.", "",
             "Leave: a graceful shutdown (RFC 8326): the node gives its gate route the graceful protocol, so its "
             "path carries GRACEFUL_SHUTDOWN, which the router takes at local preference 0 (what the formula's "
             "gate does on a graceful hold); its server keeps serving.", "",
             "| leaver | profile | connections per node | broken on the nodes that stay | broken on the leaver | "
             "new flows per node | route gone at the router (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def per(d: dict) -> str:
        return " / ".join(f"{n} {v['conns']}" for n, v in d.items())

    def new(d: dict) -> str:
        return " / ".join(f"{n} {v}" for n, v in sorted(d.items())) or "-"

    for r in run["scenarios"]:
        if r["event"] != "leave":
            continue
        c = r["count"]
        lines.append(f"| {r['node']} | {r['profile']} | {per(c['per_node'])} | "
                     f"{pct(c['others']['broken'], c['others']['conns'])} | "
                     f"{pct(c['moved']['broken'], c['moved']['conns'])} | {new(r['new'])} | {r['converged_s']} |")
    lines += ["", "Join: n4 adds its route to the gate's table.", "",
              "| profile | connections per node | broken (all on n1..n3) | new flows per node | "
              "route at the router (s) |", "| --- | --- | --- | --- | --- |"]
    for r in run["scenarios"]:
        if r["event"] != "join":
            continue
        c = r["count"]
        lines.append(f"| {r['profile']} | {per(c['per_node'])} | {pct(c['all']['broken'], c['all']['conns'])} | "
                     f"{new(r['new'])} | {r['converged_s']} |")
    lines += ["", "Profiles:", ""]
    for name, p in run["profiles"].items():
        if not p["resilient"]:
            text = "BIRD's multipath route (hash-threshold, RFC 2992)"
        else:
            text = (f"resilient group, idle_timer {p['idle_timer']} s, unbalanced_timer {p['unbalanced_timer']}"
                    + ("; a node whose path carries GRACEFUL_SHUTDOWN stays at weight 1 until its buckets are idle"
                       if p["drain"] else ""))
        lines.append(f"- **{name}**: {text}.")
    lines += ["", *[f"- {n}" for n in run.get("notes", [])], ""]
    return "\n".join(lines)


# ---- the namespaces and processes


class Lab:
    """The namespaces, links, BIRDs and servers of one run; `close()` stops every process it started (by
    PID) and deletes the namespaces."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def sh(self, ns: str | None, *cmd: str, check: bool = True, timeout: float = 20) -> str:
        argv = [*(["ip", "netns", "exec", ns] if ns else []), *cmd]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {res.stdout}{res.stderr}")
        return res.stdout

    def start(self, ns: str, *cmd: str, stdin: bool = False, stdout: bool = False) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], cwd=report.REPO, text=True,
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                             stderr=open(self.tmp / f"{ns}-{len(self.procs)}.err", "w"))
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def build(self) -> None:
        names = [ROUTER, CLIENT, *(f"{PREFIX}{n}" for n in NODES)]
        for ns in names:
            self.sh(None, "ip", "netns", "add", ns)
            self.sh(ns, "ip", "link", "set", "lo", "up")
            self.sh(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        self.sh(ROUTER, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
        self.sh(None, "ip", "link", "add", "r-c", "netns", ROUTER, "type", "veth", "peer", "name", "eth0",
                "netns", CLIENT)
        self.sh(ROUTER, "ip", "addr", "add", "198.19.250.1/24", "dev", "r-c")
        self.sh(ROUTER, "ip", "link", "set", "r-c", "up")
        self.sh(CLIENT, "ip", "addr", "add", "198.19.250.2/24", "dev", "eth0")
        self.sh(CLIENT, "ip", "link", "set", "eth0", "up")
        self.sh(CLIENT, "ip", "route", "add", "default", "via", "198.19.250.1")
        for n in NODES:
            ns, net = f"{PREFIX}{n}", link_net(n)
            self.sh(None, "ip", "link", "add", f"r-{n}", "netns", ROUTER, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)
            self.sh(ROUTER, "ip", "addr", "add", f"{net}.1/24", "dev", f"r-{n}")
            self.sh(ROUTER, "ip", "link", "set", f"r-{n}", "up")
            self.sh(ns, "ip", "addr", "add", f"{net}.2/24", "dev", "eth0")
            self.sh(ns, "ip", "link", "set", "eth0", "up")
            self.sh(ns, "ip", "route", "add", "default", "via", f"{net}.1")
            self.sh(ns, "ip", "addr", "add", f"{SERVICE}/32", "dev", "lo")
            (self.tmp / f"{n}.conf").write_text(node_bird_conf(n))
            self.start(ns, "bird", "-f", "-c", str(self.tmp / f"{n}.conf"), "-s", str(self.tmp / f"{n}.ctl"))
            self.start(ns, sys.executable, "-m", "bench.ecmp.flows", "server", "--name", n, "--address", SERVICE,
                       "--port", str(PORT), "--seconds", "900")
        (self.tmp / "router.conf").write_text(router_bird_conf(NODES))
        self.start(ROUTER, "bird", "-f", "-c", str(self.tmp / "router.conf"), "-s", str(self.tmp / "router.ctl"))

    def announce(self, node: str, on: bool, graceful: bool = False) -> None:
        """The gate's route of `node` added (announced; marked for a graceful shutdown with `graceful`) or
        deleted (withdrawn)."""
        verb = ["replace", f"{SERVICE}/32", "dev", "lo"] if on else ["del", f"{SERVICE}/32"]
        proto = str(GRACEFUL_PROTO) if graceful else "static"
        self.sh(f"{PREFIX}{node}", "ip", "route", *verb, "table", str(GATE_TABLE), "proto", proto, check=on)

    def router_vias(self) -> set[str]:
        """The next hops of the router's preferred paths (those without GRACEFUL_SHUTDOWN)."""
        out = self.sh(ROUTER, "birdc", "-s", str(self.tmp / "router.ctl"), "show", "route", f"{SERVICE}/32", "all",
                      check=False)
        return {r.via for r in parse_routes(out) if not r.graceful}

    def membership(self, members: list[str], timeout: float = 30) -> float:
        for n in NODES:
            self.announce(n, n in members)
        want = {f"{link_net(n)}.2" for n in members}
        took = seconds_until(lambda: self.router_vias() == want, timeout)
        if took is None:
            raise RuntimeError(f"the router did not converge on {members}: {sorted(self.router_vias())}")
        return took

    def close(self) -> None:
        for ctl in self.tmp.glob("*.ctl"):
            subprocess.run(["birdc", "-s", str(ctl), "down"], capture_output=True, timeout=10)
        for p in self.procs:
            self.stop(p)
        cleanup_namespaces()


def cleanup_namespaces() -> list[str]:
    """Delete every ptecmp-* namespace (a killed run's too), after stopping the processes in it by PID
    (`ip netns pids`). -> the names deleted."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    names = [line.split()[0] for line in listed.splitlines() if line.startswith(PREFIX)]
    for ns in names:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    return names


def read_line(p: subprocess.Popen, tag: str, timeout: float) -> dict:
    """The client's next line starting with `tag` -> its JSON; RuntimeError after `timeout` s."""
    end = time.monotonic() + timeout
    assert p.stdout is not None
    import select

    while time.monotonic() < end:
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise RuntimeError(f"the client sent no {tag} line within {timeout} s")


def scenario(lab: Lab, event: str, node: str, profile: str, args: argparse.Namespace) -> dict:
    """One event under one profile from n1..n3 announced -> the scenario's figures."""
    p = PROFILES[profile]
    before = ["n1", "n2", "n3"]
    after = [n for n in before if n != node] if event == "leave" else [*before, node]
    lab.membership(before)
    helper = None
    rule = ["rule", "add", "to", f"{SERVICE}/32", "lookup", str(BIRD_TABLE), "pref", "1000"]
    if p["resilient"]:
        helper = lab.start(ROUTER, sys.executable, "-m", "lab.resilient", "--socket",
                           str(lab.tmp / "router.ctl"), "--prefix", f"{SERVICE}/32", "--buckets", str(args.buckets),
                           "--idle-timer", str(p["idle_timer"]), "--unbalanced-timer", str(p["unbalanced_timer"]),
                           *(["--drain"] if p["drain"] else []), "--seconds", "120")
        ok = seconds_until(
            lambda: lab.sh(ROUTER, "ip", "nexthop", "show", "id", "100", check=False).count("/") == 2, 10)
        if ok is None:
            raise RuntimeError("the resilient helper did not program the group")
    else:
        lab.sh(ROUTER, "ip", *rule)
    client = lab.start(CLIENT, sys.executable, "-m", "bench.ecmp.flows", "client", "--address", SERVICE, "--port",
                       str(PORT), "--connections", str(args.connections), "--interval", str(args.interval),
                       "--timeout", str(args.timeout), "--observe", str(args.observe), "--new", str(args.new),
                       stdin=True, stdout=True)
    try:
        ready = read_line(client, "READY", 60)
        t_event = time.monotonic()
        for n in NODES:
            if (n in after) != (n in before):
                lab.announce(n, True, graceful=event == "leave")
        assert client.stdin is not None
        client.stdin.write("GO\n")
        client.stdin.flush()
        want = {f"{link_net(n)}.2" for n in after}
        converged = seconds_until(lambda: lab.router_vias() == want, 10)
        if converged is not None:
            converged = round(time.monotonic() - t_event, 3)
        result = read_line(client, "RESULT", args.observe + 60)
        nexthop = lab.sh(ROUTER, "ip", "nexthop", "show", "id", "100", check=False).strip() if helper else ""
    finally:
        lab.stop(client)
        if helper is not None:
            lab.stop(helper)
        else:
            lab.sh(ROUTER, "ip", "rule", "del", "to", f"{SERVICE}/32", "lookup", str(BIRD_TABLE), "pref", "1000",
                   check=False)
    c = count(result["conns"], node if event == "leave" else None)
    log(f"{event} {node} {profile}: {c['per_node']} others {c['others']} moved {c['moved']} new {result['new']}")
    return {"event": event, "node": node, "profile": profile, "ready": ready, "count": c, "new": result["new"],
            "new_failed": result["new_failed"], "pings": result["pings"], "converged_s": converged,
            "group_after": nexthop}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=320, help="long-lived connections per scenario (1..2000)")
    ap.add_argument("--leavers", default="n1,n2,n3", help="nodes that leave, one scenario per profile each")
    ap.add_argument("--observe", type=float, default=6.0, help="seconds of pings after the event (1..60)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between two pings of a connection")
    ap.add_argument("--timeout", type=float, default=2.0, help="an unanswered ping is a broken connection after")
    ap.add_argument("--new", type=int, default=60, help="new connections after the window")
    ap.add_argument("--buckets", type=int, default=512, help="buckets of the resilient groups")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-report", action="store_true", help="print the JSON, write nothing")
    args = ap.parse_args(argv)
    leavers = [x for x in args.leavers.split(",") if x]
    if any(x not in ("n1", "n2", "n3") for x in leavers):
        ap.error("--leavers: some of n1,n2,n3")
    args.connections = max(1, min(args.connections, 2000))
    args.observe = max(1.0, min(args.observe, 60.0))
    if os.geteuid() != 0 or not shutil.which("bird") or not shutil.which("birdc"):
        ap.error("needs root and BIRD 2 (Debian's bird2)")
    stale = cleanup_namespaces()
    if stale:
        log(f"removed stale namespaces {stale}")
    tmp = Path(tempfile.mkdtemp(prefix="ptecmp-"))
    lab = Lab(tmp)
    run = {"bench": BENCH, "schema": 1, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "git_commit": report.git_commit(), "machine": report.machine_facts(),
           "bird": subprocess.run(["bird", "--version"], capture_output=True, text=True).stderr.strip().split()[-1],
           "settings": {"connections": args.connections, "observe": args.observe, "interval": args.interval,
                        "timeout": args.timeout, "new": args.new, "buckets": args.buckets, "leavers": leavers},
           "profiles": PROFILES, "scenarios": [], "notes": [
               "Plain ECMP is the kernel's hash-threshold: each next hop owns a contiguous range of the hash in "
               "BIRD's order (by address here, n1 first); a leaver's range is split between its neighbours, so "
               "flows of the nodes that stay move (and reset) when the first or the last node leaves, and none when "
               "the middle one does (its neighbours only grow).",
               "A resilient group moves only the leaver's buckets on a leave; on a join at idle_timer 0 every bucket "
               "counts as idle, so the joiner takes its share of buckets with their flows. With idle_timer above the "
               "flows' packet interval (here 3 s vs 0.5 s) and unbalanced_timer 0, a joiner gets only buckets no "
               "flow uses (with 512 buckets and ~320 flows about half are unused, enough for its share); buckets in "
               "use stay until their flows end.",
               "A leave is a graceful shutdown (RFC 8326): the leaver's path gets GRACEFUL_SHUTDOWN and the "
               "router gives it local preference 0, so BIRD's multipath route (plain) and the helper (resilient) "
               "leave it out. resilient-drain is the graceful leave for a node that still serves: its buckets with "
               "live flows stay on it (weight 1) until idle, so its own connections finish there; new flows that "
               "hash into those buckets reach it too, which is why it must keep serving until the helper drops it "
               "(no busy bucket, or the drain timeout; a withdrawn path goes at once: a dead node is never drained).",
           ]}
    t0 = time.monotonic()
    try:
        lab.build()
        for node in leavers:
            for profile in LEAVE_PROFILES:
                run["scenarios"].append(scenario(lab, "leave", node, profile, args))
        for profile in JOIN_PROFILES:
            run["scenarios"].append(scenario(lab, "join", "n4", profile, args))
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
    run["seconds"] = round(time.monotonic() - t0, 1)
    if args.no_report:
        print(json.dumps(run, indent=1))
    else:
        report.publish(run, BENCH, render(run), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
