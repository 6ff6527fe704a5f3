"""Long-lived TCP flows for the ECMP bench: a server for each node and the client behind the router.

    python -m bench.ecmp.flows server --name n1 --address 198.19.255.100 --port 7000 [--seconds 600]
    python -m bench.ecmp.flows client --address 198.19.255.100 --port 7000 --connections 320 \\
        [--interval 0.5] [--timeout 2] [--observe 6] [--new 60]

The server answers every chunk it receives with its name and a newline (so a client learns which node
holds each connection). The client opens --connections connections (each sends "?" and reads the node's
name), prints one line `READY {"nodes": {name: count}, "failed": n}`, then waits (at most 60 s) for a line
"GO" on stdin, then pings every connection (one byte, the node's line back) every --interval seconds for
--observe seconds: a connection is broken when it is reset (ECONNRESET/EPIPE: a node that does not know the
flow answered it with RST), closed, or unanswered for --timeout seconds. Then it opens --new connections
(where do new flows go now) and prints one line `RESULT {"conns": [{"node", "state" (ok|reset|closed|
timeout), "at" (s after GO or null)}], "new": {name: count}, "new_failed": n, "pings": n}`.
Both stop by themselves (the server after --seconds, at most 3600; the client after the phases above).
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import selectors
import socket
import sys
import time


def serve(name: str, address: str, port: int, seconds: float) -> int:
    """Answer every received chunk with `name` + newline, until `seconds` pass."""
    reply = f"{name}\n".encode()
    lst = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((address, port))
    lst.listen(1024)
    lst.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lst, selectors.EVENT_READ)
    end = time.monotonic() + min(seconds, 3600.0)
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            if sock is lst:
                try:
                    conn, _ = lst.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                continue
            try:
                sock.send(reply)
            except OSError:
                pass
    return 0


def connect(address: str, port: int, timeout: float) -> tuple[socket.socket, str] | None:
    """One connection that said which node holds it -> (socket, node name), or None."""
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        s.sendall(b"?")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                raise OSError("closed")
            data += chunk
        return s, data.decode().strip()
    except OSError:
        s.close()
        return None


def client(address: str, port: int, n: int, interval: float, timeout: float, observe: float, new: int) -> int:
    conns: list[dict] = []
    failed = 0
    for _ in range(n):
        c = connect(address, port, timeout)
        if c is None:
            failed += 1
            continue
        c[0].setblocking(False)
        conns.append({"sock": c[0], "node": c[1], "state": "ok", "at": None, "sent": None})
    counts: dict[str, int] = {}
    for c in conns:
        counts[c["node"]] = counts.get(c["node"], 0) + 1
    print("READY " + json.dumps({"nodes": counts, "failed": failed}), flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], 60)
    if not ready or sys.stdin.readline().strip() != "GO":
        print("RESULT " + json.dumps({"error": "no GO"}), flush=True)
        return 1
    t0 = time.monotonic()
    end = t0 + observe
    pings = 0
    by_fd = {c["sock"].fileno(): c for c in conns}
    poll = select.poll()
    for fd in by_fd:
        poll.register(fd, select.POLLIN)

    def broken(c: dict, state: str) -> None:
        c["state"], c["at"] = state, round(time.monotonic() - t0, 3)
        poll.unregister(c["sock"].fileno())

    next_round = t0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_round:
            next_round = now + interval
            for c in conns:
                if c["state"] != "ok":
                    continue
                if c["sent"] is not None:
                    if now - c["sent"] > timeout:
                        broken(c, "timeout")
                    continue
                try:
                    c["sock"].send(b"p")
                    c["sent"] = now
                    pings += 1
                except OSError as e:
                    broken(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "closed")
        for fd, _ev in poll.poll(max(0, int((next_round - time.monotonic()) * 1000))):
            c = by_fd[fd]
            try:
                data = c["sock"].recv(64)
            except BlockingIOError:
                continue
            except OSError as e:
                broken(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "closed")
                continue
            if not data:
                broken(c, "closed")
            elif data.endswith(b"\n"):
                c["sent"] = None
    # unanswered at the end of the window and overdue: broken too
    now = time.monotonic()
    for c in conns:
        if c["state"] == "ok" and c["sent"] is not None and now - c["sent"] > timeout:
            broken(c, "timeout")
    new_counts: dict[str, int] = {}
    new_failed = 0
    fresh = []
    for _ in range(new):
        got = connect(address, port, timeout)
        if got is None:
            new_failed += 1
            continue
        fresh.append(got[0])
        new_counts[got[1]] = new_counts.get(got[1], 0) + 1
    for s in fresh + [c["sock"] for c in conns]:
        s.close()
    print("RESULT " + json.dumps({"conns": [{k: c[k] for k in ("node", "state", "at")} for c in conns],
                                  "new": new_counts, "new_failed": new_failed, "pings": pings}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--name", required=True)
    s.add_argument("--address", required=True)
    s.add_argument("--port", type=int, default=7000)
    s.add_argument("--seconds", type=float, default=600.0)
    c = sub.add_parser("client")
    c.add_argument("--address", required=True)
    c.add_argument("--port", type=int, default=7000)
    c.add_argument("--connections", type=int, default=320)
    c.add_argument("--interval", type=float, default=0.5)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--observe", type=float, default=6.0)
    c.add_argument("--new", type=int, default=60)
    a = ap.parse_args(argv)
    if a.cmd == "server":
        return serve(a.name, a.address, a.port, a.seconds)
    return client(a.address, a.port, max(1, min(a.connections, 5000)), a.interval, a.timeout,
                  min(a.observe, 120.0), max(0, min(a.new, 1000)))


if __name__ == "__main__":
    sys.exit(main())
