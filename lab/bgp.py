"""The lab tier in BGP mode: every node announces one service address to the lab's router (lab.router), which
spreads the client's connections over the nodes with ECMP.

The pillar is the checkout's (members from the mine, the one site) with:
- ``vip_mode: bgp`` and no ``vip_pool``: keepalived stops, every node announces every address in ``vips``;
- ``vips``: the one service address, config.BGP_SERVICE (198.18.0.200, no VRRP VIP of the pool's
  198.18.0.101..105);
- ``bgp``: the tier's AS (config.TIER_ASN), one peer, the router (config.ROUTER_ADDR, config.ROUTER_ASN),
  every other key at the formula's defaults (BFD 100 ms x 3, hold 9 s, the gate 0.2 s x 2).

The nodes' route back to the client network (config.CLIENT_NET via the router) is set by the lab, on each
node's host0, while BGP mode is on; not by the pillar: a node's routes are its network's configuration (a
default gateway, DHCP, the host's network files), which the formula does not manage and has no key for,
and this one is only right while the lab's router exists.

    python -m lab bgp                        # router + client up, the pillar applied, who answers
    python -m lab bgp --profile resilient    # the router's ECMP on a resilient next-hop group
    python -m lab bgp --off                  # back to the checkout's pillar (VRRP), router gone
"""

from __future__ import annotations

import copy
import json
import select
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lab import config, master, nodes, router, tier
from lab.sh import LabError

#: a node's route back to the client network, through the router
CLIENT_ROUTE = ["ip", "route", "replace", str(config.CLIENT_NET), "via", config.ROUTER_ADDR, "dev", "host0"]


def pillar() -> dict[str, Any]:
    """The checkout's lab pillar in BGP mode (see the module's docstring)."""
    data = copy.deepcopy(tier.default_pillar())
    pt = data["proxytier"]
    pt.pop("vip_pool", None)
    pt["vip_mode"] = "bgp"
    pt["vips"] = [{"address": config.BGP_SERVICE}]
    pt["bgp"] = {"asn": config.TIER_ASN, "peers": [{"address": config.ROUTER_ADDR, "asn": config.ROUTER_ASN}]}
    return data


def node_routes(on: bool) -> None:
    """Each running lab node's route to the client network via the router: added (on) or deleted."""
    for node in config.NODES:
        if not nodes.running(node):
            continue
        if on:
            nodes.exec_(node, CLIENT_ROUTE, timeout=20)
        else:
            nodes.exec_(node, ["ip", "route", "del", str(config.CLIENT_NET)], check=False, timeout=20)


def addresses() -> list[str]:
    """The lab's nodes' addresses: the next hops the router has when every node announces."""
    return sorted(n.address for n in config.NODES)


def wait_converged(timeout: float = 90) -> float:
    """Every node's session Established at the router and the router forwarding the service address to
    every node -> seconds. LabError naming the sessions otherwise."""
    try:
        seconds = router.wait_next_hops(addresses(), timeout=timeout)
    except LabError as e:
        raise LabError(f"{e}; sessions {router.sessions()}, BIRD's paths {router.bird_next_hops()}\n"
                       f"{router.log_tail()}") from e
    sessions = router.sessions()
    if set(sessions.values()) != {"Established"}:
        raise LabError(f"BGP sessions not all Established: {sessions}")
    return seconds


def enable(profile: str = "plain") -> float:
    """The router (forwarding with `profile`) and the client up, the nodes' route back, the BGP-mode pillar
    written as the lab's override and applied; waits until the router forwards to every node. LabError if
    an apply fails or the router does not converge. -> seconds the apply took."""
    router.start(profile)
    node_routes(True)
    tier.write_pillar(pillar())
    seconds = tier.apply_ok("the BGP-mode pillar")
    wait_converged()
    return seconds


def set_profile(profile: str) -> None:
    """Switch the running router's forwarding (plain / resilient), BGP untouched; waits until it forwards
    to every node again."""
    router.start(profile)
    wait_converged()


def disable() -> float:
    """Back to the checkout's pillar (VRRP), applied; then the nodes' route and the router removed (also
    when the apply fails: LabError then). -> seconds the apply took."""
    try:
        return tier.back_to_checkout_pillar()
    finally:
        node_routes(False)
        router.stop()


def check_enabled() -> None:
    """LabError unless the lab's pillar override is the BGP-mode one and the router runs."""
    if tier.current_pillar() != pillar() or not router.running():
        raise LabError("the lab is not in BGP mode: run python -m lab bgp first")


def leftovers(node: config.Node) -> dict[str, Any]:
    """What BGP mode leaves on a node once it is back in VRRP mode, from the node itself: {"bird",
    "gate"} (systemctl is-active: "inactive" when stopped or gone), {"bird_enabled"} (is-enabled),
    "gate_unit" (its unit file exists), "service_address" (config.BGP_SERVICE is on some interface)."""
    active = nodes.exec_(node, ["systemctl", "is-active", "bird", "proxytier-bgp-gate"], check=False).stdout.split()
    enabled = nodes.exec_(node, ["systemctl", "is-enabled", "bird"], check=False).stdout.strip()
    unit = nodes.exec_(node, ["test", "-e", "/etc/systemd/system/proxytier-bgp-gate.service"], check=False)
    addrs = nodes.exec_(node, ["ip", "-4", "-o", "address", "show"], check=False).stdout
    return {"bird": active[0] if active else "", "gate": active[1] if len(active) > 1 else "",
            "bird_enabled": enabled, "gate_unit": unit.returncode == 0,
            "service_address": f" {config.BGP_SERVICE}/" in addrs}


def haproxy_connections(frontend: str = "fe_app") -> dict[str, float]:
    """{node name: connections its HAProxy's `frontend` accepted so far}, from every node's exporter
    (haproxy_frontend_connections_total, HAProxy's own counter: which HAProxy the router sent a
    connection to, where the backends' answers only say which nginx HAProxy chose)."""
    out = {}
    for node in config.NODES:
        url = f"http://{config.check_lab_address(node.address)}:{config.EXPORTER_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out[node.name] = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                             if s.name == "haproxy_frontend_connections_total" and s.labels.get("proxy") == frontend)
    return out


def show() -> list[str]:
    """Lines for `python -m lab bgp`: the router's next hops and sessions, then who answered a burst
    from the client namespace through the service address."""
    lines = router.status()
    before = haproxy_connections()
    result = router.client_load(requests=300, seconds=30, concurrency=4)
    after = haproxy_connections()
    lines.append(f"from {config.CLIENT_ADDR} to {config.BGP_SERVICE}:80: {result['ok']} ok, {result['failed']} "
                 f"failed; client address seen {result['clients']}")
    lines.append(f"  connections per HAProxy: {({n: int(after[n] - before.get(n, 0)) for n in after})}")
    lines.append(f"  requests per nginx node: {result['by_node']}; per backend: {result['by_backend']}")
    return lines


def client_ports(node: config.Node) -> set[int]:
    """The client's ports of the TCP connections established from the client namespace to the service
    address on `node` (`ss` on the node): which node the router sent each connection to."""
    out = nodes.exec_(node, ["ss", "-Htn", "state", "established", "src", f"{config.BGP_SERVICE}:80", "dst",
                             config.CLIENT_ADDR], check=False).stdout
    ports = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1].rpartition(":")[0] == config.CLIENT_ADDR:
            ports.add(int(fields[-1].rpartition(":")[2]))
    return ports


class Flows:
    """lab.flows in the client namespace: `connections` established keep-alive connections to the service
    address (a request every 0.5 s each, ends spread over `life` = (first, last) s after go(); stop() ends
    them all at once), and which node holds each (client_ports, read when they are open). Use as a context
    manager (the process is killed on exit if still running). LabError when lab.flows does not get ready
    within READY_WAIT s or gives no result within RESULT_WAIT s of the last connection's end."""

    READY_WAIT = 90.0  # lab.flows opens every connection, then prints READY
    RESULT_WAIT = 60.0  # after the last end (a request's timeout and the report are seconds)

    def __init__(self, connections: int = 300, life: tuple[float, float] = (15.0, 27.0)) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", config.CLIENT_NETNS, sys.executable, "-m", "lab.flows", "--target",
             config.BGP_SERVICE, "--connections", str(connections), "--life", f"{life[0]}:{life[1]}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=config.REPO)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.life = life
        line = self._line(self.READY_WAIT)
        if not line.startswith("READY "):
            self.proc.kill()
            raise LabError(f"lab.flows: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.ready = json.loads(line[6:])
        self.holder = {port: node.name for node in config.NODES for port in client_ports(node)}
        self.t0 = 0.0

    def _line(self, timeout: float) -> str:
        """The client's next line, "" if it printed none within `timeout` s (then it is killed)."""
        ready, _, _ = select.select([self.stdout], [], [], max(0.0, timeout))
        if not ready:
            self.proc.kill()
            return ""
        return self.stdout.readline()

    def __enter__(self) -> Flows:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def go(self) -> None:
        """The connections start their requests (and their lives) now."""
        self.stdin.write("GO\n")
        self.stdin.flush()
        self.t0 = time.monotonic()

    def result(self, stop: bool = False) -> list[dict[str, Any]]:
        """Wait for every connection's end (`stop`: end them now) -> lab.flows' per-connection results, each
        with "node" (who held it: a node name, or None)."""
        if stop:
            self.stdin.write("STOP\n")
            self.stdin.flush()
            wait = self.RESULT_WAIT
        else:
            wait = self.t0 + self.life[1] + self.RESULT_WAIT - time.monotonic()
        line = self._line(wait)
        if not line.startswith("RESULT "):
            raise LabError(f"lab.flows gave no result: {line!r}")
        return [{**c, "node": self.holder.get(c["port"])} for c in json.loads(line[7:]).get("conns", [])]

    @staticmethod
    def count(conns: list[dict[str, Any]], leaver: str | None = None) -> dict[str, Any]:
        """Per-connection results -> {"per_node": {name: {"conns", "broken"}}, "leaver" and "others" ({"conns",
        "broken"}: `leaver`'s, everyone else's), "broken_at": [(s after go, state, node)], "leaver_lives":
        [(life s, broken)] of the leaver's connections, "unplaced" (connections no node listed), "reopened"
        (connections a server closed after an answer, and the client opened again: HAProxy's reload), "errors"
        ({what the client saw: count} over the broken connections, e.g. "RuntimeError HTTP 502")}."""
        per_node = {n.name: {"conns": 0, "broken": 0} for n in config.NODES}
        broken_at, lives, unplaced = [], [], 0
        reopened = sum(1 for c in conns if c.get("reopened"))
        for c in conns:
            name = c["node"]
            if name is None:
                unplaced += 1
                continue
            per_node.setdefault(name, {"conns": 0, "broken": 0})["conns"] += 1
            if c["state"] != "ok":
                per_node[name]["broken"] += 1
                broken_at.append((c["at"], c["state"], name))
            if name == leaver:
                lives.append((c["life"], c["state"] != "ok"))
        others = {k: sum(v[k] for n, v in per_node.items() if n != leaver) for k in ("conns", "broken")}
        errors = Counter(c.get("error") or c["state"] for c in conns if c["node"] is not None and c["state"] != "ok")
        return {"per_node": per_node, "leaver": per_node.get(leaver or "", {"conns": 0, "broken": 0}),
                "others": others, "broken_at": sorted(broken_at), "leaver_lives": sorted(lives),
                "unplaced": unplaced, "reopened": reopened, "errors": dict(errors)}


def graceful_leave(victim: config.Node, connections: int = 300, life: tuple[float, float] = (15.0, 27.0),
                   drain: float = 40.0, concurrency: int = 2, rate: float = 0.0) -> dict[str, Any]:
    """`victim` leaves the router's routes the way the orchestrations take it out (`proxytier.handover
    VICTIM release` on every node, drain `drain` s) while the client holds `connections` established
    keep-alive connections (Flows, their ends spread over `life` s after the release starts) and a
    new-connection load runs (NewConnections, `concurrency` clients, at most `rate` connections/s if > 0,
    until the connections' results are in);
    then `reclaim`. -> Flows.count
    for the victim, plus "new" (the new-connection load's result), "release" (the victim's handover
    report), "release_s", "ready_failed" (connections that did not open) and "graceful_at" (s after the
    start when the router first saw the victim's path with GRACEFUL_SHUTDOWN, or None). LabError when the
    flows client or the release fails."""
    # what the orchestrations do first: the minions' in-memory pillar (BGP mode's) and modules current
    master.sync(["proxy*"])
    marks: list[float] = []
    try:
        with NewConnections(concurrency=concurrency, rate=rate) as loader, Flows(connections, life) as flows:
            time.sleep(1.0)
            flows.go()
            done = threading.Event()

            def watch() -> None:  # when the router first sees the victim's path marked GRACEFUL_SHUTDOWN
                while not done.is_set():
                    if victim.address in router.graceful_next_hops():
                        marks.append(time.monotonic() - flows.t0)
                        return
                    time.sleep(0.1)

            watcher = threading.Thread(target=watch)
            watcher.start()
            got = master.salt_json(["salt", "-t", str(int(drain) + 60), "proxy*", "proxytier.handover", victim.name,
                                    "release", "timeout=15", f"drain={drain}"], timeout=drain + 120)
            release_s = time.monotonic() - flows.t0
            done.set()
            watcher.join(timeout=5)
            report = got.get(victim.name)
            if not isinstance(report, dict) or "withdrawn" not in report:
                raise LabError(f"proxytier.handover {victim.name} release: {got}")
            conns = flows.result()
    finally:
        master.salt_json(["salt", "proxy*", "proxytier.handover", victim.name, "reclaim", "timeout=30"], timeout=120)
    return {**Flows.count(conns, victim.name), "new": loader.result, "release": report,
            "release_s": round(release_s, 2), "ready_failed": flows.ready["failed"],
            "graceful_at": round(marks[0], 2) if marks else None}


class NewConnections:
    """New-connection load from the client namespace to the service address (router.client_load, in chunks of
    `chunk` s, one after another) from entering until leaving the context, so that it covers a step of
    unknown length; bounded by `limit` s all the same; at most `rate` new connections/s when > 0. `result`
    after exit: {"ok", "failed", "errors", "failed_at": [(start, error)] (time.monotonic()), "by_node",
    "chunks"}."""

    def __init__(self, concurrency: int = 1, chunk: float = 10.0, limit: float = 600.0, rate: float = 0.0) -> None:
        self.concurrency, self.chunk, self.limit, self.rate = concurrency, chunk, limit, rate
        self.stop = threading.Event()
        self.result: dict[str, Any] = {"ok": 0, "failed": 0, "errors": {}, "failed_at": [], "by_node": {},
                                       "chunks": 0}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < end:
            got = router.client_load(requests=1_000_000, seconds=self.chunk, concurrency=self.concurrency,
                                     rate=self.rate)
            r = self.result
            r["ok"] += got["ok"]
            r["failed"] += got["failed"]
            r["failed_at"] += got["failed_at"]
            r["chunks"] += 1
            for key in ("errors", "by_node"):
                for k, v in got[key].items():
                    r[key][k] = r[key].get(k, 0) + v

    def __enter__(self) -> NewConnections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=self.chunk + 90)
