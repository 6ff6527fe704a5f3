"""Every parser of daemon output, fuzzed: it returns, or raises the one error type its collector reports.

Inputs are arbitrary text and the real captures cut and corrupted at random places, since a daemon
that stops mid-answer or a half-written file is the realistic failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxytier_exporter.accesslog import AccessLogStats, MalformedLine, parse_datagram
from proxytier_exporter.core import SourceError
from proxytier_exporter.haproxy import info_families, parse_show_info, parse_show_stat, server_states, stat_families
from proxytier_exporter.keepalived import (
    MalformedFifoLine,
    check_fifo_line,
    instance_families,
    parse_fifo_line,
    parse_json_dump,
)
from proxytier_exporter.keepalived_conf import parse_keepalived_conf
from proxytier_exporter.nginx import parse_stub_status, stub_status_families
from proxytier_exporter.vip import parse_addr_dump

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def corrupted(name: str) -> st.SearchStrategy[str]:
    """The captured file, truncated and with a slice replaced by arbitrary text."""
    text = (FIXTURES / name).read_text()
    return st.tuples(
        st.integers(0, len(text)), st.integers(0, len(text)), st.integers(0, 40), st.text(max_size=40)
    ).map(lambda t: (text[: t[0]] + t[3] + text[t[0] + t[2]:])[: max(t[1], t[0])])


def inputs(name: str) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=400), corrupted(name))


def returns_or_raises(parse: Callable[[Any], Any], text: str | bytes, *allowed: type[Exception]) -> Any:
    try:
        return parse(text)
    except allowed:
        return None


@FUZZ
@given(inputs("haproxy_show_stat.csv"))
def test_show_stat(text: str) -> None:
    rows = returns_or_raises(parse_show_stat, text, SourceError)
    if rows is not None:
        list(stat_families(rows))  # building metrics from any parsed rows must not raise either


@FUZZ
@given(inputs("haproxy_show_info.txt"))
def test_show_info(text: str) -> None:
    info = returns_or_raises(parse_show_info, text, SourceError)
    if info is not None:
        list(info_families(info))


@FUZZ
@given(st.text(max_size=60))
def test_server_status_strings(text: str) -> None:
    state, check = server_states(text)
    assert state in (None, "UP", "DOWN", "MAINT", "DRAIN", "NOLB") and check


@FUZZ
@given(inputs("nginx_stub_status.txt"))
def test_stub_status(text: str) -> None:
    status = returns_or_raises(parse_stub_status, text, SourceError)
    if status is not None:
        list(stub_status_families(status))


@FUZZ
@given(st.one_of(st.binary(max_size=300), corrupted("nginx_access_syslog.txt").map(str.encode)))
def test_access_log_datagrams(data: bytes) -> None:
    returns_or_raises(parse_datagram, data, MalformedLine)
    stats = AccessLogStats(max_upstreams=3)
    stats.observe_datagram(data)
    list(stats.families())


@FUZZ
@given(inputs("keepalived_notify_fifo.txt"))
def test_fifo_lines(text: str) -> None:
    for line in text.splitlines():
        parse_fifo_line(line)
        returns_or_raises(check_fifo_line, line, MalformedFifoLine)


@FUZZ
@given(inputs("keepalived.json"))
def test_keepalived_json_dump(text: str) -> None:
    views = returns_or_raises(parse_json_dump, text, SourceError)
    if views is not None:
        list(instance_families(views))


@FUZZ
@given(inputs("keepalived.conf"))
def test_keepalived_conf(text: str) -> None:
    returns_or_raises(parse_keepalived_conf, text, SourceError)


def corrupted_bytes(name: str) -> st.SearchStrategy[bytes]:
    data = (FIXTURES / name).read_bytes()
    return st.tuples(st.integers(0, len(data)), st.integers(0, 8), st.binary(max_size=8)).map(
        lambda t: data[: t[0]] + t[2] + data[t[0] + t[1]:]
    )


@FUZZ
@given(st.one_of(st.binary(max_size=300), corrupted_bytes("netlink_addr_dump.bin")))
def test_netlink_address_dump(data: bytes) -> None:
    returns_or_raises(parse_addr_dump, data, SourceError)


@FUZZ
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "stats", "iname", "state", "vrid", "effective_priority", "advert_rcvd"]),
        children, max_size=5),
    max_leaves=20,
))
def test_keepalived_json_of_any_shape(document: object) -> None:
    views = returns_or_raises(parse_json_dump, json.dumps(document), SourceError)
    if views is not None:
        list(instance_families(views))
