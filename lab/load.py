"""Bounded load generator for the lab: N requests or T seconds at most, C concurrent workers.

Each response is the backend's JSON identity, so the spread per nginx node (the TCP peer the
backend saw) and per backend is counted. Every request is recorded (start, end, ok) so the
client-observed outage of a failover can be measured.

    python -m lab load --requests 600 --concurrency 4            # through every VIP
    python -m lab load --target 198.18.0.101 --seconds 10
    python -m lab load --target 198.18.0.101 --json              # the counts as one JSON line
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from lab import config

MAX_REQUESTS = 1_000_000
MAX_SECONDS = 600.0


@dataclass
class Sample:
    start: float
    end: float
    ok: bool
    target: str
    error: str = ""  # the exception's class name (and a RuntimeError's text) when not ok


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_node: Counter[str] = field(default_factory=Counter)
    by_backend: Counter[str] = field(default_factory=Counter)
    by_target: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)  # client address the backend was told
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def max_gap(self, target: str | None = None) -> float:
        """Longest time with no successful response (per target if given): the client-observed outage."""
        done = sorted(s.end for s in self.samples if s.ok and (target is None or s.target == target))
        starts = [s.start for s in self.samples if target is None or s.target == target]
        if not starts:
            return 0.0
        points = [min(starts), *done]
        if not done:
            points.append(max(s.end for s in self.samples if target is None or s.target == target))
        return max((b - a for a, b in itertools.pairwise(points)), default=0.0)

    def as_dict(self) -> dict[str, object]:
        """The counts without the samples, for JSON: {"ok", "failed", "seconds", "errors", "by_node",
        "by_backend", "by_target", "clients"} (each by_* a {name: requests}), "max_gap" (s) and
        "failed_at": [[start, error], ...] of the failed requests, start in time.monotonic() seconds
        (CLOCK_MONOTONIC: the same clock in every process and network namespace of the machine)."""
        return {"ok": self.ok, "failed": self.failed, "seconds": round(self.seconds, 2),
                **{k: dict(getattr(self, k)) for k in ("errors", "by_node", "by_backend", "by_target", "clients")},
                "max_gap": round(self.max_gap(), 3),
                "failed_at": [[round(s.start, 3), s.error] for s in self.samples if not s.ok]}

    def summary(self) -> str:
        err = ", ".join(f"{k}: {v}" for k, v in self.errors.most_common(5))
        rate = self.total / self.seconds if self.seconds else 0.0
        return f"{self.total} requests in {self.seconds:.1f} s ({rate:.0f}/s): {self.ok} ok, {self.failed} failed" + (
            f" ({err})" if err else ""
        )


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to a lab address with a host name for SNI (http.client would send the address, which is
    no SNI at all); the Host header is the caller's."""

    def __init__(self, address: str, sni: str, context: ssl.SSLContext, timeout: float, port: int = 443) -> None:
        super().__init__(config.check_lab_address(address), port, timeout=timeout, context=context)
        self._sni, self._ctx = sni, context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self._sni)


def insecure_context() -> ssl.SSLContext:
    """TLS without verification, ALPN http/1.1: for load, where certificates are checked elsewhere."""
    ctx = ssl._create_unverified_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _one(conn: http.client.HTTPConnection, path: str, host: str | None = None) -> dict[str, str]:
    headers = {"User-Agent": "proxytier-lab-load"}
    if host:
        headers["Host"] = host
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}")
    doc = json.loads(body)
    if "backend" not in doc:
        raise RuntimeError("response is not a backend identity")
    return doc


def run_load(
    targets: list[str] | None = None,
    *,
    requests: int = 600,
    seconds: float = 30.0,
    concurrency: int = 4,
    new_connection: bool = True,
    timeout: float = 2.0,
    port: int = 80,
    path: str = "/lab",
    stop: threading.Event | None = None,
    hosts: list[str] | None = None,
    tls: bool = False,
    rate: float = 0.0,
) -> LoadResult:
    """Send at most `requests` requests for at most `seconds` (hard caps apply), round robin over targets.

    `stop` ends the run early (for load that runs "during" something). Targets must be lab addresses.
    `hosts`: Host names sent in turn (request i: hosts[i % len]); with `tls` (give port 443) over HTTPS
    with that name as SNI, the certificate not verified (lab.vhosts checks certificates).
    `rate` (requests/s over all workers, > 0): request i starts no earlier than i / rate s after the start
    (a worker waits for its slot; a slow answer delays only its own worker); 0: as fast as they answer.
    """
    targets = [config.check_lab_address(t) for t in (targets or config.VIPS)]
    requests = max(1, min(requests, MAX_REQUESTS))
    seconds = max(0.1, min(seconds, MAX_SECONDS))
    stop = stop or threading.Event()
    context = insecure_context() if tls else None
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(requests))
    t0 = time.monotonic()
    deadline = t0 + seconds

    def worker() -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            if rate > 0:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0 and stop.wait(min(wait, max(0.0, deadline - time.monotonic()))):
                    break
                if time.monotonic() >= deadline:
                    break
            target = targets[i % len(targets)]
            host = hosts[(i // len(targets)) % len(hosts)] if hosts else None
            key = f"{target} {host}"
            conn = conns.get(key)
            if conn is None or new_connection:
                if tls:
                    conn = SNIConnection(target, host or target, context, timeout, port)
                else:
                    conn = http.client.HTTPConnection(target, port, timeout=timeout)
                conns[key] = conn
            start = time.monotonic()
            try:
                doc = _one(conn, path, host)
                ok, err = True, ""
            except Exception as e:
                doc, ok, err = {}, False, type(e).__name__ + (f" {e}" if isinstance(e, RuntimeError) else "")
                conn.close()
                conns.pop(key, None)
            if new_connection:
                conn.close()
            end = time.monotonic()
            with lock:
                result.samples.append(Sample(start, end, ok, target, err))
                result.by_target[target] += 1
                if ok:
                    result.ok += 1
                    result.by_node[config.NODE_BY_ADDRESS.get(doc.get("peer", ""), doc.get("peer", "?"))] += 1
                    result.by_backend[doc["backend"]] += 1
                    xff = (doc.get("x_forwarded_for") or "").split(",")[0].strip()
                    result.clients[doc.get("x_real_ip") or xff or "none"] += 1
                else:
                    result.failed += 1
                    result.errors[err] += 1
            if not ok:
                time.sleep(0.05)  # do not spin on a refused connection
        for c in conns.values():
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + timeout + 5)
    result.seconds = time.monotonic() - t0
    return result


class BackgroundLoad:
    """Load running in a thread until stopped (still bounded by `seconds`): `with BackgroundLoad(...) as bg:`."""

    def __init__(self, targets: list[str] | None = None, **kwargs: object) -> None:
        self.stop = threading.Event()
        self.result: LoadResult | None = None
        kwargs.setdefault("requests", MAX_REQUESTS)
        self._thread = threading.Thread(target=self._run, args=(targets,), kwargs=kwargs, daemon=True, name="lab-load")

    def _run(self, targets: list[str] | None, **kwargs: object) -> None:
        self.result = run_load(targets, stop=self.stop, **kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> LoadResult:
        self.stop.set()
        self._thread.join(timeout=MAX_SECONDS)
        assert self.result is not None, "load thread did not finish"
        return self.result


def table(result: LoadResult) -> str:
    """The spread as a small text table."""
    lines = [result.summary()]
    for title, counts in (("nginx node", result.by_node), ("backend", result.by_backend), ("VIP", result.by_target)):
        lines.append(f"  {'requests per ' + title:<24} " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
