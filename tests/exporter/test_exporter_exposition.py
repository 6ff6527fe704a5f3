"""The exporter's own text renderer writes exactly what prometheus_client's generate_latest writes."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from proxytier_exporter.accesslog import AccessLogStats
from proxytier_exporter.exposition import metrics_app, render_text
from proxytier_exporter.haproxy import info_families, parse_show_info, parse_show_stat, stat_families
from proxytier_exporter.keepalived import instance_families, parse_json_dump
from proxytier_exporter.nginx import parse_stub_status, stub_status_families


def captured_families(fixtures: Path) -> list[Metric]:
    stats = AccessLogStats()
    for line in (fixtures / "nginx_access_syslog.txt").read_bytes().split(b"\n"):
        if line:
            stats.observe_datagram(line)
    return [
        *info_families(parse_show_info((fixtures / "haproxy_show_info.txt").read_text())),
        *stat_families(parse_show_stat((fixtures / "haproxy_show_stat.csv").read_text())),
        *instance_families(parse_json_dump((fixtures / "keepalived.json").read_text())),
        *stub_status_families(parse_stub_status((fixtures / "nginx_stub_status.txt").read_text())),
        *stats.families(),
    ]


def odd_families() -> list[Metric]:
    gauge = GaugeMetricFamily("odd_gauge", 'help with \\ backslash\nand "newline"', labels=["a", "b"])
    gauge.add_metric(['quote " and \\ and\nnewline', ""], float("nan"))
    gauge.add_metric(["x", "y"], float("inf"), timestamp=1234.5)
    counter = CounterMetricFamily("odd_total", "a counter", labels=["z"])
    counter.add_metric(["1"], 1e21)
    histogram = HistogramMetricFamily("odd_seconds", "h", labels=["u"])
    histogram.add_metric(["a"], [("0.1", 1), ("+Inf", 2)], 0.5)
    untyped = Metric("odd_untyped", "u", "unknown")
    untyped.add_sample("odd_untyped", {}, 0.0)
    untyped.add_sample("odd_untyped", {"sign": "negative"}, -0.0)
    untyped.add_sample("odd_untyped", {"big": "yes"}, 1795493039.487521)
    return [gauge, counter, histogram, untyped]


class _Static:
    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


@pytest.mark.parametrize("source", ["captured", "odd", "process"])
def test_render_text_equals_generate_latest(source: str, fixtures: Path) -> None:
    if source == "process":
        # The live collector's figures (CPU, open fds) move between two collects: freeze one collect.
        families = list(ProcessCollector(registry=None).collect())
        assert families, "the process collector produced nothing on this platform"
    else:
        families = captured_families(fixtures) if source == "captured" else odd_families()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    assert render_text(registry.collect()) == generate_latest(registry)


def test_metrics_app_compresses_when_asked_and_answers_head(fixtures: Path) -> None:
    families = captured_families(fixtures)
    app = metrics_app(lambda: families)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def call(environ: dict) -> bytes:
        return b"".join(app(environ, lambda status, headers: started.append((status, headers))))

    plain = call({"REQUEST_METHOD": "GET"})
    zipped = call({"REQUEST_METHOD": "GET", "HTTP_ACCEPT_ENCODING": "gzip, deflate"})
    assert gzip.GzipFile(fileobj=io.BytesIO(zipped)).read() == plain == render_text(families)
    assert ("Content-Encoding", "gzip") in started[1][1]
    assert call({"REQUEST_METHOD": "HEAD"}) == b""
    assert ("Content-Type", "text/plain; version=0.0.4; charset=utf-8") in started[2][1]
