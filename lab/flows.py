"""Established HTTP connections for the lab's BGP-mode leave test: keep-alive connections that each send a
request every --interval seconds and end by themselves, as a client's downloads do.

    python -m lab.flows --target 198.18.0.200 --connections 300 [--interval 0.5] [--life 10:22] \\
        [--timeout 5] [--port 80]

Opens --connections keep-alive connections to the target (each makes one request, GET /lab, and must get the
backend's answer), prints one line `READY {"ports": [local port of each connection], "failed": n}`, then waits
(at most 60 s) for a line "GO" on stdin. From GO, connection i keeps making a request every --interval seconds
until its life ends (A + (B - A) * i / (n - 1) seconds after GO, for --life A:B: the ends spread evenly), then
closes; the connections' requests are spread evenly over each interval. A line "STOP" on stdin (or stdin
closed) ends every connection at once, as if its life were over. A connection is broken when a
request on it fails: reset (ECONNRESET, EPIPE: a node that does not know the flow answered with RST), closed
by the other side, no whole answer within --timeout seconds, or an
answer other than 200. Prints one line `RESULT {"conns": [{"port", "state" (ok|reset|closed|timeout|error),
"at" (s after GO, or null), "life" (s), "requests", "reopened" (answers that closed the connection, each
followed by a new one: a reloading HAProxy does that), "error"}]}`. Stops by itself: every life is at most 600 s.

One thread per connection (the work is waiting), standard library only; the target must be a lab address.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import select
import socket
import sys
import threading
import time
from typing import Any

from lab import config

MAX_CONNECTIONS = 2000
MAX_LIFE = 600.0


class Flow:
    """One keep-alive connection and what happened to it."""

    def __init__(self, target: str, port: int, timeout: float) -> None:
        self.conn = http.client.HTTPConnection(target, port, timeout=timeout)
        self.port = 0
        self.state, self.at, self.requests, self.error = "ok", None, 0, ""
        self.life = 0.0
        self.reopened = 0  # answers with "Connection: close" (a reloading HAProxy): the next request reconnects

    def request(self) -> None:
        """One GET /lab on the connection; raises on any failure (OSError, HTTPException, a non-200)."""
        self.conn.request("GET", "/lab", headers={"User-Agent": "proxytier-lab-flows"})
        resp = self.conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        self.requests += 1
        if resp.will_close and self.requests > 1:
            self.reopened += 1  # http.client opens a new connection for the next request

    def open(self) -> bool:
        try:
            self.conn.connect()
            assert self.conn.sock is not None
            self.port = self.conn.sock.getsockname()[1]
            self.request()
            return True
        except (OSError, http.client.HTTPException, RuntimeError) as e:
            self.state, self.error = "error", type(e).__name__
            self.conn.close()
            return False

    def broken(self, e: BaseException, t0: float) -> None:
        if isinstance(e, OSError) and e.errno in (errno.ECONNRESET, errno.EPIPE):
            self.state = "reset"
        elif isinstance(e, (TimeoutError, socket.timeout)):
            self.state = "timeout"
        elif isinstance(e, (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionError)):
            self.state = "closed"
        else:
            self.state = "error"
        self.at, self.error = round(time.monotonic() - t0, 3), f"{type(e).__name__} {e}"[:120]

    def run(self, t0: float, life: float, interval: float, phase: float, stop: threading.Event) -> None:
        """Requests every `interval` s from t0 + phase until t0 + life or `stop`, then close."""
        self.life = life
        end = t0 + life
        next_at = t0 + phase
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if stop.wait(max(0.0, min(next_at, end) - now)) or time.monotonic() >= end:
                break
            next_at += interval
            try:
                self.request()
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                self.broken(e, t0)
                break
        self.conn.close()

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "state": self.state, "at": self.at, "life": round(self.life, 3),
                "requests": self.requests, "reopened": self.reopened, "error": self.error}


def lives(n: int, a: float, b: float) -> list[float]:
    """Connection i's life: a + (b - a) * i / (n - 1) seconds (one connection: a)."""
    return [a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--life", default="10:22", help="A:B seconds after GO: the first and the last connection's end")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args(argv)
    target = config.check_lab_address(a.target)
    lo, hi = (float(x) for x in a.life.split(":"))
    if not 0 < lo <= hi <= MAX_LIFE or not 1 <= a.connections <= MAX_CONNECTIONS or a.interval <= 0:
        ap.error(f"--life 0 < A <= B <= {MAX_LIFE:.0f}, --connections 1..{MAX_CONNECTIONS}, --interval > 0")
    flows = [Flow(target, a.port, a.timeout) for _ in range(a.connections)]
    failed = sum(1 for f in flows if not f.open())
    live = [f for f in flows if f.state == "ok"]
    print("READY " + json.dumps({"ports": [f.port for f in live], "failed": failed}), flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], 60)
    if not ready or sys.stdin.readline().strip() != "GO":
        for f in flows:
            f.conn.close()
        print("RESULT " + json.dumps({"error": "no GO"}), flush=True)
        return 1
    t0 = time.monotonic()
    stop = threading.Event()
    # the connections' requests spread evenly over each interval, not a burst of all of them at once
    threads = [threading.Thread(target=f.run, args=(t0, life, a.interval, a.interval * i / len(live), stop),
                                daemon=True)
               for i, (f, life) in enumerate(zip(live, lives(len(live), lo, hi), strict=True))]
    for t in threads:
        t.start()
    end = t0 + hi + a.timeout + 10
    while any(t.is_alive() for t in threads) and time.monotonic() < end:
        ready, _, _ = select.select([sys.stdin], [], [], 0.2)
        if ready and sys.stdin.readline().strip() in ("STOP", ""):
            stop.set()  # "STOP" (or stdin closed): every connection ends now, as if its life were over
    for t in threads:
        t.join(timeout=max(0.0, end - time.monotonic()))
    print("RESULT " + json.dumps({"conns": [f.as_dict() for f in live]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
