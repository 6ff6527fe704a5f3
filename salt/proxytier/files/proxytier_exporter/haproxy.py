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


ANSWER_END = "\n\n"  # the runtime API ends every complete answer with an empty line
_KEY_COLUMNS = ("pxname", "svname", "type", "status")
_TYPES = ("0", "1", "2", "3")  # frontend, backend, server, listener


def _numeric_columns() -> tuple[str, ...]:
    tables = (FRONTEND_FIELDS, BACKEND_FIELDS, SERVER_FIELDS)
    columns = [field.column for table in tables for field in table] + [f"hrsp_{c}" for c in RESPONSE_CODES]
    return tuple(dict.fromkeys(columns))


STAT_NUMERIC_COLUMNS = _numeric_columns()
STAT_COLUMNS = (*_KEY_COLUMNS, *STAT_NUMERIC_COLUMNS)
INFO_KEYS = ("Name", "Version", *(field.column for field in INFO_FIELDS))


def _ending(text: str) -> str:
    return repr(text[-40:]) if text else "nothing"


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of a complete `show stat` answer, each {column name: value} (values as HAProxy wrote them).

    The answer is HAProxy's CSV: a header line `# pxname,svname,...` (HAProxy 2.6 writes 129 columns,
    each line ending with a comma), one line per frontend, backend, server and listener, then the empty
    line that ends every complete runtime API answer (HAProxy 2.6 sends `...\n\n`). Completeness checks,
    each a SourceError naming `show stat` and what is wrong, so a partial answer never passes for a whole
    one: the header is there and has every column the metrics read (`STAT_COLUMNS`); the answer ends with
    the empty line and has no other; every row has exactly the header's number of columns; every row has
    a pxname, an svname and a known type (0..3); no (type, pxname, svname) appears twice; a non-empty
    value in a column read as a number is a finite number.
    """
    if not text.startswith("# "):
        first = text.split("\n", 1)[0][:80] if text else "an empty answer"
        raise SourceError(f"show stat: expected a CSV header line starting with '# ', got {first!r}")
    if not text.endswith(ANSWER_END):
        raise SourceError(f"show stat: answer cut short, it does not end with an empty line (ends {_ending(text)})")
    lines = text[: -len(ANSWER_END)].split("\n")
    try:
        header = next(csv.reader([lines[0][2:]], strict=True))
        missing = [column for column in STAT_COLUMNS if column not in header]
        if missing:
            raise SourceError(f"show stat: CSV header lacks {', '.join(missing)}")
        if len(set(header) - {""}) != len([name for name in header if name]):
            raise SourceError("show stat: CSV header names a column twice")
        rows = []
        seen: set[tuple[str, str, str]] = set()
        for number_, values in enumerate(csv.reader(lines[1:], strict=True), start=2):
            if not values:
                raise SourceError(f"show stat: empty line {number_} before the end of the answer")
            if len(values) != len(header):
                raise SourceError(
                    f"show stat: line {number_} has {len(values)} columns, the header {len(header)}"
                )
            row = dict(zip(header, values, strict=True))
            key = (row["type"], row["pxname"], row["svname"])
            if not row["pxname"] or not row["svname"] or row["type"] not in _TYPES:
                raise SourceError(f"show stat: line {number_} has no pxname, svname or known type: {key}")
            if key in seen:
                raise SourceError(f"show stat: line {number_} repeats type/pxname/svname {key}")
            seen.add(key)
            for column in STAT_NUMERIC_COLUMNS:
                if row[column] and number(row, column) is None:
                    raise SourceError(f"show stat: line {number_} column {column} is not a number: {row[column]!r}")
            rows.append(row)
    except csv.Error as error:
        raise SourceError(f"show stat: malformed CSV: {error}") from error
    return rows


def parse_show_info(text: str) -> dict[str, str]:
    """A complete `show info` answer as {key: value} (values as HAProxy wrote them, stripped).

    The answer is `Key: value` lines then the empty line that ends every complete runtime API answer.
    Raises SourceError, naming `show info` and what is wrong, unless: it ends with that empty line and
    has no other; every line is `Key: value`; no key appears twice; Name is HAProxy; every key the
    metrics read (`INFO_KEYS`) is there, and those read as numbers are finite numbers.
    """
    if not text.endswith(ANSWER_END):
        raise SourceError(f"show info: answer cut short, it does not end with an empty line (ends {_ending(text)})")
    info: dict[str, str] = {}
    for number_, line in enumerate(text[: -len(ANSWER_END)].split("\n"), start=1):
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise SourceError(f"show info: line {number_} is not 'Key: value': {line[:80]!r}")
        if key.strip() in info:
            raise SourceError(f"show info: line {number_} repeats key {key.strip()!r}")
        info[key.strip()] = value.strip()
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise SourceError(f"show info: answer lacks {', '.join(missing)}")
    if info["Name"] != "HAProxy":
        raise SourceError(f"show info: Name is {info['Name'][:40]!r}, not HAProxy")
    for field in INFO_FIELDS:
        if number(info, field.column) is None:
            raise SourceError(f"show info: {field.column} is not a number: {info[field.column][:40]!r}")
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
