"""HAProxy: `show stat` and `show info` from the runtime API, named like HAProxy's built-in exporter.

The CSV is read by header name (HAProxy 2.6 has more columns than older releases and adds more in later
ones). Metric names, label names (`proxy`, `server`, `code`, `state`) and the five server states follow
the exporter built into HAProxy (`http-request use-service prometheus-exporter`), so dashboards written
for it keep working; proxytier adds `proxytier_haproxy_server_check_state` for what those five states
hide: transitional "UP 1/3" / "DOWN 1/2" health and servers without checks.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from proxytier_exporter.core import SourceError, describe_names, state_set
from proxytier_exporter.runtime_api import unix_command

TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = "0", "1", "2"
SERVER_STATES = ("DOWN", "UP", "MAINT", "DRAIN", "NOLB")  # as HAProxy's built-in exporter
BACKEND_STATES = ("DOWN", "UP")
CHECK_STATES = ("passing", "going_down", "failing", "going_up", "no_check", "unknown")
RESPONSE_CODES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
_TRANSITIONAL = re.compile(r"^(UP|DOWN|NOLB|DRAIN) \d+/\d+$")


@dataclass(frozen=True)
class Field:
    metric: str
    column: str
    counter: bool
    help: str


def _fields(
    prefix: str, specs: Sequence[tuple[str, str, bool, str]], command: str = "show stat"
) -> tuple[Field, ...]:
    return tuple(
        Field(f"{prefix}_{name}", column, counter, f"{text} ({command} field {column}).")
        for name, column, counter, text in specs
    )


_COMMON = (
    ("current_sessions", "scur", False, "Current sessions"),
    ("sessions_total", "stot", True, "Total sessions"),
    ("bytes_in_total", "bin", True, "Request bytes"),
    ("bytes_out_total", "bout", True, "Response bytes"),
)
_BACKEND_AND_SERVER = (
    ("current_queue", "qcur", False, "Requests waiting in the queue"),
    ("connection_errors_total", "econ", True, "Failed connections to servers"),
    ("response_errors_total", "eresp", True, "Invalid responses from servers"),
    ("retry_warnings_total", "wretr", True, "Connection retries"),
    ("redispatch_warnings_total", "wredis", True, "Redispatches to another server"),
    ("check_up_down_total", "chkdown", True, "UP to DOWN transitions"),
    ("check_last_change_seconds", "lastchg", False, "Seconds since the last UP/DOWN change"),
    ("downtime_seconds_total", "downtime", True, "Seconds spent DOWN"),
    ("weight", "weight", False, "Effective weight"),
)
FRONTEND_FIELDS = _fields("haproxy_frontend", (
    *_COMMON,
    ("limit_sessions", "slim", False, "Configured maxconn"),
    ("requests_denied_total", "dreq", True, "Requests denied by rules"),
    ("request_errors_total", "ereq", True, "Request errors"),
    ("http_requests_total", "req_tot", True, "HTTP requests"),
))
BACKEND_FIELDS = _fields("haproxy_backend", (
    *_COMMON,
    *_BACKEND_AND_SERVER,
    ("active_servers", "act", False, "Active servers UP with a non-zero weight"),
    ("backup_servers", "bck", False, "Backup servers UP with a non-zero weight"),
    ("http_requests_total", "req_tot", True, "HTTP requests"),
))
SERVER_FIELDS = _fields("haproxy_server", (
    *_COMMON,
    *_BACKEND_AND_SERVER,
    ("check_failures_total", "chkfail", True, "Failed health checks"),
    ("loadbalanced_total", "lbtot", True, "Times the server was chosen by load balancing"),
))
INFO_FIELDS = _fields("haproxy_process", (
    ("current_connections", "CurrConns", False, "Current connections"),
    ("connections_total", "CumConns", True, "Connections accepted"),
    ("requests_total", "CumReq", True, "HTTP requests"),
    ("max_connections", "Maxconn", False, "Configured maxconn"),
    ("start_time_seconds", "Start_time_sec", False, "Start time of the process, Unix seconds"),
    ("uptime_seconds", "Uptime_sec", False, "Seconds since the process started"),
    ("stopping", "Stopping", False, "1 while the process is stopping (old process after a reload)"),
    ("jobs", "Jobs", False, "Active jobs (listeners, sessions, ...)"),
    ("dropped_logs_total", "DroppedLogs", True, "Log messages dropped"),
    ("nbthread", "Nbthread", False, "Threads"),
), command="show info")


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of `show stat` as {column name: value}. Raises SourceError unless the answer is the CSV."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        first = lines[0][:80] if lines else "an empty answer"
        raise SourceError(f"show stat: expected a CSV header line starting with '# ', got {first!r}")
    header = next(csv.reader([lines[0][2:]]))
    missing = {"pxname", "svname", "type", "status"} - set(header)
    if missing:
        raise SourceError(f"show stat: CSV header lacks {', '.join(sorted(missing))}")
    rows = []
    try:
        for values in csv.reader(line for line in lines[1:] if line.strip()):
            if len(values) < len(header) // 2:
                raise SourceError(f"show stat: truncated row with {len(values)} of {len(header)} columns")
            rows.append(dict(zip(header, values, strict=False)))
    except csv.Error as error:
        raise SourceError(f"show stat: malformed CSV: {error}") from error
    return rows


def parse_show_info(text: str) -> dict[str, str]:
    """`show info` as {key: value}. Raises SourceError unless it looks like HAProxy's answer."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    if "Name" not in info or "Version" not in info:
        raise SourceError("show info: no Name/Version lines in the answer")
    return info


def server_states(status: str) -> tuple[str | None, str]:
    """Map a `show stat` server status to (built-in exporter state, proxytier check state).

    Built-in mapping: transitional states count as their current side, "no check" is UP,
    "MAINT (via x/y)" and "MAINT (resolution)" are MAINT. Unknown strings give (None, "unknown").
    """
    if status == "no check":
        return "UP", "no_check"
    if _TRANSITIONAL.match(status):
        side = status.split(" ", 1)[0]
        return side, "going_up" if side == "DOWN" else "going_down"
    word = status.split(" ", 1)[0]
    if word == "MAINT":
        return "MAINT", "unknown"
    if word in ("UP", "NOLB", "DRAIN"):
        return word, "passing"
    if word == "DOWN":
        return "DOWN", "failing"
    return None, "unknown"


def number(row: Mapping[str, str], column: str) -> float | None:
    """The column as a float, None when empty, absent or not a finite number."""
    raw = row.get(column, "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Families:
    """Families created on first use, kept in first-use order. Samples are appended directly with the
    row's one labels dict, shared by all its metrics (cheaper to build and to render)."""

    def __init__(self) -> None:
        self._by_name: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, field: Field, labels: dict[str, str], value: float) -> None:
        family = self._by_name.get(field.metric)
        if family is None:
            kind = CounterMetricFamily if field.counter else GaugeMetricFamily
            family = self._by_name[field.metric] = kind(field.metric, field.help, labels=list(labels))
        family.samples.append(Sample(field.metric, labels, value))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def stat_families(rows: Iterable[Mapping[str, str]]) -> Iterator[Metric]:
    """Metric families for the rows of `show stat`."""
    families = _Families()
    server_status, add_server_status = state_set(
        "haproxy_server_status",
        "Server status (show stat field status), one series per state; transitional states count as "
        "their current side, 'no check' as UP, 'MAINT (via ...)' as MAINT.",
        ["proxy", "server"], SERVER_STATES,
    )
    check_state, add_check_state = state_set(
        "proxytier_haproxy_server_check_state",
        "Health-check side of the server status (show stat field status): passing, going_down "
        "('UP n/m'), failing, going_up ('DOWN n/m'), no_check, unknown (MAINT hides it).",
        ["proxy", "server"], CHECK_STATES,
    )
    backend_status, add_backend_status = state_set(
        "haproxy_backend_status", "Backend status (show stat field status), one series per state.",
        ["proxy"], BACKEND_STATES,
    )
    responses = {
        kind: CounterMetricFamily(
            f"haproxy_{kind}_http_responses_total",
            "HTTP responses by status class (show stat fields hrsp_1xx..hrsp_other).",
            labels=[*labels, "code"],
        )
        for kind, labels in (("frontend", ["proxy"]), ("backend", ["proxy"]), ("server", ["proxy", "server"]))
    }
    for row in rows:
        kind = row.get("type")
        proxy, name = row.get("pxname", ""), row.get("svname", "")
        if kind == TYPE_FRONTEND:
            table, values, word = FRONTEND_FIELDS, [proxy], "frontend"
        elif kind == TYPE_BACKEND:
            table, values, word = BACKEND_FIELDS, [proxy], "backend"
            status = row.get("status", "")
            add_backend_status(values, status if status in BACKEND_STATES else None)
        elif kind == TYPE_SERVER:
            table, values, word = SERVER_FIELDS, [proxy, name], "server"
            state, check = server_states(row.get("status", ""))
            add_server_status(values, state)
            add_check_state(values, check)
        else:
            continue  # listeners (type 3) are not exported
        labels = {"proxy": proxy, "server": name} if kind == TYPE_SERVER else {"proxy": proxy}
        for field in table:
            value = number(row, field.column)
            if value is not None:
                families.add(field, labels, value)
        for code in RESPONSE_CODES:
            value = number(row, f"hrsp_{code}")
            if value is not None:
                responses[word].add_metric([*values, code], value)
    yield from families
    yield from responses.values()
    yield server_status
    yield check_state
    yield backend_status


def info_families(info: Mapping[str, str]) -> Iterator[Metric]:
    """Metric families for `show info`."""
    families = _Families()
    for field in INFO_FIELDS:
        value = number(info, field.column)
        if value is not None:
            families.add(field, {}, value)
    yield from families
    build = GaugeMetricFamily(
        "haproxy_process_build_info", "HAProxy version (show info field Version).", labels=["version"]
    )
    build.add_metric([info.get("Version", "")], 1.0)
    yield build


class HAProxyCollector:
    """Reads HAProxy's runtime API (a `level user` socket is enough) at scrape time."""

    name = "haproxy"

    def __init__(self, socket_path: str, timeout: float = 2.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        info = parse_show_info(unix_command(self.socket_path, "show info", self.timeout))
        rows = parse_show_stat(unix_command(self.socket_path, "show stat", self.timeout))
        yield from info_families(info)
        yield from stat_families(rows)

    def describe(self) -> list[Metric]:
        tables = (FRONTEND_FIELDS, BACKEND_FIELDS, SERVER_FIELDS, INFO_FIELDS)
        return describe_names(
            *(field.metric for table in tables for field in table),
            *(f"haproxy_{kind}_http_responses_total" for kind in ("frontend", "backend", "server")),
            "haproxy_server_status", "proxytier_haproxy_server_check_state", "haproxy_backend_status",
            "haproxy_process_build_info",
        )
