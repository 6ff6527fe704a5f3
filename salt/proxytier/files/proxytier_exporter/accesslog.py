"""nginx's access log: per-upstream and per-site counters and histograms, from either source.

- `log_format proxytier_tsv` lines read from a file in batches (`logfile.py`, the formula's path):
  `AccessLogStats.observe_lines` groups a batch's lines by the fields it counts (`count_lines`: bytes.split
  and Counter, no Python per line), parses each group once and adds it once.
- `log_format proxytier_json` syslog datagrams on a unix socket (`AccessLogReceiver`), one per request
  (`access_log syslog:server=unix:PATH,nohostname proxytier_json;`): about ten times the CPU per request,
  and the kernel queues at most `net.unix.max_dgram_qlen` datagrams (10 on Debian 12), nginx dropping a
  line when the queue is full, so a thread drains the socket continuously.
Both read the same fields the same way (`entry_from_fields`) and publish the same series.

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
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

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
_ZERO = Decimal(0)
PARSED_CACHE = 4096  # distinct counted-field groups remembered between batches (then forgotten at once)
#: HELP of the line counters, by source
LINE_HELP = {
    "socket": ("Access-log datagrams received from nginx on the syslog socket.",
               "Received datagrams that were not proxytier_json access-log lines."),
    "file": ("Access-log lines read from the log file nginx writes for the exporter (log_format proxytier_tsv).",
             "Lines read from the log file that were not proxytier_tsv access-log lines."),
}

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
    site = fields.get("site")
    return entry_from_fields(_text(fields, "status"), _text(fields, "request_time"), _text(fields, "upstream"),
                             _text(fields, "upstream_status"), site if isinstance(site, str) else None)


def request_seconds(raw: str) -> float | None:
    """$request_time ("0.123": seconds with millisecond resolution) -> seconds; None unless it is a finite
    number >= 0 (the request then counts, but in no latency histogram)."""
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def entry_from_fields(status: str, request_time: str, upstream: str, upstream_status: str,
                      site: str | None) -> AccessLogEntry:
    """One request from its log fields as nginx wrote them (either format, after unescaping): `status`
    ($status), `request_time` ($request_time, seconds), `upstream` ($proxy_host, "" when not proxied),
    `upstream_status` ($upstream_status: one entry per attempt, "," between servers and ":" between
    upstream groups), `site` (None: a line without the field)."""
    tries = len([part for part in upstream_status.replace(":", ",").split(",") if part.strip()])
    return AccessLogEntry(upstream, status_class(status), request_seconds(request_time), tries, site)


#: The fields of `log_format proxytier_tsv` in their order, one tab between two, a newline after the last
#: (exporter/README.md has the format). Written with `escape=json`, so a value never holds a tab or a
#: newline (nginx writes them as \t and \n: ngx_escape_json in src/core/ngx_string.c) and a variable
#: that is not found is empty, as in proxytier_json. The first TSV_SKIPPED fields are for people reading
#: the file; the exporter counts the rest.
TSV_FIELDS = ("time", "upstream_addr", "upstream_response_time",
              "status", "request_time", "upstream", "upstream_status", "site")
TSV_SKIPPED = 3
#: the nginx variable each field is
TSV_VARIABLES = {"time": "$time_iso8601", "upstream_addr": "$upstream_addr",
                 "upstream_response_time": "$upstream_response_time", "status": "$status",
                 "request_time": "$request_time", "upstream": "$proxy_host", "upstream_status": "$upstream_status",
                 "site": "$proxytier_site"}
_COUNTED = len(TSV_FIELDS) - TSV_SKIPPED


def counted_part(line: bytes) -> bytes:
    """One log line (without its newline) -> its counted fields, still tab-separated (the part after the
    TSV_SKIPPED-th tab; a line with fewer tabs comes back with the wrong number of fields)."""
    return line.split(b"\t", TSV_SKIPPED)[-1]


def count_lines(data: bytes) -> Counter[bytes]:
    """Whole log lines (`data` is empty or ends with a newline) -> {counted fields: how many lines had
    them}. The per-line work is two C calls (bytes.split and Counter); requests that differ only in
    the skipped fields (time, upstream address and response time) share one key."""
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: nothing
    return Counter(map(counted_part, lines))


def _unescape(value: str) -> str:
    """A value nginx escaped for JSON (\\" \\\\ \\n \\t \\u00XX ...) -> the value, as json.loads reads
    it in proxytier_json."""
    try:
        text = json.loads(f'"{value}"')
    except ValueError as error:
        raise MalformedLine(f"bad escape in {value!r}: {error}") from error
    if not isinstance(text, str):  # a quoted value is one JSON string, unless it held a bare '"'
        raise MalformedLine(f"bad escape in {value!r}")
    return text


def parse_counted(counted: bytes) -> tuple[AccessLogEntry, Decimal | None]:
    """The counted fields of a proxytier_tsv line (`counted_part`) -> the request and its $request_time
    as an exact Decimal (None when it counts in no histogram).

    Raises MalformedLine unless there are exactly the counted fields of TSV_FIELDS, in UTF-8 (what
    json.loads accepts in proxytier_json). Values are read as proxytier_json's: an empty `upstream` is
    a request nginx answered itself, an empty `site` a Host no site claims."""
    parts = counted.split(b"\t")
    if len(parts) != _COUNTED:
        raise MalformedLine(f"{len(parts) + TSV_SKIPPED} tab-separated fields, expected {len(TSV_FIELDS)} "
                            "(not log_format proxytier_tsv?)")
    try:
        texts = [part.decode() for part in parts]
    except UnicodeDecodeError as error:
        raise MalformedLine(f"not UTF-8: {error}") from error
    status, request_time, upstream, upstream_status, site = (
        _unescape(text) if "\\" in text else text for text in texts)
    entry = entry_from_fields(status, request_time, upstream, upstream_status, site)
    if entry.request_time is None:
        return entry, None
    try:
        return entry, Decimal(request_time)
    except InvalidOperation:  # float() read it; Decimal() reads the same numbers
        return entry, None


def parse_tsv_line(line: bytes) -> AccessLogEntry:
    """One proxytier_tsv line, with or without its newline -> the request; raises MalformedLine."""
    return parse_counted(counted_part(line.removesuffix(b"\n")))[0]


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
        self.exact_sums: dict[str, Decimal] = {}

    def observe(self, value: str, klass: str, request_time: float | None, now: float, count: int = 1,
                exact_time: Decimal | None = None) -> str:
        """Count `count` requests alike under `value` (or the overflow value) -> the value they were counted
        under. `exact_time`: the same request time as a Decimal, summed exactly (a batch adds its requests
        grouped, so a float sum would depend on the grouping); without it the float is summed."""
        if value not in self.last_seen and len(self.last_seen) >= self.cap:
            value = OVERFLOW_LABEL
        self.last_seen[value] = now
        self.requests[(value, klass)] = self.requests.get((value, klass), 0) + count
        if request_time is not None:
            counts = self.bucket_counts.setdefault(value, [0] * (len(self.buckets) + 1))
            counts[bisect_left(self.buckets, request_time)] += count
            if exact_time is not None:
                self.exact_sums[value] = self.exact_sums.get(value, _ZERO) + exact_time * count
            else:
                self.sums[value] = self.sums.get(value, 0.0) + request_time * count
        return value

    def expire(self, cutoff: float) -> list[str]:
        """Forget the values last seen before `cutoff` -> them."""
        gone = [value for value, seen in self.last_seen.items() if seen < cutoff]
        for value in gone:
            del self.last_seen[value]
            self.bucket_counts.pop(value, None)
            self.sums.pop(value, None)
            self.exact_sums.pop(value, None)
            for key in [key for key in self.requests if key[0] == value]:
                del self.requests[key]
        return gone

    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, list[int]], dict[str, float]]:
        sums = {v: self.sums.get(v, 0.0) + float(self.exact_sums.get(v, _ZERO)) for v in self.bucket_counts}
        return dict(self.requests), {v: list(c) for v, c in self.bucket_counts.items()}, sums


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
        source: str = "socket",
    ):
        """`max_upstreams`: values per label (upstream, site); `idle_expiry`: seconds without a line after
        which a value's series are dropped; `source`: "socket" (datagrams, `observe_datagram`) or "file"
        (proxytier_tsv lines, `observe_lines`), named in the HELP of the line counters."""
        if source not in LINE_HELP:
            raise ValueError(f"source {source!r}: expected one of {', '.join(LINE_HELP)}")
        self.source = source
        self._parsed: dict[bytes, tuple[AccessLogEntry, Decimal | None] | MalformedLine] = {}
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
            self.malformed(1, error, data)
            return
        self.observe(entry)

    def observe_lines(self, data: bytes) -> int:
        """Count a batch of whole proxytier_tsv lines (`data` empty or ending with a newline) -> how many.

        Lines are grouped by their counted fields first (`count_lines`) and each group is parsed once
        (and remembered, up to PARSED_CACHE groups) and added once, so the cost per line is that of
        splitting it. Malformed lines count in the malformed total and are logged as in
        `observe_datagram`."""
        groups = count_lines(data)
        parsed = self._parsed
        if len(parsed) > PARSED_CACHE:
            parsed.clear()
        malformed, error, sample = 0, None, b""
        with self._lock:
            now = self._clock()
            for counted, count in groups.items():
                result = parsed.get(counted)
                if result is None:
                    try:
                        result = parse_counted(counted)
                    except MalformedLine as bad:
                        result = bad
                    parsed[counted] = result
                if isinstance(result, MalformedLine):
                    malformed, error, sample = malformed + count, result, counted
                    continue
                entry, exact_time = result
                self._lines += count
                if entry.site is not None:
                    self._sites.observe(entry.site or UNCLAIMED_SITE, entry.status_class, entry.request_time,
                                        now, count, exact_time)
                if entry.upstream:
                    upstream = self._upstreams.observe(entry.upstream, entry.status_class, entry.request_time,
                                                       now, count, exact_time)
                    self._retries[upstream] = self._retries.get(upstream, 0) + max(entry.tries - 1, 0) * count
        if error is not None:
            self.malformed(malformed, error, sample)
        return sum(groups.values())

    def malformed(self, count: int, error: MalformedLine, data: bytes) -> None:
        """Count `count` malformed lines (in the lines total too; `data`: the last one); log them at most
        once a minute, with how many since and the last error."""
        with self._lock:
            self._lines += count
            self._malformed += count
            self._malformed_unlogged += count
            now = self._clock()
            if now - self._malformed_logged < 60:
                return
            count, self._malformed_unlogged, self._malformed_logged = self._malformed_unlogged, 0, now
        what = "datagram" if self.source == "socket" else "line"
        log.warning("nginx access log: %d malformed %s(s), the last: %s: %r", count, what, error, data[:120])

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
        lines_help, malformed_help = LINE_HELP[self.source]
        yield CounterMetricFamily("proxytier_nginx_access_log_lines_total", lines_help, value=lines)
        yield CounterMetricFamily("proxytier_nginx_access_log_malformed_total", malformed_help, value=malformed)
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

    metric_names = AccessLogStats.METRIC_NAMES

    def families(self) -> Iterator[Metric]:
        return self.stats.families()


class AccessLogSource(Protocol):
    """What AccessLogCollector reads: AccessLogReceiver (datagrams) or logfile.AccessLogFileReader."""

    metric_names: Sequence[str]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ensure_running(self) -> None: ...

    def families(self) -> Iterable[Metric]: ...


class AccessLogCollector:
    """Publishes what the reader gathered; fails while its source is not being read."""

    name = "nginx_access_log"

    def __init__(self, receiver: AccessLogSource):
        self.receiver = receiver

    def collect(self) -> Iterator[Metric]:
        self.receiver.ensure_running()
        yield from self.receiver.families()

    def describe(self) -> list[Metric]:
        return describe_names(*self.receiver.metric_names)
