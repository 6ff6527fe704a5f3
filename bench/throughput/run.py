#!/usr/bin/env python3
"""Latency and throughput through the tier, against the same request straight to a backend and through
one proxy hop, in one run (interleaved rounds, medians over rounds), as differences and ratios.

Paths (all in the lab, the backend answers the same JSON on each):
  direct   host -> backend be1 (198.18.0.21:8080)
  nginx    host -> nginx on proxy1 (198.18.0.11:8080) -> a backend          (one proxy hop)
  tier     host -> VIP-1 (198.18.0.101:80) -> HAProxy -> nginx -> a backend  (the full tier)

Latency: one keep-alive connection, sequential GETs (p50, p99 per round). Throughput: `--concurrency`
keep-alive connections for `--seconds` each (requests/s). The client is a minimal raw-socket HTTP/1.1
client, so its own cost is small and the same on every path. Needs the lab up with the formula applied:

    .venv/bin/python -m bench.throughput.run [--rounds 5] [--requests 2000] [--seconds 5]

Writes bench/out/throughput-<time>.json and the `throughput` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.failover import report
from lab import config

PATHS = {
    "direct": (config.BACKENDS[0].address, config.BACKENDS[0].port),
    "nginx": (config.NODES[0].address, 8080),
    "tier": (config.VIPS[0], 80),
}
REQUEST = b"GET /lab HTTP/1.1\r\nHost: app.example\r\nUser-Agent: proxytier-bench\r\n\r\n"


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
    client = Client(*PATHS[path])
    try:
        for _ in range(50):  # warm up: connection, upstream keep-alive pools
            client.get()
        out = []
        for _ in range(requests):
            t = time.perf_counter()
            client.get()
            out.append(time.perf_counter() - t)
        return out
    finally:
        client.close()


def throughput(path: str, concurrency: int, seconds: float) -> float:
    counts = [0] * concurrency
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        try:
            client = Client(*PATHS[path])
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


def render(run: dict) -> str:
    res, s = run["results"], run["settings"]
    us = 1e6
    lines = [
        "## Throughput and latency (`bench/throughput`)",
        "",
        f"Run {run['date']}, commit `{run['git_commit']}`, {report.machine_line(run['machine'])}.",
        f"{s['rounds']} interleaved rounds; latency: {s['requests']} sequential GETs on one keep-alive "
        f"connection per path and round; throughput: {s['concurrency']} keep-alive connections for "
        f"{s['seconds']} s. Medians over rounds. The client shares the 2 cores with every daemon and backend.",
        "",
        "| path | p50 latency (us) | p99 latency (us) | p50 over direct (us) | requests/s | throughput vs direct |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for path in PATHS:
        r = res[path]
        lines.append(
            f"| {path} | {r['p50'] * us:.0f} | {r['p99'] * us:.0f} | {(r['p50'] - res['direct']['p50']) * us:+.0f} "
            f"| {r['rps']:.0f} | {r['rps'] / res['direct']['rps']:.2f} |"
        )
    lines += ["", "Paths: " + "; ".join(f"`{k}` {a}:{p}" for k, (a, p) in PATHS.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--output", default=str(report.REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    rounds = max(1, min(args.rounds, 20))
    requests = max(100, min(args.requests, 20000))
    seconds = max(1.0, min(args.seconds, 30.0))
    concurrency = max(1, min(args.concurrency, 64))
    per_round: dict[str, dict[str, list[float]]] = {p: {"p50": [], "p99": [], "rps": []} for p in PATHS}
    for rnd in range(rounds):
        for path in PATHS:  # interleaved: every path sees the same machine weather
            lat = latency(path, requests)
            per_round[path]["p50"].append(pct(lat, 0.5))
            per_round[path]["p99"].append(pct(lat, 0.99))
            per_round[path]["rps"].append(throughput(path, concurrency, seconds))
            print(f"round {rnd + 1} {path:<6} p50 {per_round[path]['p50'][-1] * 1e6:7.0f} us  "
                  f"p99 {per_round[path]['p99'][-1] * 1e6:7.0f} us  {per_round[path]['rps'][-1]:7.0f} req/s",
                  flush=True)
    run = {
        "bench": "throughput", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": report.git_commit(), "machine": report.machine_facts(),
        "settings": {"rounds": rounds, "requests": requests, "seconds": seconds, "concurrency": concurrency},
        "per_round": per_round,
        "results": {p: {k: statistics.median(v) for k, v in d.items()} for p, d in per_round.items()},
    }
    path = report.save_json(run, "throughput")
    text = render(run)
    print(text)
    report.write_section(Path(args.output), "throughput", text)
    print(f"results: {path}; report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
