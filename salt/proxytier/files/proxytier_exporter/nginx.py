"""nginx: stub_status with nginx-prometheus-exporter's metric names (the access log is `accesslog.py`).

`nginx_up` is not exported: a failed scrape sets `proxytier_collector_success{collector="nginx"}` to 0
instead of publishing a series that exists only while nginx answers.

nginx-prometheus-exporter names its accepted/handled counters without `_total`; prometheus_client's text
format always appends `_total` to counters, so those two keep their names and are exposed untyped.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxytier_exporter.core import SourceError, describe_names

_STUB_STATUS = re.compile(
    r"Active connections:\s*(?P<active>\d+)\s*\n"
    r"server accepts handled requests\s*\n"
    r"\s*(?P<accepted>\d+)\s+(?P<handled>\d+)\s+(?P<requests>\d+)\s*\n"
    r"Reading:\s*(?P<reading>\d+)\s+Writing:\s*(?P<writing>\d+)\s+Waiting:\s*(?P<waiting>\d+)"
)
MAX_STUB_STATUS_BYTES = 4096


def parse_stub_status(text: str) -> dict[str, int]:
    """The seven numbers of the stub_status page. Raises SourceError for anything else."""
    match = _STUB_STATUS.search(text)
    if match is None:
        raise SourceError(f"stub_status: unexpected page {text[:80]!r}")
    return {key: int(value) for key, value in match.groupdict().items()}


def fetch(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read(MAX_STUB_STATUS_BYTES).decode("ascii", errors="replace")
    except urllib.error.HTTPError as error:
        raise SourceError(f"{url}: HTTP {error.code} (is stub_status enabled at this location?)") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SourceError(f"{url}: {reason}") from error


def stub_status_families(status: dict[str, int]) -> Iterator[Metric]:
    gauges = {
        "active": "Active client connections, including waiting ones (stub_status Active connections).",
        "reading": "Connections where nginx is reading the request header (stub_status Reading).",
        "writing": "Connections where nginx is writing the response (stub_status Writing).",
        "waiting": "Idle client connections waiting for a request (stub_status Waiting).",
    }
    for key, doc in gauges.items():
        yield GaugeMetricFamily(f"nginx_connections_{key}", doc, value=status[key])
    for key, doc in {
        "accepted": "Accepted client connections (stub_status accepts).",
        "handled": "Handled client connections (stub_status handled).",
    }.items():
        family = Metric(f"nginx_connections_{key}", doc, "unknown")
        family.add_sample(f"nginx_connections_{key}", {}, status[key])
        yield family
    yield CounterMetricFamily(
        "nginx_http_requests_total", "Client requests (stub_status requests).", value=status["requests"]
    )


class NginxCollector:
    """Reads the stub_status page at scrape time."""

    name = "nginx"

    def __init__(self, stub_status_url: str, timeout: float = 2.0):
        self.stub_status_url = stub_status_url
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        yield from stub_status_families(parse_stub_status(fetch(self.stub_status_url, self.timeout)))

    def describe(self) -> list[Metric]:
        names = [f"nginx_connections_{key}" for key in ("active", "reading", "writing", "waiting")]
        return describe_names(
            *names, "nginx_connections_accepted", "nginx_connections_handled", "nginx_http_requests_total"
        )
