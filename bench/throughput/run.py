#!/usr/bin/env python3
"""Latency and throughput through the tier, against the same requests straight to the backends, through
one nginx hop, and through one and two do-nothing relays (the floor any proxy hop pays on this machine),
in one run (interleaved rounds, medians over rounds), as differences and ratios.

Paths (all in the lab; the client keeps one connection per target and takes them in turn):
  direct    host -> be1, be2, be3                                   (the backends the tier balances over)
  relay     host -> socat on proxy1 -> a backend                    (one do-nothing hop: the floor)
  relay x2  host -> socat on proxy1 -> socat on proxy2 -> a backend (two hops, as many as the tier has)
  nginx     host -> nginx on proxy1 -> a backend                    (one proxy hop)
  tier      host -> VIP-1 -> HAProxy -> nginx -> a backend           (the full tier)

Measured per path and round:
  - keep-alive latency: `--requests` sequential GETs over kept-alive connections (p50, p99);
  - new-connection latency: a new TCP connection per GET, as most clients of a tier do (p50); not for
    the relays, as socat forks a process per connection, which no proxy does;
  - throughput: `--concurrency` keep-alive connections for `--seconds` (requests/s);
  - one-CPU keep-alive latency: the same, with the client and every lab process (daemons, backends,
    relays) pinned to CPU 0 for that measurement, so no hop waits for the other CPU to wake up. The gap
    between the two latencies is what this virtual machine charges for cross-CPU wake-ups.

The relays are socat (started in the nodes' network namespaces, stopped at the end, and killed with this
process however it ends). The client is a minimal raw-socket HTTP/1.1 client, the same on every path.
Needs the lab up with the formula applied, and socat (`make lab-up` installs it), as root:

    .venv/bin/python -m bench.throughput.run [--rounds 5] [--requests 2000] [--seconds 4]

Writes bench/out/throughput-<time>.json and the `throughput` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench import report
from lab import config

RELAY_PORT = 9900  # relay ports: RELAY_PORT + 10 * hop + backend index (1..3), on the nodes' addresses
REQUEST = b"GET /lab HTTP/1.1\r\nHost: app.example\r\nUser-Agent: proxytier-bench\r\n\r\n"
Target = tuple[str, int]


def relay_port(hop: int, i: int) -> int:
    return RELAY_PORT + 10 * hop + i


def lab_paths() -> dict[str, list[Target]]:
    first = config.NODES[0].address
    n = len(config.BACKENDS)
    return {
        "direct": [(be.address, be.port) for be in config.BACKENDS],
        "relay": [(first, relay_port(0, i)) for i in range(1, n + 1)],
        "relay x2": [(first, relay_port(1, i)) for i in range(1, n + 1)],
        "nginx": [(first, 8080)],
        "tier": [(config.VIPS[0], 80)],
    }


PATHS = lab_paths()
RELAY_PATHS = ("relay", "relay x2")
# socat relays: (node, listen address, port, upstream); the relay x2 chain goes proxy1 -> proxy2 -> backend
RELAYS = [
    spec
    for i, be in enumerate(config.BACKENDS, start=1)
    for spec in (
        (config.NODES[0], config.NODES[0].address, relay_port(0, i), f"{be.address}:{be.port}"),
        (config.NODES[0], config.NODES[0].address, relay_port(1, i), f"{config.NODES[1].address}:{relay_port(2, i)}"),
        (config.NODES[1], config.NODES[1].address, relay_port(2, i), f"{be.address}:{be.port}"),
    )
]


class Client:
    """One keep-alive HTTP/1.1 connection; get() returns after the whole body (Content-Length) is read."""

    def __init__(self, address: str, port: int) -> None:
        self.where = (config.check_lab_address(address), port)
        self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.where, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self) -> None:
        self.sock.sendall(REQUEST)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"answer: {head[:60]!r}")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            self.buf = rest
            self._recv()
            rest = self.buf
        self.buf = rest[length:]
        if b"\r\nconnection: close" in head.lower():  # e.g. nginx after keepalive_requests (1000)
            self.sock.close()
            self.reconnects += 1
            self._connect()

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def latency(path: str, requests: int) -> list[float]:
    """Sequential GETs over one kept-alive connection per target, the targets taken in turn."""
    clients = [Client(*t) for t in PATHS[path]]
    try:
        turn = itertools.cycle(clients)
        for _ in range(50):  # warm up: connections, upstream keep-alive pools
            next(turn).get()
        out = []
        for _ in range(requests):
            client = next(turn)
            t = time.perf_counter()
            client.get()
            out.append(time.perf_counter() - t)
        return out
    finally:
        for client in clients:
            client.close()


def latency_new_connection(path: str, requests: int) -> list[float]:
    """Sequential GETs, each on a new TCP connection (connect, GET, close), the targets taken in turn."""
    targets = itertools.cycle(PATHS[path])
    out = []
    for i in range(requests + 20):  # the first 20 warm up
        t = time.perf_counter()
        client = Client(*next(targets))
        client.get()
        client.close()
        if i >= 20:
            out.append(time.perf_counter() - t)
    return out


def throughput(path: str, concurrency: int, seconds: float) -> float:
    counts = [0] * concurrency
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds
    targets = PATHS[path]

    def worker(i: int) -> None:
        try:
            client = Client(*targets[i % len(targets)])
            while time.monotonic() < stop:
                client.get()
                counts[i] += 1
            client.close()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    if errors:
        raise RuntimeError(f"{path}: {errors[0]!r}")
    return sum(counts) / (time.monotonic() - t0)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---- the lab side: relays and CPU pinning


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench ends, however it ends (kill -9 included)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def relays() -> Iterator[None]:
    """socat relays in the nodes' network namespaces for the relay paths, stopped on the way out."""
    from lab import nodes  # needs the lab (root): imported here so the client stays usable without it

    if not shutil.which("socat"):
        raise SystemExit("socat is missing: run `make lab-up` (it installs the lab's host packages) or "
                         "`apt-get install socat`")
    procs = []
    try:
        for node, address, port, upstream in RELAYS:
            procs.append(subprocess.Popen(
                ["nsenter", "-t", str(nodes.leader(node)), "-n", "--", "socat",
                 f"TCP-LISTEN:{port},bind={config.check_lab_address(address)},reuseaddr,fork,nodelay",
                 f"TCP:{upstream},nodelay"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
            ))
        deadline = time.monotonic() + 10
        for _node, address, port, _ in RELAYS:
            while True:
                with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
                    break
                dead = [p for p in procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    why = dead[0].stderr.read().decode(errors="replace").strip() if dead else "no answer in 10 s"
                    raise RuntimeError(f"relay {address}:{port}: {why}")
                time.sleep(0.05)
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


def lab_tasks() -> list[int]:
    """Every thread of every process in the lab's network namespaces (nodes and backends)."""
    from lab import nodes

    spaces = {os.stat(f"/proc/{nodes.leader(n)}/ns/net").st_ino for n in config.NODES}
    spaces |= {os.stat(f"/run/netns/{be.netns}").st_ino for be in config.BACKENDS}
    tasks = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.stat(proc / "ns" / "net").st_ino in spaces:
                tasks += [int(t.name) for t in (proc / "task").iterdir()]
        except OSError:  # gone meanwhile
            continue
    return tasks


@contextlib.contextmanager
def one_cpu(cpu: int = 0) -> Iterator[int]:
    """Pin this process and every lab task to one CPU; give each back its own CPU set on the way out."""
    saved: dict[int, set[int]] = {0: os.sched_getaffinity(0)}
    try:
        for tid in lab_tasks():
            with contextlib.suppress(OSError):
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpu})
        os.sched_setaffinity(0, {cpu})
        yield len(saved) - 1
    finally:
        for tid, cpus in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


# ---- the report


def render(run: dict) -> str:
    res, s = run["results"], run["settings"]
    us = 1e6
    base = res["direct"]
    lines = [
        "## Throughput and latency (`bench/throughput`)",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}.",
        f"{s['rounds']} interleaved rounds, medians over rounds. Keep-alive: {s['requests']} sequential GETs over "
        f"kept-alive connections; new connection: {s['requests_new']} GETs, each on a new TCP connection; "
        f"throughput: {s['concurrency']} keep-alive connections for {s['seconds']} s; one CPU: keep-alive again "
        "with the client and every lab process pinned to CPU 0. The client shares the 2 cores with every "
        "daemon and backend. Differences are against `direct` (the same backends, taken in turn).",
        "",
        "| path | keep-alive p50 (us) | over direct | p99 (us) | new connection p50 (us) | over direct "
        "| requests/s | vs direct | one CPU p50 (us) | over direct |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path, r in res.items():
        new = ("- | -" if r["new_p50"] is None
               else f"{r['new_p50'] * us:.0f} | {(r['new_p50'] - base['new_p50']) * us:+.0f}")
        lines.append(
            f"| {path} | {r['p50'] * us:.0f} | {(r['p50'] - base['p50']) * us:+.0f} | {r['p99'] * us:.0f} "
            f"| {new} "
            f"| {r['rps']:.0f} | {r['rps'] / base['rps']:.2f} "
            f"| {r['cpu0_p50'] * us:.0f} | {(r['cpu0_p50'] - base['cpu0_p50']) * us:+.0f} |"
        )
    if {"tier", "relay x2"} <= set(res):
        over = {k: (res["tier"][k] - res["relay x2"][k]) * us for k in ("p50", "cpu0_p50")}
        lines += [
            "",
            f"The tier over two do-nothing relays (what HAProxy and nginx add beyond the hops themselves), "
            f"keep-alive p50: {over['p50']:+.0f} us on both CPUs, {over['cpu0_p50']:+.0f} us on one CPU.",
        ]
    paths = "; ".join(f"`{k}` " + ", ".join(f"{a}:{p}" for a, p in v) for k, v in run["paths"].items())
    lines += ["", f"Paths: {paths}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, 20))
    requests = max(100, min(args.requests, 20000))
    requests_new = max(100, requests // 2)
    seconds = max(1.0, min(args.seconds, 30.0))
    concurrency = max(1, min(args.concurrency, 64))
    keys = ("p50", "p99", "new_p50", "rps", "cpu0_p50")
    per_round: dict[str, dict[str, list[float]]] = {p: {k: [] for k in keys} for p in PATHS}
    with relays():
        for rnd in range(rounds):
            for path in PATHS:  # interleaved: every path sees the same machine weather
                m = per_round[path]
                lat = latency(path, requests)
                m["p50"].append(pct(lat, 0.5))
                m["p99"].append(pct(lat, 0.99))
                if path not in RELAY_PATHS:
                    m["new_p50"].append(pct(latency_new_connection(path, requests_new), 0.5))
                m["rps"].append(throughput(path, concurrency, seconds))
                with one_cpu():
                    m["cpu0_p50"].append(pct(latency(path, requests), 0.5))
                new = f"{m['new_p50'][-1] * 1e6:5.0f} us" if m["new_p50"] else "    -   "
                print(f"round {rnd + 1} {path:<8} keep-alive p50 {m['p50'][-1] * 1e6:5.0f} us  "
                      f"p99 {m['p99'][-1] * 1e6:6.0f} us  new connection p50 {new}  "
                      f"{m['rps'][-1]:6.0f} req/s  one CPU p50 {m['cpu0_p50'][-1] * 1e6:5.0f} us", flush=True)
    run = {
        "bench": "throughput", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(),
        "settings": {"rounds": rounds, "requests": requests, "requests_new": requests_new, "seconds": seconds,
                     "concurrency": concurrency},
        "paths": PATHS,
        "per_round": per_round,
        "results": {p: {k: statistics.median(v) if v else None for k, v in d.items()}
                    for p, d in per_round.items()},
    }
    path = report.save_json(run, "throughput")
    text = render(run)
    print(text)
    report.write_section(Path(args.output), "throughput", text)
    print(f"results: {path}; report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
