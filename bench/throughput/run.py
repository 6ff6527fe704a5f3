#!/usr/bin/env python3
"""Latency, throughput and CPU per request through the tier, beside the same requests straight to the
backends, through one and two do-nothing relays (the floor any proxy hop pays on this machine), through
proxytier's nginx alone, through the tier a tutorial would give (the stock tier) and through HAProxy alone:
all in one run, interleaved, medians over rounds, as differences and ratios.

Paths (all in the lab):
  direct        host -> be1, be2, be3                                    (what the tier balances over)
  relay         host -> socat on proxy1 -> a backend                     (one do-nothing hop)
  relay x2      host -> socat on proxy1 -> socat on proxy2 -> a backend  (two hops: the floor)
  nginx         host -> proxytier's nginx on proxy1 -> a backend         (one proxy hop)
  haproxy alone host -> stock HAProxy on proxy1 -> a backend             (one hop: the usual alternative)
  stock tier    host -> stock HAProxy on proxy1 -> stock nginx on every node -> a backend
  tier          host -> VIP-1 -> HAProxy -> nginx on every node -> a backend (proxytier, as applied)
  tier to one nginx   the same, every HAProxy's other servers in maintenance: nginx on proxy2 only
                (what the tier's nginx costs when its work is not spread over three nodes that share
                the lab's two cores)

The stock daemons are the nodes' own nginx and HAProxy binaries started a second time, each as a
transient systemd unit inside the node, with Debian's default configuration files read from the packages
the node installed (nginx-common's nginx.conf, haproxy's haproxy.cfg): only the pid and socket paths are
moved, and what a tutorial adds is appended (nginx: an `upstream` of the backends and a `proxy_pass`;
HAProxy: a `roundrobin` backend with `check` per server). So they log as Debian logs by default (nginx:
one unbuffered `combined` line per request; HAProxy: `option httplog` to /dev/log).

Load: wrk (Debian's package, one thread, epoll), `--seconds` per measurement, for each of the
concurrencies (default 1, 8, 64, 256 connections) in two modes:
  - keep-alive: every connection kept alive for the whole measurement;
  - new connection: `Connection: close` on every request, so each request opens its own connection to
    the first hop (not for the relays: socat forks a process per connection, which no proxy does).
    wrk times a request from its write to the end of the answer, so the client's own connect is not in
    the latency, but every hop's connect behind it is; wrk counts the server's close after each answer
    as a "read error" (wrk PR #105), so in this mode only non-2xx answers, connect errors and timeouts
    count as failures.
A path with several targets (direct, the relays) gets one wrk per target, the connections split as evenly
as they go; its percentiles are the request-weighted means of the per-target ones (the targets are
identical backends).

CPU per request: utime + stime of every process in the lab's network namespaces (nodes and backends),
from /proc/PID/stat before and after each measurement, grouped (haproxy, nginx, exporter, journald,
keepalived, backend, relay ...; the stock daemons apart), divided by the requests answered; the client's
is wrk's own (its rusage). The kernel's softirq work is in no process and not counted.

Needs the lab up with the formula applied, wrk and socat (`make lab-up` installs both), as root:

    .venv/bin/python -m bench.throughput.run [--rounds 3] [--seconds 3] [--concurrency 1,8,64,256]

Writes bench/out/throughput-<time>.json and the `throughput` section of BENCHMARKS.md (or `--section`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import report
from lab import config

RELAY_PORT = 9900  # relay ports: RELAY_PORT + 10 * hop + backend index (1..3), on the nodes' addresses
STOCK_DIR = "/run/proxytier-bench"  # inside the nodes: the stock daemons' configs, pids and sockets
STOCK_NGINX_PORT = 8280
STOCK_TIER_PORT = 8281
HAPROXY_ALONE_PORT = 8282
STOCK_UNIT = "proxytier-bench-{daemon}-{pid}"  # transient units in the nodes; the pid: a name never used before
MODES = ("keep-alive", "new connection")
CONCURRENCY = (1, 8, 64, 256)
Target = tuple[str, int]


#: the tier with every HAProxy sending to proxy2's nginx alone (one_nginx): the same daemons, configs and
#: network hops (VIP-1's holder, proxy1, reaches proxy2 over the bridge as it reaches any other node), but
#: nginx's work on one node's workers instead of spread over the three nodes' six, which share the lab's
#: two cores with everything else (on real nodes each has its own)
ONE_NGINX = "tier to one nginx"


def relay_port(hop: int, i: int) -> int:
    return RELAY_PORT + 10 * hop + i


def lab_paths(backend_port: int) -> dict[str, list[Target]]:
    """The paths' targets, the backends answering on `backend_port` (FAST_PORT or the lab's 8080)."""
    first = config.NODES[0].address
    n = len(config.BACKENDS)
    return {
        "direct": [(be.address, backend_port) for be in config.BACKENDS],
        "relay": [(first, relay_port(0, i)) for i in range(1, n + 1)],
        "relay x2": [(first, relay_port(1, i)) for i in range(1, n + 1)],
        "nginx": [(first, 8080)],
        "haproxy alone": [(first, HAPROXY_ALONE_PORT)],
        "stock tier": [(first, STOCK_TIER_PORT)],
        "tier": [(config.VIPS[0], 80)],
        ONE_NGINX: [(config.VIPS[0], 80)],
    }


def relay_specs(backend_port: int) -> list[tuple[config.Node, str, int, str]]:
    """socat relays: (node, listen address, port, upstream); the relay x2 chain goes proxy1 -> proxy2 ->
    the backend."""
    a, b = config.NODES[0], config.NODES[1]
    return [
        spec
        for i, be in enumerate(config.BACKENDS, start=1)
        for spec in (
            (a, a.address, relay_port(0, i), f"{be.address}:{backend_port}"),
            (a, a.address, relay_port(1, i), f"{b.address}:{relay_port(2, i)}"),
            (b, b.address, relay_port(2, i), f"{be.address}:{backend_port}"),
        )
    ]


FAST_PORT = 8081  # the bench's nginx backends (--backend nginx), beside the lab's Python ones on 8080
PATHS = lab_paths(FAST_PORT)
RELAY_PATHS = ("relay", "relay x2")

# wrk's script: the request every path gets, and one JSON line of figures at the end (latency in us)
WRK_SCRIPT = """
wrk.method = "GET"
wrk.path = "/lab"
wrk.headers["Host"] = "app.example"
wrk.headers["User-Agent"] = "proxytier-bench"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": '
    .. '{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# ---- the pure part: splitting, merging, grouping, figures


def split_connections(connections: int, targets: int) -> list[int]:
    """`connections` over `targets` as evenly as they go, first targets first; zero shares dropped:
    split_connections(8, 3) == [3, 3, 2]; split_connections(1, 3) == [1]."""
    shares = [connections // targets + (1 if i < connections % targets else 0) for i in range(targets)]
    return [s for s in shares if s]


def parse_wrk(stdout: str) -> dict:
    """The JSON line WRK_SCRIPT's done() printed (the last line starting with "{") -> its dict.
    ValueError if wrk printed none (it failed before the end)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no figures in wrk's output: {stdout[-300:]!r}")


def failures(wrk: dict, mode: str) -> int:
    """Failed requests of one wrk result: non-2xx/3xx answers, connect errors, timeouts, and (kept-alive
    only) read and write errors; in the new-connection mode wrk counts each server close as a read error."""
    e = wrk["errors"]
    failed = e["status"] + e["connect"] + e["timeout"]
    return failed + (e["read"] + e["write"] if mode == "keep-alive" else 0)


def merge(results: list[dict], mode: str) -> dict:
    """Several wrk results of one measurement (one per target) -> requests, requests/s (the sum of each
    wrk's rate), p50 and p99 in seconds (request-weighted means of the per-target percentiles), failed and
    "errors" (wrk's counts by kind, summed: connect, read, write, status, timeout)."""
    total = sum(r["requests"] for r in results)
    weights = [r["requests"] / total if total else 1 / len(results) for r in results]
    return {
        "requests": total,
        "rps": sum(r["requests"] / (r["duration_us"] / 1e6) for r in results if r["duration_us"]),
        "p50": sum(w * r["p50_us"] for w, r in zip(weights, results, strict=True)) / 1e6,
        "p99": sum(w * r["p99_us"] for w, r in zip(weights, results, strict=True)) / 1e6,
        "failed": sum(failures(r, mode) for r in results),
        "errors": {k: sum(r["errors"][k] for r in results) for k in results[0]["errors"]} if results else {},
    }


def process_group(comm: str, cmdline: str, stock: bool) -> str:
    """The CPU group of a lab process from its /proc comm and cmdline; `stock`: it or an ancestor was
    started from the bench's stock configs (STOCK_DIR)."""
    if comm in ("nginx", "haproxy"):
        return f"{comm} (stock)" if stock else comm
    if comm == "socat":
        return "relay"
    if comm == "keepalived":
        return "keepalived"
    if comm == "systemd-journal":
        return "journald"
    if "proxytier_exporter" in cmdline:
        return "exporter"
    if "backend_server" in cmdline:
        return "backend"
    if "salt-minion" in cmdline:
        return "salt-minion"
    return "other"


TIER_GROUPS = ("haproxy", "nginx", "exporter", "keepalived", "journald")
STOCK_GROUPS = ("haproxy (stock)", "nginx (stock)", "journald")


def cpu_per_request(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], ticks_per_s: float,
                    requests: int) -> dict[str, float]:
    """CPU microseconds per request by group, from two samples {pid: (group, ticks)}: a process in both
    counts its difference; one only in `after` (started meanwhile) counts all of its ticks."""
    out: dict[str, float] = {}
    for pid, (group, ticks) in after.items():
        spent = ticks - before[pid][1] if pid in before else ticks
        out[group] = out.get(group, 0.0) + max(spent, 0) / ticks_per_s * 1e6 / max(requests, 1)
    return out


def path_total(path: str, cpu: dict[str, float]) -> float:
    """CPU per request of the proxy daemons a path goes through, logging included (us): for the tier,
    HAProxy, nginx, the exporter, keepalived and journald; for the stock paths their stock HAProxy and
    nginx and journald; for the relays socat; 0 for direct."""
    groups = {"tier": TIER_GROUPS, ONE_NGINX: TIER_GROUPS, "nginx": TIER_GROUPS, "stock tier": STOCK_GROUPS,
              "haproxy alone": STOCK_GROUPS, "relay": ("relay",), "relay x2": ("relay",)}.get(path, ())
    return sum(cpu.get(g, 0.0) for g in groups)


def targets_met(res: dict, per_round: dict | None = None) -> list[tuple[str, str, bool | None]]:
    """The issue's targets as (what, the figure, met) over medians `res[mode][conc][path]`; met is None
    where the run lacks what the target needs. With `per_round` (per_round[mode][conc][path] = a list of
    round figures) the requests/s ratio's figure also gives each round's own ratio (the two paths were
    measured seconds apart in a round, so these show how much of a miss is the machine's weather)."""
    out: list[tuple[str, str, bool | None]] = []

    def get(mode: str, conc: int, path: str) -> dict | None:
        return res.get(mode, {}).get(str(conc), {}).get(path)

    tier8 = get("keep-alive", 8, "tier")
    if tier8 and tier8.get("cpu"):
        total = path_total("tier", tier8["cpu"])
        share = tier8["cpu"].get("exporter", 0.0) / total if total else None
        out.append(("exporter CPU per request <= 10% of the tier's, 8 connections kept alive",
                    "-" if share is None else f"{tier8['cpu'].get('exporter', 0.0):.1f} of {total:.1f} us "
                    f"({100 * share:.1f}%)", None if share is None else share <= 0.10))
    d1, r1, t1 = get("keep-alive", 1, "direct"), get("keep-alive", 1, "relay x2"), get("keep-alive", 1, "tier")
    if d1 and r1 and t1:
        floor, over = r1["p50"] - d1["p50"], t1["p50"] - d1["p50"]
        ratio = over / floor if floor > 0 else None
        out.append(("tier p50 over direct <= 1.5x the two-relay floor, 1 connection kept alive",
                    f"+{over * 1e6:.0f} us vs +{floor * 1e6:.0f} us"
                    + ("" if ratio is None else f" ({ratio:.2f}x)"), None if ratio is None else ratio <= 1.5))
    r8 = get("keep-alive", 8, "relay x2")
    if tier8 and r8:
        ratio = tier8["rps"] / r8["rps"]
        rounds = (per_round or {}).get("keep-alive", {}).get("8", {})
        paired = [t["rps"] / r["rps"] for t, r in zip(rounds.get("tier", []), rounds.get("relay x2", []),
                                                       strict=False) if r["rps"]]
        out.append(("tier requests/s >= 0.75x the two relays', 8 connections kept alive",
                    f"{tier8['rps']:.0f} vs {r8['rps']:.0f} ({ratio:.2f}x)"
                    + (f"; per round {', '.join(f'{x:.2f}x' for x in paired)}" if paired else ""),
                    ratio >= 0.75))
    worse = []
    compared = 0
    for mode, by_conc in res.items():
        for conc, by_path in by_conc.items():
            t, s = by_path.get("tier"), by_path.get("stock tier")
            if t and s:
                compared += 1
                if t["p50"] > s["p50"]:
                    worse.append(f"{mode} {conc}: p50 {t['p50'] * 1e6:.0f} vs {s['p50'] * 1e6:.0f} us")
                if t["rps"] < s["rps"]:
                    worse.append(f"{mode} {conc}: {t['rps']:.0f} vs {s['rps']:.0f} req/s")
    if compared:
        out.append(("tier at least as fast as the stock tier (p50 and requests/s) at every concurrency",
                    "; ".join(worse) if worse else f"{compared} of {compared} measurements", not worse))
    return out


def two_hops(res: dict, mode: str = "keep-alive", conc: int = 8) -> list[str]:
    """What the tier's two HTTP hops allow when each is measured alone in the same run: lines for the report,
    [] where the run lacks `direct`, `haproxy alone`, `nginx` or `tier` at (mode, conc).

    Where the 2 cores are saturated (kept-alive connections, 8 and up), a request's time is the CPU every
    process spends on it over the cores, and the processes of a chain add up: the tier's time per request is
    then about HAProxy's hop (`haproxy alone` - `direct`) + nginx's hop (`nginx` - `direct`) + the client and
    backend (`direct`), i.e. 1/rps = 1/rps(haproxy alone) + 1/rps(nginx) - 1/rps(direct). The same sum over
    the two relays' hops would give 1/rps(relay x2). A tier at 1.00x of that bound costs no more than its two
    daemons do alone (the stock HAProxy, proxytier's nginx); the bound over `relay x2` is the most any tier of
    these two HTTP proxies could reach against the relays on this machine."""
    by_path = res.get(mode, {}).get(str(conc), {})
    d, h, n, t = (by_path.get(p) for p in ("direct", "haproxy alone", "nginx", "tier"))
    if not (d and h and n and t) or min(x["rps"] for x in (d, h, n, t)) <= 0:
        return []
    inverse = 1 / h["rps"] + 1 / n["rps"] - 1 / d["rps"]
    if inverse <= 0:
        return []
    bound = 1 / inverse
    out = [f"{mode}, {conc} connections: HAProxy alone + nginx alone allow {bound:.0f} requests/s through the "
           f"two hops; the tier reached {t['rps']:.0f} ({t['rps'] / bound:.2f}x of that)"]
    one = by_path.get(ONE_NGINX)
    if one:
        out[0] += f", with every HAProxy sending to one node's nginx {one['rps']:.0f} ({one['rps'] / bound:.2f}x)"
    r = by_path.get("relay x2")
    if r and r["rps"] > 0:
        out[0] += f"; that bound is {bound / r['rps']:.2f}x the two relays' {r['rps']:.0f}"
    return out


def render(run: dict) -> str:
    """The `throughput` section of BENCHMARKS.md from a run's JSON."""
    res, s = run["results"], run["settings"]
    us = 1e6
    lines = [
        f"## Throughput, latency and CPU per request (`bench/throughput`){s.get('title', '')}",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}.",
        f"{s['rounds']} interleaved rounds of {s['seconds']} s per measurement (every kept-alive round before "
        f"the first new-connection one), medians over rounds; load: wrk "
        f"(one thread) at {', '.join(str(c) for c in s['concurrency'])} connections, kept alive or one new "
        "connection per request. The client shares the 2 cores with every daemon and backend. Tier pillar "
        f"over the lab's: `{json.dumps(s.get('pillar') or {})}`; the stock daemons sized alike (nginx "
        f"worker_processes {s.get('sizing', {}).get('worker_processes', 'auto')}, HAProxy nbthread "
        f"{s.get('sizing', {}).get('nbthread', 'auto')}). `over direct`: "
        "the p50 difference to `direct` at the same concurrency; `/ floor`: that difference over the two "
        "relays' (`relay x2`) one; ratios of requests/s to `direct`, to `relay x2` and to the stock tier.",
    ]
    for mode in MODES:
        by_conc = res.get(mode)
        if not by_conc:
            continue
        lines += ["", f"### {mode}", "",
                  "| connections | path | p50 (us) | p99 (us) | over direct | / floor | requests/s | vs direct "
                  "| vs relay x2 | vs stock tier | failed |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for conc, by_path in by_conc.items():
            base, floor, stock = by_path.get("direct"), by_path.get("relay x2"), by_path.get("stock tier")
            for path, r in by_path.items():
                over = "-" if not base else f"{(r['p50'] - base['p50']) * us:+.0f}"
                fl = ("-" if not (base and floor) or floor["p50"] <= base["p50"] or path == "direct"
                      else f"{(r['p50'] - base['p50']) / (floor['p50'] - base['p50']):.2f}")
                ratios = " | ".join("-" if not other else f"{r['rps'] / other['rps']:.2f}"
                                    for other in (base, floor, stock))
                lines.append(f"| {conc} | {path} | {r['p50'] * us:.0f} | {r['p99'] * us:.0f} | {over} | {fl} "
                             f"| {r['rps']:.0f} | {ratios} | {r['failed']} |")
    groups = ["haproxy", "nginx", "exporter", "journald", "keepalived", "haproxy (stock)", "nginx (stock)",
              "relay", "backend", "client", "salt-minion", "other"]
    for mode in MODES:
        conc = str(s.get("cpu_concurrency", 8))
        by_path = res.get(mode, {}).get(conc)
        if not by_path:
            continue
        lines += ["", f"### CPU per request (us), {mode}, {conc} connections", "",
                  "| path | " + " | ".join(groups) + " | the path's proxies |",
                  "| --- | " + " | ".join("---" for _ in groups) + " | --- |"]
        for path, r in by_path.items():
            cpu = r.get("cpu") or {}
            lines.append(f"| {path} | " + " | ".join(f"{cpu[g]:.1f}" if g in cpu else "-" for g in groups)
                         + f" | {path_total(path, cpu):.1f} |")
    checks = targets_met(res, run.get("per_round"))
    if checks:
        lines += ["", "Targets:", ""]
        for what, figure, met in checks:
            mark = {True: "met", False: "**not met**", None: "not measured"}[met]
            lines.append(f"- {what}: {figure}: {mark}.")
    saturated = sorted({int(c) for c in res.get("keep-alive", {})} - {1})
    hops = [line for conc in saturated for line in two_hops(res, conc=conc)]
    if hops:
        lines += ["", "What the two HTTP hops allow, each measured alone (`two_hops` in bench/throughput/run.py):", ""]
        lines += [f"- {line}." for line in hops]
    paths = "; ".join(f"`{k}` " + ", ".join(f"{a}:{p}" for a, p in v) for k, v in run["paths"].items())
    lines += ["", f"Paths: {paths}. Stock configs: Debian's nginx.conf and haproxy.cfg from the nodes' packages, "
              "plus a tutorial's upstream/proxy_pass and roundrobin backend (bench/throughput/run.py)."]
    return "\n".join(lines) + "\n"


# ---- the lab side: relays, stock daemons, the nginx port, CPU samples, wrk


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench ends, however it ends (kill -9 included)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_listening(targets: list[Target], procs: list[subprocess.Popen] | None = None, what: str = "") -> None:
    deadline = time.monotonic() + 10
    for address, port in targets:
        while True:
            with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
                break
            dead = [p for p in procs or [] if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = dead[0].stderr.read().decode(errors="replace").strip() if dead else "no answer in 10 s"
                raise RuntimeError(f"{what} {address}:{port}: {why}")
            time.sleep(0.05)


@contextlib.contextmanager
def listeners(commands: list[list[str]], targets: list[Target], what: str) -> Iterator[None]:
    """`commands` started (each dies with this process: _die_with_parent) until every target accepts
    connections (RuntimeError naming `what` and the first one that died, with its stderr, or did not
    answer in 10 s); each terminated, then killed after 5 s, on the way out."""
    procs: list[subprocess.Popen] = []
    try:
        for cmd in commands:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, preexec_fn=_die_with_parent))
        _wait_listening(targets, procs, what)
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


@contextlib.contextmanager
def relays(backend_port: int) -> Iterator[None]:
    """socat relays in the nodes' network namespaces for the relay paths, stopped on the way out."""
    from lab import nodes  # needs the lab (root): imported here so the pure part stays usable without it

    specs = relay_specs(backend_port)
    commands = [["nsenter", "-t", str(nodes.leader(node)), "-n", "--", "socat",
                 f"TCP-LISTEN:{port},bind={config.check_lab_address(address)},reuseaddr,fork,nodelay",
                 f"TCP:{upstream},nodelay"] for node, address, port, upstream in specs]
    with listeners(commands, [(a, p) for _n, a, p, _u in specs], "relay"):
        yield


def _replace_once(text: str, old: str, new: str, what: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"Debian's default {what} no longer has exactly one {old!r}: update bench/throughput")
    return text.replace(old, new)


def stock_nginx_conf(debian: str, node_address: str, backend_port: int, workers: str = "auto") -> str:
    """Debian's default nginx.conf (`debian`, as nginx-common ships it) with its pid and access log moved
    under STOCK_DIR and its conf.d/sites-enabled includes replaced by a tutorial's reverse proxy: a
    round-robin `upstream` of the lab's backends (no keepalive: a tutorial's) and a server on
    node_address:STOCK_NGINX_PORT that proxy_passes every request to it."""
    text = _replace_once(debian, "pid /run/nginx.pid;", f"pid {STOCK_DIR}/nginx.pid;", "nginx.conf")
    if workers != "auto":  # sized as the tier is (sizing())
        text = _replace_once(text, "worker_processes auto;", f"worker_processes {int(workers)};", "nginx.conf")
    text = _replace_once(text, "access_log /var/log/nginx/access.log;",
                         "access_log /var/log/nginx/proxytier-bench-access.log;", "nginx.conf")
    text = _replace_once(text, "include /etc/nginx/conf.d/*.conf;", "", "nginx.conf")
    servers = "".join(f"\t\tserver {be.address}:{backend_port};\n" for be in config.BACKENDS)
    site = (f"upstream backends {{\n{servers}\t}}\n"
            f"\tserver {{\n\t\tlisten {config.check_lab_address(node_address)}:{STOCK_NGINX_PORT};\n"
            "\t\tlocation / {\n\t\t\tproxy_pass http://backends;\n\t\t\tproxy_set_header Host $host;\n"
            "\t\t\tproxy_set_header X-Real-IP $remote_addr;\n"
            "\t\t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\t\t}\n\t}\n")
    return _replace_once(text, "include /etc/nginx/sites-enabled/*;", site, "nginx.conf")


def stock_haproxy_cfg(debian: str, node_address: str, backend_port: int, nbthread: str = "auto") -> str:
    """Debian's default haproxy.cfg with its admin socket moved under STOCK_DIR, and a tutorial's two
    proxies appended: node_address:STOCK_TIER_PORT balancing `roundrobin` over the stock nginx of every
    node, and node_address:HAPROXY_ALONE_PORT over the backends, each server with `check`."""
    text = _replace_once(debian, "stats socket /run/haproxy/admin.sock", f"stats socket {STOCK_DIR}/haproxy.sock",
                         "haproxy.cfg")
    if nbthread != "auto":  # sized as the tier is (sizing())
        text, found = re.subn(r"(?m)^global$", f"global\n\tnbthread {int(nbthread)}", text, count=1)
        if not found:
            raise RuntimeError("Debian's default haproxy.cfg no longer has a global section: update bench/throughput")
    addr = config.check_lab_address(node_address)
    nginxes = "".join(f"    server {n.name} {n.address}:{STOCK_NGINX_PORT} check\n" for n in config.NODES)
    backends = "".join(f"    server {be.name} {be.address}:{backend_port} check\n" for be in config.BACKENDS)
    return (text.rstrip("\n") + "\n\n"
            f"frontend stock_tier\n    bind {addr}:{STOCK_TIER_PORT}\n    default_backend nginx_nodes\n\n"
            f"backend nginx_nodes\n    balance roundrobin\n{nginxes}\n"
            f"frontend haproxy_alone\n    bind {addr}:{HAPROXY_ALONE_PORT}\n    default_backend backends\n\n"
            f"backend backends\n    balance roundrobin\n{backends}")


def _debian_default(node: config.Node, package: str, member: str) -> str:
    from lab import image, nodes

    cmd = f"dpkg-deb --fsys-tarfile {image.LOCAL_REPO}/{package}_*.deb | tar -xO .{member}"
    return nodes.exec_(node, ["sh", "-ec", cmd]).stdout


def _stop_stock(node: config.Node) -> None:
    """Stop every stock unit in the node, this run's and a killed run's. Listed first: naming a unit that
    does not exist to `systemctl stop` loads a stub of it, and `systemd-run` then refuses that name for a
    moment ("already loaded"), which is also why each run's units have names of their own."""
    from lab import nodes

    listed = nodes.exec_(node, ["systemctl", "list-units", "--all", "--plain", "--no-legend",
                                STOCK_UNIT.format(daemon="*", pid="*")], check=False).stdout
    units = [line.split()[0] for line in listed.splitlines() if line.strip()]
    if units:
        nodes.exec_(node, ["systemctl", "stop", *units], check=False)


@contextlib.contextmanager
def stock_daemons(backend_port: int, size: dict[str, str] | None = None) -> Iterator[None]:
    """The stock nginx on every node and the stock HAProxy on proxy1, as transient units inside the nodes
    (each config checked by its daemon first), stopped on the way out; a unit a killed run left is
    stopped before starting."""
    from lab import nodes

    first = config.NODES[0]
    try:
        for node in config.NODES:
            _stop_stock(node)
            conf = stock_nginx_conf(_debian_default(node, "nginx-common", "/etc/nginx/nginx.conf"), node.address,
                                    backend_port, (size or {}).get("worker_processes", "auto"))
            nodes.exec_(node, ["sh", "-ec", f"mkdir -p {STOCK_DIR}; cat > {STOCK_DIR}/nginx.conf"], input_text=conf)
            nodes.exec_(node, ["nginx", "-t", "-q", "-c", f"{STOCK_DIR}/nginx.conf"])
            nodes.exec_(node, ["systemd-run", f"--unit={STOCK_UNIT.format(daemon='nginx', pid=os.getpid())}",
                               "--collect", "nginx",
                               "-c", f"{STOCK_DIR}/nginx.conf", "-g", "daemon off;"])
        cfg = stock_haproxy_cfg(_debian_default(first, "haproxy", "/etc/haproxy/haproxy.cfg"), first.address,
                                backend_port, (size or {}).get("nbthread", "auto"))
        nodes.exec_(first, ["sh", "-ec", f"cat > {STOCK_DIR}/haproxy.cfg"], input_text=cfg)
        nodes.exec_(first, ["haproxy", "-c", "-q", "-f", f"{STOCK_DIR}/haproxy.cfg"])
        nodes.exec_(first, ["systemd-run", f"--unit={STOCK_UNIT.format(daemon='haproxy', pid=os.getpid())}",
                            "--collect", "haproxy", "-W", "-db",
                            "-f", f"{STOCK_DIR}/haproxy.cfg"])
        _wait_listening([(n.address, STOCK_NGINX_PORT) for n in config.NODES]
                        + [(first.address, STOCK_TIER_PORT), (first.address, HAPROXY_ALONE_PORT)], what="stock")
        time.sleep(2.5)  # HAProxy's first health checks (inter 2 s) mark the servers up
        yield
    finally:
        for node in config.NODES:
            with contextlib.suppress(Exception):
                _stop_stock(node)


def fast_backend_conf(be: config.Backend, run_dir: str) -> str:
    """nginx as a backend that costs next to nothing per request: one worker answering every request on
    be.address:FAST_PORT with a fixed JSON body, no access log (the lab's Python backends parse every
    header a proxy adds, which made each proxy hop look dearer than it is)."""
    addr = config.check_lab_address(be.address)
    return (f"worker_processes 1;\npid {run_dir}/{be.name}.pid;\nerror_log {run_dir}/{be.name}-error.log;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n    access_log off;\n    keepalive_requests 1000000;\n    server {{\n"
            f"        listen {addr}:{FAST_PORT};\n        location / {{\n"
            "            default_type application/json;\n"
            f"            return 200 '{{\"backend\": \"{be.name}\", \"fast\": true}}\\n';\n        }}\n    }}\n}}\n")


@contextlib.contextmanager
def fast_backends() -> Iterator[None]:
    """The host's nginx in each backend's network namespace on FAST_PORT (fast_backend_conf), stopped on
    the way out."""
    with tempfile.TemporaryDirectory(prefix="proxytier-bench-") as run_dir:
        commands = []
        for be in config.BACKENDS:
            conf = Path(run_dir) / f"{be.name}.conf"
            conf.write_text(fast_backend_conf(be, run_dir))
            commands.append(["ip", "netns", "exec", be.netns, "nginx", "-c", str(conf), "-g", "daemon off;"])
        with listeners(commands, [(be.address, FAST_PORT) for be in config.BACKENDS], "backend"):
            yield


def tier_pillar(base: dict, backend_port: int, override: dict) -> dict:
    """The lab pillar `base` with every site's servers on `backend_port` and `override` (a mapping under
    `proxytier`, e.g. {"nginx": {"access_log": "off"}}) merged in key by key (lab.tier.deep_merge)."""
    from lab import tier

    data = tier.deep_merge(base, {"proxytier": override})
    for site in data["proxytier"]["sites"]:
        for server in site.get("backends") or []:
            host, _, _port = server["address"].rpartition(":")
            server["address"] = f"{host}:{backend_port}"
    return data


def sizing(pillar: dict) -> dict[str, str]:
    """The daemons' sizing a tier pillar sets, for the stock daemons to match: nginx worker_processes and
    HAProxy nbthread ("auto": Debian's defaults, nginx's `auto` and HAProxy's one thread per CPU)."""
    pt = pillar.get("proxytier") or {}
    return {"worker_processes": str((pt.get("nginx") or {}).get("worker_processes", "auto")),
            "nbthread": str((pt.get("haproxy") or {}).get("nbthread", "auto"))}


@contextlib.contextmanager
def tier_applied() -> Iterator[None]:
    """The checkout's pillar applied again on the way out (the bench writes lab pillar overrides)."""
    from lab import tier

    try:
        yield
    finally:
        tier.back_to_checkout_pillar()


def apply_tier(data: dict, what: str) -> float:
    """`data` written as the lab's pillar override and applied on every node -> seconds."""
    from lab import tier

    tier.write_pillar(data)
    return tier.apply_ok(what)


@contextlib.contextmanager
def host_to_nginx() -> Iterator[None]:
    """Let the host reach proxytier's nginx on proxy1 (its filter admits only members) for the `nginx`
    path: one accept rule inserted first in proxytier's input chain, deleted by its handle on the way out
    (an apply meanwhile would reload the filter without it)."""
    from lab import nodes

    first = config.NODES[0]
    comment = "proxytier-bench: the host to nginx"
    nodes.exec_(first, ["nft", "insert", "rule", "inet", "proxytier_filter", "input", "ip", "saddr",
                        config.check_lab_address(config.HOST_ADDR), "tcp", "dport", "8080", "accept",
                        "comment", f'"{comment}"'])
    try:
        yield
    finally:
        listing = nodes.exec_(first, ["nft", "-a", "list", "chain", "inet", "proxytier_filter", "input"],
                              check=False).stdout
        for line in listing.splitlines():
            if comment in line and "# handle " in line:
                nodes.exec_(first, ["nft", "delete", "rule", "inet", "proxytier_filter", "input", "handle",
                                    line.rsplit("# handle ", 1)[1].strip()], check=False)


@contextlib.contextmanager
def one_nginx() -> Iterator[None]:
    """ONE_NGINX: every nginx but proxy2's in maintenance in every HAProxy (the formula's
    `proxytier.member_state`, the runtime API: no reload), ready again on the way out. A bench killed in
    between leaves them in maintenance: `salt 'proxy*' proxytier.member_state proxy1 ready` (and proxy3)."""
    from lab import master

    others = [n.name for n in config.NODES if n is not config.NODES[1]]

    def set_state(state: str) -> None:
        for name in others:
            master.salt(["salt", "proxy*", "proxytier.member_state", name, state], timeout=60, check=True)

    try:
        set_state("maint")
        yield
    finally:
        set_state("ready")


def _stock_roots() -> set[int]:
    return {int(p.name) for p in Path("/proc").glob("[0-9]*") if _cmdline(int(p.name)).find(STOCK_DIR) >= 0}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def lab_pids() -> dict[int, bool]:
    """Every process in the lab's network namespaces -> whether it is in a backend's (else a node's)."""
    from lab import nodes

    spaces = {os.stat(f"/proc/{nodes.leader(n)}/ns/net").st_ino: False for n in config.NODES}
    spaces |= {os.stat(f"/run/netns/{be.netns}").st_ino: True for be in config.BACKENDS}
    pids = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            space = os.stat(proc / "ns" / "net").st_ino
            if space in spaces:
                pids[int(proc.name)] = spaces[space]
    return pids


def cpu_sample(pids: dict[int, bool], stock: set[int]) -> dict[int, tuple[str, int]]:
    """{pid: (group, utime + stime in clock ticks)} of `pids` (lab_pids: every process in a backend's
    namespace is "backend"; the relays count their reaped children too, as socat forks one per
    connection); a process gone meanwhile is left out."""
    out = {}
    for pid, in_backend in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ppid = int(fields[1])
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
        group = "backend" if in_backend else process_group(comm, _cmdline(pid), pid in stock or ppid in stock)
        if group == "relay":
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: the forked relays that ended
        out[pid] = (group, ticks)
    return out


def run_wrk(targets: list[Target], connections: int, seconds: float, mode: str, script: str) -> dict:
    """One measurement: a wrk per target (split_connections), all at once -> merge()."""
    procs = []
    for (address, port), conns in zip(targets, split_connections(connections, len(targets)), strict=False):
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", script]
        if mode == "new connection":
            cmd += ["-H", "Connection: close"]
        cmd.append(f"http://{config.hostport(config.check_lab_address(address), port)}/lab")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=_die_with_parent))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 30)
        if p.returncode:
            raise RuntimeError(f"wrk exited {p.returncode}: {(out + err).strip()[-300:]}")
        results.append(parse_wrk(out))
    return merge(results, mode)


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children so far (wrk's, the relays' once they end)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(path: str, conc: int, mode: str, seconds: float, script: str, pids: dict[int, bool],
            stock: set[int]) -> dict:
    """One path at one concurrency and mode: wrk's figures and the CPU per request of every lab group."""
    ticks = os.sysconf("SC_CLK_TCK")
    with one_nginx() if path == ONE_NGINX else contextlib.nullcontext():
        before = cpu_sample(pids, stock)
        client = _children_cpu()
        r = run_wrk(PATHS[path], conc, seconds, mode, script)
        after = cpu_sample(pids, stock)
        client = _children_cpu() - client  # wrk's alone: not one_nginx's salt calls on the way out
    r["cpu"] = cpu_per_request(before, after, ticks, r["requests"])
    r["cpu"]["client"] = client * 1e6 / max(r["requests"], 1)
    return r


def main(argv: list[str] | None = None) -> int:
    global PATHS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--concurrency", default=",".join(str(c) for c in CONCURRENCY),
                    help="comma-separated connection counts (default 1,8,64,256)")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated paths (default: all)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--backend", choices=("nginx", "python"), default="nginx",
                    help="nginx: the bench's own nginx backends on each backend's address (default); python: "
                         "the lab's Python backends")
    ap.add_argument("--pillar", type=json.loads, default={},
                    help='JSON merged under proxytier: into the tier\'s pillar for the whole run, e.g. '
                         '\'{"haproxy": {"nbthread": 1}}\'; the stock daemons get the same sizing (sizing())')
    ap.add_argument("--variants", action="store_true",
                    help="A/B the TRIMS pillar variants on the tier path instead of comparing paths "
                         "(section throughput-trims unless --section)")
    ap.add_argument("--section", default=None, help="BENCHMARKS.md section to write (default throughput)")
    ap.add_argument("--title", default="", help="appended to the section's heading")
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, 20))
    seconds = max(1, min(round(args.seconds), 30))  # wrk takes whole seconds
    concs = [max(1, min(int(c), 1024)) for c in args.concurrency.split(",")]
    paths = [p for p in args.paths.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [p for p in paths if p not in PATHS] + [m for m in modes if m not in MODES]:
        raise SystemExit(f"unknown path or mode {unknown}: paths {list(PATHS)}, modes {list(MODES)}")
    for tool in ("wrk", "socat"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run `make lab-up` (it installs the lab's host packages) or "
                             f"`apt-get install {tool}`")
    from lab import tier

    section = args.section or ("throughput-trims" if args.variants else "throughput")
    port = FAST_PORT if args.backend == "nginx" else config.BACKENDS[0].port
    PATHS = lab_paths(port)
    base = tier.current_pillar()
    pillar = tier_pillar(base, port, args.pillar)
    settings = {"rounds": rounds, "seconds": seconds, "concurrency": concs, "cpu_concurrency": 8,
                "backend": args.backend, "title": args.title, "pillar": args.pillar, "sizing": sizing(pillar)}
    if args.variants:
        return run_variants(settings, base, port, modes, section, args.output)
    cells = [(m, c, p) for m in modes for c in concs for p in paths if not (m != "keep-alive" and p in RELAY_PATHS)]
    per_round: dict[str, dict[str, dict[str, list[dict]]]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(tier_applied())
        apply_tier(pillar, "the bench's tier pillar")
        if args.backend == "nginx":
            stack.enter_context(fast_backends())
        script = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".lua"))
        stack.enter_context(relays(port))
        stack.enter_context(stock_daemons(port, sizing(pillar)))
        stack.enter_context(host_to_nginx())
        script.write(WRK_SCRIPT)
        script.flush()
        pids = lab_pids()
        stock = _stock_roots()
        for path in paths:  # warm up: connections, pools, the stock daemons' health checks
            run_wrk(PATHS[path], 8, 1.0, "keep-alive", script.name)
        # interleaved: every path sees the same machine weather. Mode by mode, kept-alive first, so that no
        # kept-alive figure is taken among the thousands of TIME_WAIT sockets a new-connection round leaves on
        # the nodes for a minute. (Suspected once, 2026-12-02: a run's one kept-alive round before any
        # new-connection round gave the tier 0.91x the relays at 8 connections, the two after 0.63x and 0.69x;
        # in this order five kept-alive rounds gave 0.62x in the median, so the order was not the cause.)
        for mode, rnd in [(m, i) for m in modes for i in range(rounds)]:
            for conc, path in [(c, p) for m, c, p in cells if m == mode]:
                r = measure(path, conc, mode, seconds, script.name, pids, stock)
                per_round.setdefault(mode, {}).setdefault(str(conc), {}).setdefault(path, []).append(r)
                print(f"round {rnd + 1} {mode:<14} c={conc:<4} {path:<13} p50 {r['p50'] * 1e6:7.0f} us  "
                      f"p99 {r['p99'] * 1e6:7.0f} us  {r['rps']:7.0f} req/s  failed {r['failed']} "
                      f"{ {k: v for k, v in r['errors'].items() if v} if r['failed'] else ''}  "
                      f"proxies {path_total(path, r['cpu']):6.1f} us/req", flush=True)
    results = {
        mode: {conc: {path: summarize(rs) for path, rs in by_path.items()} for conc, by_path in by_conc.items()}
        for mode, by_conc in per_round.items()
    }
    run = {
        "bench": "throughput", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(),
        "settings": settings,
        "paths": {p: PATHS[p] for p in paths},
        "per_round": per_round,
        "results": results,
    }
    out = report.save_json(run, section)
    text = render(run)
    print(text)
    report.write_section(Path(args.output), section, text)
    print(f"results: {out}; report: {args.output}")
    return 0


# the A/B of --variants: proxytier's own per-request work that a pillar key turns off or resizes
TRIMS: dict[str, dict] = {
    "defaults": {},
    "nginx access_log off": {"nginx": {"access_log": "off"}},
    "haproxy nbthread 1": {"haproxy": {"nbthread": 1}},
    "nginx worker_processes 1": {"nginx": {"worker_processes": 1}},
    "all three": {"nginx": {"access_log": "off", "worker_processes": 1}, "haproxy": {"nbthread": 1}},
}


def run_variants(settings: dict, base: dict, port: int, modes: list[str], section: str, output: str) -> int:
    """--variants: per round, each TRIMS variant applied (its pillar over --pillar's, `state.apply` on every
    node) and the tier path measured at each concurrency and mode; medians over rounds, written as
    `section` of `output`."""
    from lab import tier

    per_round: dict[str, dict[str, dict[str, list[dict]]]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(tier_applied())
        if settings["backend"] == "nginx":
            stack.enter_context(fast_backends())
        script = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".lua"))
        script.write(WRK_SCRIPT)
        script.flush()
        for rnd in range(settings["rounds"]):
            for name, override in TRIMS.items():
                apply_tier(tier_pillar(base, port, tier.deep_merge(settings["pillar"], override)), name)
                time.sleep(2.5)  # HAProxy's health checks see every nginx up again after the reloads
                run_wrk(PATHS["tier"], 8, 1, "keep-alive", script.name)  # warm up
                pids = lab_pids()
                for mode in modes:
                    for conc in settings["concurrency"]:
                        r = measure("tier", conc, mode, settings["seconds"], script.name, pids, set())
                        per_round.setdefault(mode, {}).setdefault(str(conc), {}).setdefault(name, []).append(r)
                        print(f"round {rnd + 1} {name:<26} {mode:<14} c={conc:<4} p50 {r['p50'] * 1e6:7.0f} us  "
                              f"{r['rps']:7.0f} req/s  proxies {path_total('tier', r['cpu']):6.1f} us/req",
                              flush=True)
    run = {
        "bench": "throughput-trims", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(), "settings": settings,
        "variants": TRIMS, "per_round": per_round,
        "results": {mode: {conc: {v: summarize(rs) for v, rs in by_v.items()} for conc, by_v in by_conc.items()}
                    for mode, by_conc in per_round.items()},
    }
    out = report.save_json(run, section)
    text = render_variants(run)
    print(text)
    report.write_section(Path(output), section, text)
    print(f"results: {out}; report: {output}")
    return 0


def render_variants(run: dict) -> str:
    """The trims section: per mode and concurrency, each variant's p50, p99, requests/s and CPU per request
    (HAProxy, nginx, the exporter, the tier's total: path_total), and its ratios to the first variant."""
    s = run["settings"]
    lines = [
        f"## Trims A/B through the tier (`bench/throughput --variants`){s.get('title', '')}",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}. "
        f"{s['rounds']} interleaved rounds; in each, every variant applied with `state.apply` on every node, "
        f"then wrk for {s['seconds']} s per concurrency through VIP-1; medians over rounds. Variants (pillar "
        "under `proxytier:`): " + "; ".join(f"{k}: `{json.dumps(v)}`" for k, v in run["variants"].items())
        + (f". Under every variant: `{json.dumps(s['pillar'])}`" if s.get("pillar") else "") + ".",
    ]
    for mode, by_conc in run["results"].items():
        for conc, by_v in by_conc.items():
            first = next(iter(by_v.values()))
            first_total = path_total("tier", first["cpu"])
            lines += ["", f"### {mode}, {conc} connections", "",
                      "| variant | p50 (us) | p99 (us) | requests/s | vs first | HAProxy | nginx | exporter "
                      "| the tier's CPU per request (us) | vs first |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for name, r in by_v.items():
                cpu, total = r["cpu"], path_total("tier", r["cpu"])
                lines.append(
                    f"| {name} | {r['p50'] * 1e6:.0f} | {r['p99'] * 1e6:.0f} | {r['rps']:.0f} "
                    f"| {r['rps'] / first['rps']:.2f} | {cpu.get('haproxy', 0):.1f} | {cpu.get('nginx', 0):.1f} "
                    f"| {cpu.get('exporter', 0):.1f} | {total:.1f} | {total / first_total if first_total else 0:.2f} |")
    return "\n".join(lines) + "\n"


def summarize(rounds: list[dict]) -> dict:
    """Per-round figures of one cell -> medians (p50, p99, rps, CPU per group), failed summed."""
    groups = sorted({g for r in rounds for g in r.get("cpu", {})})
    return {
        "p50": statistics.median(r["p50"] for r in rounds),
        "p99": statistics.median(r["p99"] for r in rounds),
        "rps": statistics.median(r["rps"] for r in rounds),
        "requests": sum(r["requests"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "errors": {k: sum(r.get("errors", {}).get(k, 0) for r in rounds)
                   for k in sorted({k for r in rounds for k in r.get("errors", {})})},
        "cpu": {g: statistics.median(r.get("cpu", {}).get(g, 0.0) for r in rounds) for g in groups},
    }


if __name__ == "__main__":
    sys.exit(main())
