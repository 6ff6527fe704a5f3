"""HAProxy: `show stat` and `show info` from the runtime API, named like HAProxy's built-in exporter.

The CSV is read by header name (HAProxy 2.6 has more columns than older releases and adds more in later
ones). Metric names, label names (`proxy`, `server`, `code`, `state`) and the five server states follow
the exporter built into HAProxy (`http-request use-service prometheus-exporter`), so dashboards written
for it keep working. Every metric HAProxy 2.6's exporter publishes for the process, frontends, backends
and servers is published (the field -> metric tables are in `haproxy_fields.py`), from the same fields,
with three differences that `show stat` imposes: an empty field gives no series (HAProxy's exporter writes
NaN); the `*_time_average_seconds` are `show stat`'s averages over the requests seen so far (HAProxy 2.6's
exporter divides by 1024 until 1024 requests have been seen; equal after that); a server whose checks are
paused (MAINT) has no check_duration and is not counted in `haproxy_backend_agg_check_status` (`show stat`
hides its last check). proxytier adds `proxytier_haproxy_server_check_state` for what the five server
states hide: transitional "UP 1/3" / "DOWN 1/2" health and servers without checks.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from proxytier_exporter.core import SourceError, describe_names, state_set
from proxytier_exporter.haproxy_fields import (
    BACKEND,
    CHECK_STATUSES,
    FRONTEND,
    MS,
    RULE_COLUMNS,
    SERVER,
    STAT_FIELDS,
)
from proxytier_exporter.haproxy_fields import INFO_FIELDS as INFO_SPECS
from proxytier_exporter.runtime_api import unix_command

TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = "0", "1", "2"
SERVER_STATES = ("DOWN", "UP", "MAINT", "DRAIN", "NOLB")  # as HAProxy's built-in exporter
BACKEND_STATES = ("DOWN", "UP")
FRONTEND_STATES = ("DOWN", "UP")
CHECK_STATES = ("passing", "going_down", "failing", "going_up", "no_check", "unknown")
RESPONSE_CODES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
_TRANSITIONAL = re.compile(r"^(UP|DOWN|NOLB|DRAIN) \d+/\d+$")
_KIND = {TYPE_FRONTEND: FRONTEND, TYPE_BACKEND: BACKEND, TYPE_SERVER: SERVER}


@dataclass(frozen=True)
class Field:
    """One metric read from one column (or `show info` key): `value / divisor` of a non-empty field."""

    metric: str
    column: str
    kind: str  # "counter", "gauge" or "untyped"
    help: str
    divisor: float = 1.0
    http_only: bool = False


def _object_fields(kind: str) -> tuple[Field, ...]:
    return tuple(
        Field(f"haproxy_{kind}_{spec.name}", spec.column, spec.kind, spec.help, spec.divisor, spec.http_only)
        for spec in STAT_FIELDS if kind in spec.objects
    )


FRONTEND_FIELDS = _object_fields(FRONTEND)
BACKEND_FIELDS = _object_fields(BACKEND)
SERVER_FIELDS = _object_fields(SERVER)
_TABLES = {FRONTEND: FRONTEND_FIELDS, BACKEND: BACKEND_FIELDS, SERVER: SERVER_FIELDS}
INFO_FIELDS = tuple(
    Field(f"haproxy_process_{spec.name}", spec.key, spec.kind, spec.help) for spec in INFO_SPECS
)

ANSWER_END = "\n\n"  # the runtime API ends every complete answer with an empty line
_KEY_COLUMNS = ("pxname", "svname", "type", "status")
_TYPES = ("0", "1", "2", "3")  # frontend, backend, server, listener
_TEXT_COLUMNS = ("status", "check_status", "mode")


def _numeric_columns() -> tuple[str, ...]:
    columns = [spec.column for spec in STAT_FIELDS] + [c for c in RULE_COLUMNS if c not in _TEXT_COLUMNS]
    return tuple(dict.fromkeys(columns))


STAT_NUMERIC_COLUMNS = _numeric_columns()
STAT_COLUMNS = (*_KEY_COLUMNS, *STAT_NUMERIC_COLUMNS, "check_status", "mode")
INFO_KEYS = ("Name", "Version", *(spec.key for spec in INFO_SPECS if spec.required))


def _ending(text: str) -> str:
    return repr(text[-40:]) if text else "nothing"


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of a complete `show stat` answer, each {column name: value} (values as HAProxy wrote them).

    The answer is HAProxy's CSV: a header line `# pxname,svname,...` (HAProxy 2.6 writes 129 columns,
    each line ending with a comma), one line per frontend, backend, server and listener, then the empty
    line that ends every complete runtime API answer (HAProxy 2.6 sends `...\n\n`). Completeness checks,
    each a SourceError naming `show stat` and what is wrong, so a partial answer never passes for a whole
    one: the header is there and has every column the metrics read (`STAT_COLUMNS`, all in HAProxy 2.6's
    CSV); the answer ends with
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
                raw = row[column]
                if raw and _finite(raw) is None:
                    raise SourceError(f"show stat: line {number_} column {column} is not a number: {raw!r}")
            rows.append(row)
    except csv.Error as error:
        raise SourceError(f"show stat: malformed CSV: {error}") from error
    return rows


def parse_show_info(text: str) -> dict[str, str]:
    """A complete `show info` answer as {key: value} (values as HAProxy wrote them, stripped).

    The answer is `Key: value` lines then the empty line that ends every complete runtime API answer.
    Raises SourceError, naming `show info` and what is wrong, unless: it ends with that empty line and
    has no other; every line is `Key: value`; no key appears twice; Name is HAProxy; every key HAProxy 2.6
    always writes and the metrics read (`INFO_KEYS`) is there; every key read as a number that is there
    (the optional ones, e.g. ZlibMemUsage, only when HAProxy writes them) is a finite number.
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
        if field.column in info and number(info, field.column) is None and (
            info[field.column] or field.column in INFO_KEYS
        ):
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
    return _finite(raw) if raw else None


def _finite(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value - value == 0.0 else None  # inf - inf and nan - nan are nan


def _family(field: Field, labels: list[str]) -> Metric:
    if field.kind == "counter":
        return CounterMetricFamily(field.metric, field.help, labels=labels)
    if field.kind == "gauge":
        return GaugeMetricFamily(field.metric, field.help, labels=labels)
    return Metric(field.metric, field.help, "unknown")


def _plan(kind: str) -> tuple[list[Metric], list[tuple[str, str, float, bool, list[Sample]]]]:
    """A scrape's empty families for one object kind's table, and per field what the row loop needs:
    (column, sample name, divisor, http_only, the family's sample list)."""
    labels = ["proxy", "server"] if kind == SERVER else ["proxy"]
    families = [_family(field, labels) for field in _TABLES[kind]]
    steps = [(field.column, field.metric, field.divisor, field.http_only, family.samples)
             for field, family in zip(_TABLES[kind], families, strict=True)]
    return families, steps


def frontend_state(status: str) -> str:
    """HAProxy's exporter's frontend state for a `show stat` frontend status: STOP is DOWN, else UP."""
    return "DOWN" if status == "STOP" else "UP"


def check_status(row: Mapping[str, str]) -> str | None:
    """The server's last health-check status (L7OK, L4CON, ...) without the "* " `show stat` writes while
    a check runs; None when checks are off or paused (`show stat` leaves check_status empty)."""
    status = row.get("check_status", "")
    return status[2:] if status.startswith("* ") else status or None


def stat_families(rows: Iterable[Mapping[str, str]]) -> Iterator[Metric]:
    """Metric families for the rows of `show stat` (frontends, backends, servers; listeners are skipped).

    Per row: every STAT_FIELDS column HAProxy's exporter publishes for that object, as a float / divisor (ms -> s)
    (empty fields give no series, where HAProxy's exporter writes NaN; fields HAProxy publishes for HTTP
    proxies only are skipped when the `mode` column is not http); then the fields built by rule, as
    HAProxy's exporter builds them: `status` as a state-set, `hrsp_*` as `http_responses_total{code}`,
    server `check_status` (state-set over CHECK_STATUSES), `check_code` (0 before a layer-5..7 result)
    and `check_duration_seconds` for servers whose checks run, and per backend with servers
    `agg_server_status` (and its deprecated twin `agg_server_check_status`) / `agg_check_status`: how many
    of its servers are in each state.
    """
    plans = {kind: _plan(kind) for kind in (FRONTEND, BACKEND, SERVER)}
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
    frontend_status, add_frontend_status = state_set(
        "haproxy_frontend_status", "Frontend status (show stat field status: STOP is DOWN, OPEN UP), one series "
        "per state.", ["proxy"], FRONTEND_STATES,
    )
    last_check, add_last_check = state_set(
        "haproxy_server_check_status", "Last health-check status (show stat field check_status), one series per "
        "status; only servers whose checks run.", ["proxy", "server"], CHECK_STATUSES,
    )
    check_code = GaugeMetricFamily(
        "haproxy_server_check_code", "Layer 5-7 code of the last health check, 0 before one (show stat field "
        "check_code); only servers whose checks run.", labels=["proxy", "server"],
    )
    check_duration = GaugeMetricFamily(
        "haproxy_server_check_duration_seconds", "Duration of the last health check, seconds (show stat field "
        "check_duration).", labels=["proxy", "server"],
    )
    responses = {
        kind: CounterMetricFamily(
            f"haproxy_{kind}_http_responses_total",
            "HTTP responses by status class (show stat fields hrsp_1xx..hrsp_other).",
            labels=[*labels, "code"],
        )
        for kind, labels in ((FRONTEND, ["proxy"]), (BACKEND, ["proxy"]), (SERVER, ["proxy", "server"]))
    }
    servers_by_state: dict[str, dict[str, int]] = {}
    servers_by_check: dict[str, dict[str, int]] = {}
    backends: list[str] = []
    for row in rows:
        kind = _KIND.get(row.get("type", ""))
        if kind is None:
            continue  # listeners (type 3) are not exported
        proxy, name = row.get("pxname", ""), row.get("svname", "")
        status = row.get("status", "")
        if kind == SERVER:
            values = [proxy, name]
            labels = {"proxy": proxy, "server": name}
            state, check = server_states(status)
            add_server_status(values, state)
            add_check_state(values, check)
            counts = servers_by_state.setdefault(proxy, dict.fromkeys(SERVER_STATES, 0))
            checks = servers_by_check.setdefault(proxy, dict.fromkeys(CHECK_STATUSES, 0))
            if state is not None:
                counts[state] += 1
            last = check_status(row)
            if last is not None:
                add_last_check(values, last)
                if last in checks:
                    checks[last] += 1
                check_code.add_metric(values, number(row, "check_code") or 0.0)
                duration = number(row, "check_duration")
                if duration is not None:
                    check_duration.add_metric(values, duration / MS)
        else:
            values = [proxy]
            labels = {"proxy": proxy}
            if kind == BACKEND:
                add_backend_status(values, status if status in BACKEND_STATES else None)
                backends.append(proxy)
            else:
                add_frontend_status(values, frontend_state(status))
        http = row.get("mode") == "http"
        get = row.get
        for column, metric, divisor, http_only, samples in plans[kind][1]:
            raw = get(column)
            if raw and (http or not http_only):
                value = _finite(raw)
                if value is not None:
                    samples.append(Sample(metric, labels, value / divisor if divisor != 1.0 else value))
        if http:
            for code in RESPONSE_CODES:
                value = number(row, f"hrsp_{code}")
                if value is not None:
                    responses[kind].add_metric([*values, code], value)
    for families, _ in plans.values():
        yield from (family for family in families if family.samples)
    yield from responses.values()
    yield frontend_status
    yield backend_status
    yield server_status
    yield check_state
    yield last_check
    yield check_code
    yield check_duration
    yield from aggregate_families(backends, servers_by_state, servers_by_check)


_AGGREGATES = (
    ("agg_server_status", "by_state", "Servers of the backend in each state of haproxy_server_status (show stat "
     "field status of its servers)."),
    ("agg_server_check_status", "by_state", "Deprecated name of haproxy_backend_agg_server_status, same values "
     "(HAProxy 2.6 publishes both)."),
    ("agg_check_status", "by_check", "Servers of the backend per last health-check status (show stat field "
     "check_status of its servers; servers with paused checks, e.g. in MAINT, are not counted)."),
)


def aggregate_families(
    backends: Iterable[str], by_state: Mapping[str, Mapping[str, int]], by_check: Mapping[str, Mapping[str, int]]
) -> Iterator[Metric]:
    """`haproxy_backend_agg_*{proxy,state}` for the backends that have servers (as HAProxy's exporter): the
    number of servers per `haproxy_server_status` state (`by_state[proxy][state]`) and per last check
    status (`by_check[proxy][status]`)."""
    counts = {"by_state": by_state, "by_check": by_check}
    for name, source, text in _AGGREGATES:
        family = GaugeMetricFamily(f"haproxy_backend_{name}", text, labels=["proxy", "state"])
        for proxy in backends:
            for state, count in counts[source].get(proxy, {}).items():
                family.add_metric([proxy, state], count)
        yield family


def info_families(info: Mapping[str, str]) -> Iterator[Metric]:
    """Metric families for `show info`: every INFO_FIELDS key the answer has, as a float, and
    `haproxy_process_build_info{version}` (value 1, version from the Version key)."""
    for field in INFO_FIELDS:
        value = number(info, field.column)
        if value is not None:
            family = _family(field, [])
            family.samples.append(Sample(field.metric, {}, value))
            yield family
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
        return describe_names(*metric_names())


def metric_names() -> list[str]:
    """Every metric family name the HAProxy collector can publish."""
    tables = (FRONTEND_FIELDS, BACKEND_FIELDS, SERVER_FIELDS, INFO_FIELDS)
    return list(dict.fromkeys([
        *(field.metric for table in tables for field in table),
        *(f"haproxy_{kind}_http_responses_total" for kind in (FRONTEND, BACKEND, SERVER)),
        "haproxy_frontend_status", "haproxy_backend_status", "haproxy_server_status",
        "proxytier_haproxy_server_check_state", "haproxy_server_check_status", "haproxy_server_check_code",
        "haproxy_server_check_duration_seconds", "haproxy_backend_agg_server_status",
        "haproxy_backend_agg_server_check_status", "haproxy_backend_agg_check_status", "haproxy_process_build_info",
    ]))
