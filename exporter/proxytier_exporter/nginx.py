"""nginx: stub_status with nginx-prometheus-exporter's metric names (the access log is `accesslog.py`).

`nginx_up` has nginx-prometheus-exporter's meaning: 1 when this scrape read a whole stub_status page, else 0
(published on failure too, by ScrapeCollector, beside `proxytier_collector_success{collector="nginx"}`,
which has the same value); NGINX's Grafana dashboard finds its instances with `label_values(nginx_up,
instance)`.

nginx-prometheus-exporter names its accepted/handled counters without `_total`; prometheus_client's text
format always appends `_total` to counters, so those two keep their names and are exposed untyped.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxytier_exporter.core import SourceError, describe_names

# The whole page exactly as ngx_http_stub_status_module writes it (nginx 1.22; the same since 1.1):
# four lines, each number followed by a space, the last line ending with " \n".
_STUB_STATUS = re.compile(
    r"Active connections: (?P<active>\d+) \n"
    r"server accepts handled requests\n"
    r" (?P<accepted>\d+) (?P<handled>\d+) (?P<requests>\d+) \n"
    r"Reading: (?P<reading>\d+) Writing: (?P<writing>\d+) Waiting: (?P<waiting>\d+) \n"
)
MAX_STUB_STATUS_BYTES = 4096


def parse_stub_status(text: str) -> dict[str, int]:
    """The seven numbers of a whole stub_status page: {active, accepted, handled, requests, reading,
    writing, waiting} (connections / requests since nginx started).

    The page must be exactly nginx's four lines, down to the final " \n": a page cut anywhere (even
    after the last digit, where "Waiting: 12" cut to "Waiting: 1" would still read as a number) or
    with anything around it raises SourceError naming stub_status and the page's end.
    """
    match = _STUB_STATUS.fullmatch(text)
    if match is None:
        raise SourceError(f"stub_status: not a whole stub_status page (starts {text[:40]!r}, ends {text[-40:]!r})")
    return {key: int(value) for key, value in match.groupdict().items()}


def fetch(url: str, timeout: float) -> str:
    """The body of `url` as text. Raises SourceError for an HTTP error, a connection failure, a body
    over MAX_STUB_STATUS_BYTES, or a body shorter than its Content-Length (the connection closed early)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(MAX_STUB_STATUS_BYTES + 1)
            length = response.headers.get("Content-Length")
    except http.client.IncompleteRead as error:
        raise SourceError(f"{url}: body cut short after {len(error.partial)} bytes") from error
    except urllib.error.HTTPError as error:
        raise SourceError(f"{url}: HTTP {error.code} (is stub_status enabled at this location?)") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise SourceError(f"{url}: {reason}") from error
    if len(body) > MAX_STUB_STATUS_BYTES:
        raise SourceError(f"{url}: page over {MAX_STUB_STATUS_BYTES} bytes, not stub_status")
    if length is not None and length.isdigit() and len(body) != int(length):
        raise SourceError(f"{url}: body cut short, {len(body)} of Content-Length {length} bytes")
    return body.decode("ascii", errors="replace")


def stub_status_families(status: dict[str, int]) -> Iterator[Metric]:
    """nginx-prometheus-exporter's seven stub_status metrics for a parsed page (`parse_stub_status`):
    four connection gauges, accepted/handled untyped (its names lack `_total`), requests as a counter."""
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
    up_metric = ("nginx_up", "1 if the last stub_status scrape succeeded, else 0 (nginx-prometheus-exporter's "
                 "nginx_up; the same value as proxytier_collector_success{collector=\"nginx\"}).")

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
