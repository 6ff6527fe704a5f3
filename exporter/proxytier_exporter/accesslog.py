"""nginx's JSON access log, received as syslog datagrams on a unix socket.

nginx sends one datagram per request (`access_log syslog:server=unix:PATH,nohostname proxytier_json;`).
The kernel queues at most `net.unix.max_dgram_qlen` datagrams (10 on Debian 12) and nginx drops a line when
the queue is full, so a reader thread drains the socket continuously; it is one of the two background
readers (the other is the keepalived notify FIFO), both for event streams that cannot be read at scrape time.

Label cardinality is bounded: the `upstream` label is nginx's `$proxy_host` (the upstream block name for
`proxy_pass http://NAME`), at most `max_upstreams` distinct values, later ones counted as `__other__`;
the status is reduced to its class (1xx..5xx, other). The `site` label is the log field `site`, which
the formula's nginx configuration maps from the server block that answered (`$server_port
$server_name`) to the site's name, so its values are the pillar's site names, never a client's Host:
a Host no site claims is counted under `__unclaimed__`; the same bound applies.

Upstreams removed from nginx's configuration: the exporter does not read nginx's configuration, so it
cannot know when an upstream is gone; an upstream that has sent no line for `idle_expiry` seconds (one
hour by default) has its series dropped and its label slot freed (like statsd_exporter's TTL). Dropping
a counter series is allowed in Prometheus: rate()/increase() simply end; if the upstream comes back its
counters start again from zero, which Prometheus reads as a new series (a counter reset at worst).
Keeping them forever would both publish ghosts and use up `max_upstreams`, pushing new upstreams into
`__other__`.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from proxytier_exporter.core import describe_names
from proxytier_exporter.streams import StreamReader

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OVERFLOW_LABEL = "__other__"  # label value of what is over the bound (upstream, site)
UNCLAIMED_SITE = "__unclaimed__"  # label value of requests for a Host no site claims (nginx's 421 server)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
SYSTEMD_FD_NAME = "nginx-access"
REQUIRED_FIELDS = ("status", "request_time", "upstream", "upstream_status")  # of log_format proxytier_json
DEFAULT_IDLE_EXPIRY = 3600.0
MAX_DATAGRAM_BYTES = 65536

log = logging.getLogger("proxytier_exporter")


class MalformedLine(ValueError):
    """A datagram that is not a proxytier_json access-log line."""


@dataclass(frozen=True)
class AccessLogEntry:
    upstream: str  # $proxy_host: "" when the request was not proxied
    status_class: str
    request_time: float | None  # $request_time, seconds
    tries: int  # upstream attempts: entries in $upstream_status (0 when not proxied)
    site: str | None = None  # log field site: the proxytier site; "" no site claims the Host; None no field


def _text(fields: dict[str, object], key: str) -> str:
    value = fields.get(key, "")
    return value if isinstance(value, str) else ""


def status_class(raw: str) -> str:
    if len(raw) == 3 and raw.isdigit() and "1" <= raw[0] <= "5":
        return f"{raw[0]}xx"
    return "other"


def parse_datagram(data: bytes) -> AccessLogEntry:
    """Parse one whole syslog datagram nginx sent (`<190>Nov 24 04:03:15 nginx: {...}`, no newline).

    Raises MalformedLine, saying what is wrong, unless it is a syslog line (`<PRI>`) carrying one
    complete JSON object with every field the exporter reads (`REQUIRED_FIELDS`, strings, as
    `log_format proxytier_json` writes them). A datagram cut anywhere is not complete JSON. The
    field `site` is optional (a configuration from before it existed): without it the line counts
    in no per-site series.
    """
    if not data.startswith(b"<"):
        raise MalformedLine("not a syslog datagram (no <PRI>)")
    start = data.find(b"{")
    if start < 0:
        raise MalformedLine("no JSON object in the datagram")
    try:
        fields = json.loads(data[start:])
    except (ValueError, RecursionError) as error:
        raise MalformedLine(f"not JSON: {error}") from error
    if not isinstance(fields, dict):
        raise MalformedLine("JSON but not an object")
    missing = [key for key in REQUIRED_FIELDS if not isinstance(fields.get(key), str)]
    if missing:
        raise MalformedLine(f"JSON object without {', '.join(missing)} (not log_format proxytier_json?)")
    try:
        request_time: float | None = float(_text(fields, "request_time"))
    except ValueError:
        request_time = None
    if request_time is not None and not 0 <= request_time < float("inf"):
        request_time = None
    upstream_status = _text(fields, "upstream_status")
    tries = len([part for part in upstream_status.replace(":", ",").split(",") if part.strip()])
    site = fields.get("site")
    return AccessLogEntry(_text(fields, "upstream"), status_class(_text(fields, "status")), request_time, tries,
                          site if isinstance(site, str) else None)


class _Series:
    """Requests by (label value, status class), a latency histogram and a last-seen time per value of
    one label, at most `cap` values (later ones under OVERFLOW_LABEL). Not thread-safe: AccessLogStats
    holds its lock around every call."""

    def __init__(self, cap: int, buckets: tuple[float, ...]):
        self.cap = cap
        self.buckets = buckets
        self.last_seen: dict[str, float] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.bucket_counts: dict[str, list[int]] = {}  # per value, one per bound plus +Inf
        self.sums: dict[str, float] = {}

    def observe(self, value: str, klass: str, request_time: float | None, now: float) -> str:
        """Count one request under `value` (or the overflow value) -> the value it was counted under."""
        if value not in self.last_seen and len(self.last_seen) >= self.cap:
            value = OVERFLOW_LABEL
        self.last_seen[value] = now
        self.requests[(value, klass)] = self.requests.get((value, klass), 0) + 1
        if request_time is not None:
            counts = self.bucket_counts.setdefault(value, [0] * (len(self.buckets) + 1))
            index = next((i for i, bound in enumerate(self.buckets) if request_time <= bound), len(self.buckets))
            counts[index] += 1
            self.sums[value] = self.sums.get(value, 0.0) + request_time
        return value

    def expire(self, cutoff: float) -> list[str]:
        """Forget the values last seen before `cutoff` -> them."""
        gone = [value for value, seen in self.last_seen.items() if seen < cutoff]
        for value in gone:
            del self.last_seen[value]
            self.bucket_counts.pop(value, None)
            self.sums.pop(value, None)
            for key in [key for key in self.requests if key[0] == value]:
                del self.requests[key]
        return gone

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, list[int]], dict[str, float]]:
        return dict(self.requests), {v: list(c) for v, c in self.bucket_counts.items()}, dict(self.sums)


def _requests_family(name: str, documentation: str, label: str,
                     requests: dict[tuple[str, str], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label, "status_class"])
    for (value, klass), count in sorted(requests.items()):
        family.add_metric([value, klass], count)
    return family


def _histogram_family(name: str, documentation: str, label: str, buckets: tuple[float, ...],
                      bucket_counts: dict[str, list[int]], sums: dict[str, float]) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(name, documentation, labels=[label])
    bounds = [floatToGoString(bound) for bound in buckets] + ["+Inf"]
    for value, counts in sorted(bucket_counts.items()):
        cumulative, running = [], 0
        for bound, count in zip(bounds, counts, strict=True):
            running += count
            cumulative.append((bound, running))
        histogram.add_metric([value], cumulative, sums[value])
    return histogram


class AccessLogStats:
    """Cumulative counters and histograms over every line received; thread-safe.

    Two views of the same lines: per upstream (proxied requests only, label `upstream`) and per site
    (every request a site's server block or the 421 server answered, label `site`; lines without the
    `site` field count in neither the site series nor UNCLAIMED_SITE). Each label has at most
    `max_upstreams` values plus OVERFLOW_LABEL, and values idle for `idle_expiry` seconds are dropped.
    """

    METRIC_NAMES = (
        "proxytier_nginx_access_log_lines_total",
        "proxytier_nginx_access_log_malformed_total",
        "proxytier_nginx_upstream_requests_total",
        "proxytier_nginx_upstream_retries_total",
        "proxytier_nginx_upstream_request_duration_seconds",
        "proxytier_nginx_site_requests_total",
        "proxytier_nginx_site_request_duration_seconds",
    )

    def __init__(
        self,
        max_upstreams: int = 64,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        idle_expiry: float = DEFAULT_IDLE_EXPIRY,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`max_upstreams`: values per label (upstream, site); `idle_expiry`: seconds without a line after
        which a value's series are dropped."""
        self.max_upstreams = max_upstreams
        self.buckets = tuple(sorted(buckets))
        self.idle_expiry = idle_expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._malformed_logged = float("-inf")
        self._malformed_unlogged = 0
        self._lines = 0
        self._malformed = 0
        self._upstreams = _Series(max_upstreams, self.buckets)
        self._sites = _Series(max_upstreams, self.buckets)
        self._retries: dict[str, int] = {}

    def observe_datagram(self, data: bytes, truncated: bool = False) -> None:
        """Count one datagram; `truncated` when the socket cut it (MSG_TRUNC). A malformed one counts in
        the malformed total and is logged (at most once a minute, with how many since)."""
        try:
            if truncated:
                raise MalformedLine(f"datagram over {len(data)} bytes, cut by the socket")
            entry = parse_datagram(data)
        except MalformedLine as error:
            with self._lock:
                self._lines += 1
                self._malformed += 1
                self._malformed_unlogged += 1
                now = self._clock()
                if now - self._malformed_logged < 60:
                    return
                count, self._malformed_unlogged, self._malformed_logged = self._malformed_unlogged, 0, now
            log.warning("nginx access log: %d malformed datagram(s), the last: %s: %r", count, error, data[:120])
            return
        self.observe(entry)

    def observe(self, entry: AccessLogEntry) -> None:
        with self._lock:
            self._lines += 1
            now = self._clock()
            if entry.site is not None:
                self._sites.observe(entry.site or UNCLAIMED_SITE, entry.status_class, entry.request_time, now)
            if not entry.upstream:
                return
            upstream = self._upstreams.observe(entry.upstream, entry.status_class, entry.request_time, now)
            self._retries[upstream] = self._retries.get(upstream, 0) + max(entry.tries - 1, 0)

    def _expire(self) -> None:
        """Forget upstreams and sites idle for longer than idle_expiry (caller holds the lock)."""
        cutoff = self._clock() - self.idle_expiry
        for upstream in self._upstreams.expire(cutoff):
            self._retries.pop(upstream, None)
        self._sites.expire(cutoff)

    def families(self) -> Iterator[Metric]:
        """The counters and histograms as metric families, after dropping idle upstreams and sites."""
        with self._lock:
            self._expire()
            lines, malformed = self._lines, self._malformed
            requests, bucket_counts, sums = self._upstreams.snapshot()
            site_requests, site_buckets, site_sums = self._sites.snapshot()
            retries = dict(self._retries)
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_lines_total",
            "Access-log datagrams received from nginx on the syslog socket.", value=lines,
        )
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_malformed_total",
            "Received datagrams that were not proxytier_json access-log lines.", value=malformed,
        )
        yield _requests_family(
            "proxytier_nginx_upstream_requests_total",
            "Proxied requests by upstream (log field upstream = $proxy_host) and status class of the "
            "response to the client (log field status).",
            "upstream", requests,
        )
        family = CounterMetricFamily(
            "proxytier_nginx_upstream_retries_total",
            "Extra upstream attempts (proxy_next_upstream): entries in log field upstream_status beyond "
            "the first.",
            labels=["upstream"],
        )
        for upstream, count in sorted(retries.items()):
            family.add_metric([upstream], count)
        yield family
        yield _histogram_family(
            "proxytier_nginx_upstream_request_duration_seconds",
            "Request time seen by nginx for proxied requests (log field request_time = $request_time).",
            "upstream", self.buckets, bucket_counts, sums,
        )
        yield _requests_family(
            "proxytier_nginx_site_requests_total",
            f"Requests by proxytier site (log field site; {UNCLAIMED_SITE}: a Host no site claims) and status "
            "class of the response to the client (log field status).",
            "site", site_requests,
        )
        yield _histogram_family(
            "proxytier_nginx_site_request_duration_seconds",
            "Request time seen by nginx per proxytier site (log field request_time = $request_time).",
            "site", self.buckets, site_buckets, site_sums,
        )


def open_datagram_socket(path: str, mode: int) -> socket.socket:
    """The syslog socket: inherited from systemd (`.socket` unit, FileDescriptorName=nginx-access) when
    there is one, else bound here at `path` (a stale socket file left by a previous run is replaced)."""
    inherited = _systemd_socket(SYSTEMD_FD_NAME)
    if inherited is not None:
        return inherited
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
    except OSError:
        sock.close()
        raise
    return sock


def _systemd_socket(name: str) -> socket.socket | None:
    """The socket systemd passed under `name` (sd_listen_fds protocol), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for offset in range(count):
        if offset < len(names) and names[offset] == name:
            return socket.socket(fileno=3 + offset)
    return None


class AccessLogReceiver(StreamReader):
    """Background thread draining the syslog socket into an AccessLogStats."""

    thread_name = "nginx-access-log"
    source = "the syslog socket"
    BATCH = 256  # datagrams read without waiting after each wake-up (then the stop flag is checked)

    def __init__(self, path: str, stats: AccessLogStats, mode: int = 0o660):
        super().__init__(path)
        self.stats = stats
        self.mode = mode
        self._sock: socket.socket | None = None

    def _open(self) -> None:
        self._sock = open_datagram_socket(self.path, self.mode)
        self._sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)

    def _read_once(self) -> None:
        """Wait up to 0.5 s for a datagram, then read every queued one: under load, one wake-up
        handles many lines (at most BATCH, then the stop flag is checked again)."""
        assert self._sock is not None
        if not self._poll.poll(500):
            return
        for _ in range(self.BATCH):
            try:
                data, _, flags, _ = self._sock.recvmsg(MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                return
            self.stats.observe_datagram(data, truncated=bool(flags & socket.MSG_TRUNC))

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()


class AccessLogCollector:
    """Publishes what the receiver gathered; fails while the socket is not being read."""

    name = "nginx_access_log"

    def __init__(self, receiver: AccessLogReceiver):
        self.receiver = receiver

    def collect(self) -> Iterator[Metric]:
        self.receiver.ensure_running()
        yield from self.receiver.stats.families()

    def describe(self) -> list[Metric]:
        return describe_names(*AccessLogStats.METRIC_NAMES)
