"""Open-loop prober: a NEW TCP connection + one HTTP/1.1 GET every `interval` seconds per target.

A probe is started on schedule whether or not the earlier ones have finished, so a stalled VIP shows up as
many failing probes at once, not as one slow client that stops asking (closed-loop load hides outages).
Each probe records its target, start and end (`time.monotonic()`), whether it got an HTTP 200 with its
whole body, and otherwise an error class:

    refused          connection refused (RST to the SYN: nothing listens on the address:port)
    reset            connection reset / broken pipe after connecting
    closed           the server closed the connection before a whole response
    connect-timeout  no connection within the timeout (SYNs lost: nobody holds the address)
    timeout          connected, but no whole response within the timeout
    unreachable      no route / host unreachable (ARP failed)
    http-5xx, http-4xx, http-other   a response with that status
    bad-response     not an HTTP response
    oserror          any other socket error (its errno name follows in the record's `detail`)

Bounded: at most `max_seconds` (<= 600) and `max_probes` (<= 1,000,000); it stops by itself.
Targets must be loopback, 198.18.0.0/15 or 2001:2::/48 addresses (lab/config.check_lab_address); names are refused.

    probe = BackgroundProbe([Target("198.18.0.101")], max_seconds=60).start()
    ...                        # trigger the event; note time.monotonic()
    result = probe.stop()      # waits for the probes in flight (at most `timeout`)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import resource
import threading
import time
from dataclasses import asdict, dataclass, field

from lab.config import check_lab_address, hostport

INTERVAL = 0.010
TIMEOUT = 2.0
MAX_SECONDS = 600.0
MAX_PROBES = 1_000_000
DEFAULT_MAX_PROBES = 200_000
_READ_LIMIT = 1 << 20  # at most 1 MiB of response is read; more is a bad response


@dataclass(frozen=True)
class Target:
    """One thing to probe: `http://address:port/path`. `name` ("address:port", "[v6]:port") labels its records."""

    address: str
    port: int = 80
    path: str = "/"

    @property
    def name(self) -> str:
        return hostport(self.address, self.port)

    @property
    def host(self) -> str:
        """The Host header: the address, an IPv6 one in brackets (RFC 3986)."""
        return f"[{self.address}]" if ":" in self.address else self.address

    def checked(self) -> Target:
        check_lab_address(self.address)
        if not 0 < self.port < 65536:
            raise ValueError(f"{self.name}: port must be 1..65535")
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n"):
            raise ValueError(f"{self.name}: path must start with / and hold no spaces or line breaks: {self.path!r}")
        return self


@dataclass
class Record:
    target: str  # Target.name
    start: float  # time.monotonic() just before connecting
    end: float  # when the probe finished (ok or not)
    ok: bool  # HTTP 200 and the whole body read
    error: str = ""  # error class (see the module doc); "" when ok
    status: int = 0  # HTTP status, 0 when none was read
    detail: str = ""  # errno name or exception type, for the curious

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class ProbeResult:
    targets: list[str]
    interval: float
    timeout: float
    started: float = 0.0  # monotonic time of the first scheduled probe
    ended: float = 0.0  # monotonic time when the last probe finished
    records: list[Record] = field(default_factory=list)
    missed: int = 0  # schedule slots skipped because the prober itself fell behind (should be 0)
    stopped_by: str = ""  # "stop", "max_seconds" or "max_probes"

    def for_target(self, target: str) -> list[Record]:
        return [r for r in self.records if r.target == target]

    def to_dict(self) -> dict:
        """JSON-friendly, compact: one list per field per target (times rounded to 0.1 ms)."""
        per_target = {}
        for name in self.targets:
            rs = sorted(self.for_target(name), key=lambda r: r.start)
            per_target[name] = {
                "start": [round(r.start, 4) for r in rs],
                "end": [round(r.end, 4) for r in rs],
                "ok": [int(r.ok) for r in rs],
                "error": [r.error for r in rs],
                "status": [r.status for r in rs],
            }
        head = {k: v for k, v in asdict(self).items() if k != "records"}
        return {**head, "records": per_target}

    @classmethod
    def from_dict(cls, doc: dict) -> ProbeResult:
        head = {k: v for k, v in doc.items() if k != "records"}
        result = cls(**head)
        for name, cols in doc["records"].items():
            for start, end, ok, error, status in zip(
                cols["start"], cols["end"], cols["ok"], cols["error"], cols["status"], strict=True
            ):
                result.records.append(Record(name, start, end, bool(ok), error, status))
        result.records.sort(key=lambda r: r.start)
        return result


def _classify_oserror(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return "unreachable"
    if e.errno == errno.ETIMEDOUT:
        return "connect-timeout"
    return "oserror"


async def _http_get(target: Target, state: dict) -> int:
    """One new connection, one GET, the whole response read. Returns the status; raises on errors."""
    reader, writer = await asyncio.open_connection(target.address, target.port, limit=_READ_LIMIT)
    state["connected"] = True
    try:
        writer.write(
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\nUser-Agent: proxytier-bench-probe\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError("bad-response")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        else:  # chunked or close-delimited: Connection: close was asked for, so read to the end
            body = await reader.read(_READ_LIMIT + 1)
            while body:
                if len(body) > _READ_LIMIT:
                    raise ValueError("bad-response")
                body = await reader.read(_READ_LIMIT + 1)
        return status
    except BaseException:
        writer.transport.abort()  # no lingering half-closed socket after an error or a timeout
        raise
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe_once(target: Target, timeout: float = TIMEOUT) -> Record:
    """One probe of `target` now: a new connection and one GET, bounded by `timeout` seconds."""
    state = {"connected": False}
    start = time.monotonic()
    status, error, detail = 0, "", ""
    try:
        async with asyncio.timeout(timeout):
            status = await _http_get(target, state)
        if status != 200:
            error = "http-5xx" if 500 <= status < 600 else "http-4xx" if 400 <= status < 500 else "http-other"
    except TimeoutError:
        error = "timeout" if state["connected"] else "connect-timeout"
    except asyncio.IncompleteReadError as e:
        error, detail = "closed", f"{len(e.partial)} bytes, then the end"
    except asyncio.LimitOverrunError:
        error = "bad-response"
    except OSError as e:
        error, detail = _classify_oserror(e), errno.errorcode.get(e.errno or 0, type(e).__name__)
    except (ValueError, UnicodeDecodeError) as e:
        error, detail = "bad-response", str(e)[:80]
    return Record(target.name, start, time.monotonic(), not error, error, status, detail)


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class Prober:
    """The asyncio part: one scheduler per target, one task per probe."""

    def __init__(
        self,
        targets: list[Target],
        *,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
        max_seconds: float = 60.0,
        max_probes: int = DEFAULT_MAX_PROBES,
    ) -> None:
        if not targets:
            raise ValueError("no targets to probe")
        self.targets = [t.checked() for t in targets]
        if len({t.name for t in self.targets}) != len(self.targets):
            raise ValueError("the same address:port is listed twice")
        if not 0.001 <= interval <= 10:
            raise ValueError(f"interval {interval} s: must be 0.001..10 s")
        if not 0.01 <= timeout <= 30:
            raise ValueError(f"timeout {timeout} s: must be 0.01..30 s")
        if not 0 < max_seconds <= MAX_SECONDS:
            raise ValueError(f"max_seconds {max_seconds}: must be >0 and <= {MAX_SECONDS:.0f}")
        if not 0 < max_probes <= MAX_PROBES:
            raise ValueError(f"max_probes {max_probes}: must be 1..{MAX_PROBES}")
        self.interval, self.timeout = interval, timeout
        self.max_seconds, self.max_probes = max_seconds, max_probes
        self.result = ProbeResult([t.name for t in self.targets], interval, timeout)
        self._sent = 0
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()  # set once the first probe is on its way

    def request_stop(self) -> None:
        """Thread-safe: stop scheduling new probes (those in flight finish)."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to stop
                loop.call_soon_threadsafe(stop.set)

    def _done(self, task: asyncio.Task, target: Target, tasks: set[asyncio.Task]) -> None:
        tasks.discard(task)
        if task.cancelled() or task.exception() is not None:  # a bug in the prober, not an outage: say so
            now = time.monotonic()
            detail = "cancelled" if task.cancelled() else repr(task.exception())[:80]
            self.result.records.append(Record(target.name, now, now, False, "prober-error", 0, detail))
        else:
            self.result.records.append(task.result())

    async def _schedule(self, target: Target, t0: float, deadline: float, tasks: set[asyncio.Task]) -> None:
        assert self._stop is not None
        slot = 0
        while not self._stop.is_set():
            due = t0 + slot * self.interval
            if due >= deadline:
                self.result.stopped_by = self.result.stopped_by or "max_seconds"
                return
            if self._sent >= self.max_probes:
                self.result.stopped_by = self.result.stopped_by or "max_probes"
                return
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
            self._sent += 1
            task = asyncio.create_task(probe_once(target, self.timeout))
            tasks.add(task)
            task.add_done_callback(lambda t, target=target: self._done(t, target, tasks))
            self.started.set()
            late = int((time.monotonic() - due) / self.interval)  # whole slots already past: skip, do not burst
            self.result.missed += late
            slot += 1 + late

    async def run(self) -> ProbeResult:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop.set()
        _raise_fd_limit(len(self.targets) * math.ceil(self.timeout / self.interval) + 256)
        tasks: set[asyncio.Task] = set()
        t0 = time.monotonic() + 0.005
        self.result.started = t0
        deadline = t0 + self.max_seconds
        await asyncio.gather(*(self._schedule(t, t0, deadline, tasks) for t in self.targets))
        if self._stop.is_set() and not self.result.stopped_by:
            self.result.stopped_by = "stop"
        while tasks:  # the probes in flight end within `timeout`
            await asyncio.wait(set(tasks))
        self.result.records.sort(key=lambda r: r.start)
        self.result.ended = time.monotonic()
        self.started.set()
        return self.result


def run_probe(targets: list[Target], **kwargs: float) -> ProbeResult:
    """Probe in the foreground until a cap ends it (`interval`, `timeout`, `max_seconds`, `max_probes`)."""
    return asyncio.run(Prober(targets, **kwargs).run())  # type: ignore[arg-type]


class BackgroundProbe:
    """A Prober in its own thread: `start()`, trigger something, `stop()` returns the ProbeResult.

    Also a context manager (`with BackgroundProbe(...) as probe:`; `probe.result` after the block).
    Still bounded by max_seconds / max_probes when nobody calls stop().
    """

    def __init__(self, targets: list[Target], **kwargs: float) -> None:
        self.prober = Prober(targets, **kwargs)  # type: ignore[arg-type]
        self.result: ProbeResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="failover-probe")

    def _run(self) -> None:
        try:
            self.result = asyncio.run(self.prober.run())
        except BaseException as e:  # handed to the caller by stop()
            self.error = e
            self.prober.started.set()

    def start(self, wait: float = 5.0) -> BackgroundProbe:
        """Start probing; returns once the first probe is on its way (or `wait` s passed)."""
        self._thread.start()
        self.prober.started.wait(wait)
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> ProbeResult:
        """Stop scheduling, wait for the probes in flight, return everything recorded."""
        self.prober.request_stop()
        self._thread.join(timeout=self.prober.max_seconds + self.prober.timeout + 10)
        if self.error is not None:
            raise RuntimeError(f"the prober failed: {self.error!r}") from self.error
        if self.result is None:
            raise RuntimeError("the prober thread did not finish in time")
        return self.result

    def __enter__(self) -> BackgroundProbe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
