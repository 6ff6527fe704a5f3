"""Dashboards operators already use work unchanged: the names they query, and HAProxy's own exporter's
families and series, are all in proxytier's exposition of the same captured HAProxy 2.6 / nginx 1.22 output.

`haproxy_builtin_metrics.txt` is HAProxy's built-in exporter captured at the same moment as
`haproxy_show_stat.csv` / `haproxy_show_info.txt` (see fixtures/capture_haproxy_nginx.py), so both describe
the same frontends, backends and servers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from proxytier_exporter import haproxy, nginx
from proxytier_exporter.core import ScrapeCollector
from proxytier_exporter.haproxy import HAProxyCollector
from proxytier_exporter.nginx import NginxCollector

from tests.exporter.compat_names import DASHBOARD_12693, DASHBOARD_12708, HAPROXY_MIXIN, NOT_IN_HAPROXY_26

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# (name, type in HAProxy's exporter, type in proxytier's) -> why they differ.
TYPE_DIFFERENCES = {
    ("haproxy_process_failed_resolutions", "counter", "untyped"): "prometheus_client writes every counter with a "
    "_total suffix; HAProxy names this counter without one, so it keeps its name and is exposed untyped",
}
# Series HAProxy's exporter has with a value and proxytier cannot have: (name, labels) -> why.
SERIES_GAPS = {
    ("haproxy_server_check_duration_seconds", (("proxy", "be_nginx"), ("server", "maint1"))): "maint1 is in "
    "MAINT: its checks are paused and show stat hides its last check (check_duration empty)",
}
# Values that legitimately differ between the two captures: (name, labels or None for every series) -> why.
VALUE_DIFFERENCES = {
    **{(name, None): "the built-in exporter was scraped after show stat/info: its own request is counted"
       for name in ("haproxy_process_current_connections", "haproxy_process_connections_total",
                    "haproxy_process_requests_total", "haproxy_process_current_tasks",
                    "haproxy_process_bytes_out_total", "haproxy_process_bytes_out_rate")},
    **{(name, None): "show stat averages over the requests seen so far; HAProxy 2.6's exporter divides the "
       "same sum by 1024 until 1024 requests have been seen"
       for kind in ("backend", "server") for name in (f"haproxy_{kind}_queue_time_average_seconds",
                                                     f"haproxy_{kind}_connect_time_average_seconds",
                                                     f"haproxy_{kind}_response_time_average_seconds",
                                                     f"haproxy_{kind}_total_time_average_seconds")},
    ("haproxy_backend_agg_check_status", (("proxy", "be_nginx"), ("state", "L7OK"))): "maint1's last check "
    "(L7OK) is hidden by show stat while its checks are paused",
}
SCRAPE_FRONTEND = "fe_prometheus"  # the frontend serving the built-in exporter: its own request counts there


@dataclass
class Family:
    type: str = "untyped"
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    @property
    def label_names(self) -> set[frozenset[str]]:
        return {frozenset(name for name, _ in labels) for labels in self.samples}


def parse(text: str) -> dict[str, Family]:
    """Text exposition -> {family name: Family}; a sample's family is the TYPE line of its name."""
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families.setdefault(name, Family()).type = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            labels = tuple(sorted(_LABEL.findall(match["labels"] or "")))
            families.setdefault(match["name"], Family()).samples[labels] = float(match["value"])
    return families


def exposition(render, monkeypatch, show_stat: str, show_info: str, stub_status: str) -> dict[str, Family]:
    """proxytier's exposition (HAProxy and nginx collectors, through the scrape wrapper) of these answers."""
    answers = {"show stat": show_stat, "show info": show_info}
    monkeypatch.setattr(haproxy, "unix_command", lambda path, command, timeout: answers[command])
    monkeypatch.setattr(nginx, "fetch", lambda url, timeout: stub_status)
    families = parse(render(ScrapeCollector([HAProxyCollector("unused"), NginxCollector("unused")]).collect))
    assert families["proxytier_collector_success"].samples == {
        (("collector", "haproxy"),): 1.0, (("collector", "nginx"),): 1.0}
    return families


@pytest.fixture
def ours(fixtures: Path, monkeypatch, render) -> dict[str, Family]:
    """proxytier's exposition of the captured answers."""
    return exposition(render, monkeypatch, (fixtures / "haproxy_show_stat.csv").read_text(),
                      (fixtures / "haproxy_show_info.txt").read_text(),
                      (fixtures / "nginx_stub_status.txt").read_text())


@pytest.fixture
def ours_filled(fixtures: Path, monkeypatch, render) -> dict[str, Family]:
    """The same, with every numeric field the capture left empty set to 1 (a server maxconn, maxqueue,
    slowstart, pool-max-conn; zlib memory, which this HAProxy build lacks): what a tier configured with
    them publishes."""
    header, *rows = (fixtures / "haproxy_show_stat.csv").read_text()[: -len(haproxy.ANSWER_END)].split("\n")
    columns = header[2:].split(",")
    numeric = {index for index, column in enumerate(columns) if column in haproxy.STAT_NUMERIC_COLUMNS}
    filled = [",".join(value or ("1" if index in numeric else "") for index, value in enumerate(row.split(",")))
              for row in rows]
    info = (fixtures / "haproxy_show_info.txt").read_text()
    info = info[: -len(haproxy.ANSWER_END)] + "\nZlibMemUsage: 1\nMaxZlibMemUsage: 1" + haproxy.ANSWER_END
    stat = "\n".join([header, *filled]) + haproxy.ANSWER_END
    return exposition(render, monkeypatch, stat, info, (fixtures / "nginx_stub_status.txt").read_text())


@pytest.fixture
def builtin(fixtures: Path) -> dict[str, Family]:
    return parse((fixtures / "haproxy_builtin_metrics.txt").read_text())


@pytest.mark.parametrize(("source", "names"), [
    ("dashboard 12693", DASHBOARD_12693), ("dashboard 12708", DASHBOARD_12708), ("haproxy-mixin", HAPROXY_MIXIN),
])
def test_every_metric_and_label_a_dashboard_queries_is_exported(ours, ours_filled, builtin, source, names) -> None:
    wanted = {name: labels for name, labels in names.items() if name not in NOT_IN_HAPROXY_26}
    missing = [name for name in wanted if not ours.get(name, Family()).samples]
    # Only metrics whose fields are empty in this capture may lack series, and HAProxy's exporter has only
    # NaN for them in the same capture; filled in, they are there too.
    assert [name for name in missing if _published(builtin.get(name, Family(samples={(): 0.0})))] == []
    assert len(missing) < 10
    for exposed in (ours, ours_filled):
        for name, labels in wanted.items():
            if exposed is ours and name in missing:
                continue
            assert exposed.get(name, Family()).samples, f"{source} queries {name}, not published"
            lacking = [label for label in labels if not all(label in names_ for names_ in exposed[name].label_names)]
            assert lacking == [], f"{source} uses labels {lacking} of {name}"


def test_names_left_out_are_not_published_by_haproxys_own_exporter_either(ours, builtin) -> None:
    queried = {**DASHBOARD_12693, **DASHBOARD_12708, **HAPROXY_MIXIN}
    for name in NOT_IN_HAPROXY_26:
        assert name in queried, f"{name} is listed as left out but no dashboard queries it"
        assert name not in builtin and name not in ours


def _published(family: Family) -> bool:
    return any(not math.isnan(value) for value in family.samples.values())


def test_every_family_of_haproxys_exporter_is_there_with_its_type_and_label_names(ours, builtin) -> None:
    # A family whose every series is NaN comes from fields empty in show stat/info (e.g. ZlibMemUsage of a
    # build without zlib): proxytier writes no series for an empty field, so it has no such family either.
    expected = {name: family for name, family in builtin.items() if _published(family)}
    assert len(expected) > 170
    missing = sorted(set(expected) - set(ours))
    assert missing == []
    for name, family in expected.items():
        if (name, family.type, ours[name].type) not in TYPE_DIFFERENCES:
            assert ours[name].type == family.type, name
        assert ours[name].label_names == family.label_names, name
    for name, family in builtin.items():
        if not _published(family):
            assert name not in ours, f"{name}: HAProxy's exporter has only NaN, from empty fields"


def test_every_series_of_haproxys_exporter_is_there_and_no_other(ours, builtin) -> None:
    theirs = {(name, labels): value for name, family in builtin.items() for labels, value in family.samples.items()}
    mine = {(name, labels): value for name, family in ours.items() if name.startswith("haproxy_")
            for labels, value in family.samples.items()}
    missing = sorted(key for key, value in theirs.items()
                     if not math.isnan(value) and key not in mine and key not in SERIES_GAPS)
    assert missing == []
    assert sorted(key for key in SERIES_GAPS if key in mine) == [], "a listed gap is no longer one"
    from_empty_fields = sorted(key for key, value in theirs.items() if math.isnan(value) and key in mine)
    assert from_empty_fields == []
    assert sorted(set(mine) - set(theirs)) == []


def test_values_equal_haproxys_exporter_for_the_same_moment(ours, builtin) -> None:
    differing = []
    for name, family in builtin.items():
        for labels, value in family.samples.items():
            mine = ours.get(name, Family()).samples.get(labels)
            if math.isnan(value) or mine is None or mine == value:
                continue
            if (name, None) in VALUE_DIFFERENCES or (name, labels) in VALUE_DIFFERENCES:
                continue
            if ("proxy", SCRAPE_FRONTEND) in labels:
                continue
            differing.append((name, labels, value, mine))
    assert differing == []
    used = {key for key in VALUE_DIFFERENCES if key[1] is not None}
    for name, labels in used:
        assert ours[name].samples[labels] != builtin[name].samples[labels], f"{name} {labels} no longer differs"


def test_times_in_milliseconds_are_published_in_seconds(ours, fixtures) -> None:
    rows = haproxy.parse_show_stat((fixtures / "haproxy_show_stat.csv").read_text())
    up1 = next(row for row in rows if row["svname"] == "up1")
    labels = (("proxy", "be_nginx"), ("server", "up1"))
    assert float(up1["rtime"]) > 0
    assert ours["haproxy_server_response_time_average_seconds"].samples[labels] == float(up1["rtime"]) / 1000


def test_fields_on_objects_haproxys_exporter_leaves_them_off_give_no_series(ours_filled, builtin) -> None:
    # With every empty field filled, only HAProxy's exporter's families appear, on the same objects
    # (a column read for an object HAProxy does not publish it for would add a family or a label set).
    haproxy_families = {name: family for name, family in ours_filled.items() if name.startswith("haproxy_")}
    assert sorted(set(haproxy_families) - set(builtin)) == []
    for name, family in haproxy_families.items():
        assert family.label_names == builtin[name].label_names, name
