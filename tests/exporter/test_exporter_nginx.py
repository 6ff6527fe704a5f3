"""nginx collectors on stub_status and JSON access-log datagrams captured from Debian 12's nginx 1.22."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxytier_exporter.accesslog import (
    AccessLogCollector,
    AccessLogEntry,
    AccessLogReceiver,
    AccessLogStats,
    parse_datagram,
)
from proxytier_exporter.core import ScrapeCollector, SourceError
from proxytier_exporter.nginx import NginxCollector


@pytest.fixture
def stub_status_server(fixtures: Path) -> Iterator[str]:
    page = (fixtures / "nginx_stub_status.txt").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/stub_status":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def datagrams(fixtures: Path) -> list[bytes]:
    return [line for line in (fixtures / "nginx_access_syslog.txt").read_bytes().split(b"\n") if line]


def test_stub_status_exposition_matches_golden_file(stub_status_server, render, golden) -> None:
    golden("nginx_stub_status.prom", render(NginxCollector(f"{stub_status_server}/stub_status").collect))


@pytest.mark.parametrize(("path", "up"), [("/stub_status", "1.0"), ("/elsewhere", "0.0")])
def test_nginx_up_says_whether_the_stub_status_scrape_succeeded(stub_status_server, render, path, up) -> None:
    # nginx-prometheus-exporter's meaning: a series that is there on failure too, with value 0.
    text = render(ScrapeCollector([NginxCollector(f"{stub_status_server}{path}")]).collect)
    lines = text.splitlines()
    assert "# TYPE nginx_up gauge" in lines
    assert f"nginx_up {up}" in lines
    assert f'proxytier_collector_success{{collector="nginx"}} {up}' in lines
    assert ("nginx_connections_active" in text) == (up == "1.0")


def test_a_location_without_stub_status_is_a_source_error(stub_status_server) -> None:
    with pytest.raises(SourceError, match="HTTP 404"):
        list(NginxCollector(f"{stub_status_server}/elsewhere").collect())


def test_a_stopped_nginx_is_a_source_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}"):
        list(NginxCollector(f"http://127.0.0.1:{port}/stub_status", timeout=1).collect())


def test_access_log_received_over_the_socket_matches_golden_file(tmp_path, fixtures, render, golden) -> None:
    lines = datagrams(fixtures)
    receiver = AccessLogReceiver(str(tmp_path / "access.sock"), AccessLogStats())
    receiver.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nginx:
            for line in lines:
                nginx.sendto(line, str(tmp_path / "access.sock"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = render(AccessLogCollector(receiver).collect)
            if f"proxytier_nginx_access_log_lines_total {len(lines)}.0" in text:
                break
            time.sleep(0.05)
        golden("nginx_access_log.prom", render(AccessLogCollector(receiver).collect))
    finally:
        receiver.stop()


def test_a_burst_is_read_whole_and_the_reader_stops_promptly(tmp_path, fixtures) -> None:
    line = datagrams(fixtures)[0]
    receiver = AccessLogReceiver(str(tmp_path / "access.sock"), AccessLogStats())
    receiver.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nginx:
            for _ in range(2000):  # blocking sends: they wait while the queue (10 datagrams) is full
                nginx.sendto(line, str(tmp_path / "access.sock"))
        deadline = time.monotonic() + 5
        while receiver.stats._lines < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.stats._lines == 2000 and receiver.stats._malformed == 0
        assert receiver.running
    finally:
        t = time.monotonic()
        receiver.stop()
        assert time.monotonic() - t < 1.5 and not receiver.running


def test_captured_lines_parse_with_upstream_status_class_and_tries(fixtures) -> None:
    entries = [parse_datagram(line) for line in datagrams(fixtures)]
    assert AccessLogEntry("", "2xx", 0.0, 0) in entries  # location answered by nginx itself (204)
    assert AccessLogEntry("flaky", "2xx", 0.0, 2) in entries  # closed port, then the next server
    assert AccessLogEntry("dead", "5xx", 0.0, 1) in entries
    slow = sorted(entry.request_time or 0 for entry in entries if entry.upstream == "slow")
    assert slow[0] > 0.004 and slow[-1] > 1.1


def test_upstream_label_values_are_bounded() -> None:
    stats = AccessLogStats(max_upstreams=2)
    for name in ("a", "b", "c", "d", "a"):
        stats.observe(AccessLogEntry(name, "2xx", 0.01, 1))
    requests = next(f for f in stats.families() if f.name == "proxytier_nginx_upstream_requests")
    by_upstream = {s.labels["upstream"]: s.value for s in requests.samples if s.name.endswith("_total")}
    assert by_upstream == {"a": 2, "b": 1, "__other__": 2}


def test_garbage_datagrams_are_counted_not_fatal() -> None:
    stats = AccessLogStats()
    for data in (b"", b"<190>nginx: not json", b'<190>nginx: {"status":', b"<190>nginx: [1,2]", b"\xff{\xfe"):
        stats.observe_datagram(data)
    values = {f.name: f.samples[0].value for f in stats.families() if f.name.startswith("proxytier_nginx_access")}
    assert values == {"proxytier_nginx_access_log_lines": 5, "proxytier_nginx_access_log_malformed": 5}


def test_a_socket_that_cannot_be_bound_fails_the_collector_with_the_reason(tmp_path) -> None:
    receiver = AccessLogReceiver(str(tmp_path / "no-such-dir" / "access.sock"), AccessLogStats())
    receiver.start()
    with pytest.raises(SourceError, match="cannot open the syslog socket"):
        list(AccessLogCollector(receiver).collect())


def test_a_stale_socket_file_from_a_previous_run_is_replaced(tmp_path) -> None:
    path = tmp_path / "access.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as previous:
        previous.bind(str(path))
    receiver = AccessLogReceiver(str(path), AccessLogStats(), mode=0o620)
    receiver.start()
    try:
        assert receiver.running
        assert path.stat().st_mode & 0o777 == 0o620
    finally:
        receiver.stop()


# ---- per site (log field site, from the formula's map of "$server_port $server_name") ----------------


def site_datagrams(fixtures: Path) -> list[bytes]:
    return [line for line in (fixtures / "nginx_access_sites_syslog.txt").read_bytes().split(b"\n") if line]


def site_requests(stats: AccessLogStats) -> dict[tuple[str, str], float]:
    family = next(f for f in stats.families() if f.name == "proxytier_nginx_site_requests")
    return {(s.labels["site"], s.labels["status_class"]): s.value for s in family.samples if s.name.endswith("_total")}


def test_captured_lines_count_per_site_with_unclaimed_hosts_under_one_label(fixtures) -> None:
    """Real nginx lines (capture_nginx_sites.py): two host-routed sites, the 421 server, a request nginx
    refused as 400 before any location, and a site owning its port."""
    stats = AccessLogStats()
    for line in site_datagrams(fixtures):
        stats.observe_datagram(line)
    assert site_requests(stats) == {("www", "2xx"): 3, ("shop", "2xx"): 2, ("shop", "4xx"): 1,
                                    ("__unclaimed__", "4xx"): 2, ("app", "2xx"): 2}
    duration = next(f for f in stats.families() if f.name == "proxytier_nginx_site_request_duration_seconds")
    counts = {s.labels["site"]: s.value for s in duration.samples if s.name.endswith("_count")}
    assert counts == {"www": 3, "shop": 3, "__unclaimed__": 2, "app": 2}
    upstream = next(f for f in stats.families() if f.name == "proxytier_nginx_upstream_requests")
    assert {s.labels["upstream"] for s in upstream.samples} == {"up_www", "up_shop", "up_app"}


def test_lines_without_the_site_field_count_in_no_site_series(fixtures) -> None:
    """A configuration from before the field (the upstream fixture) keeps its upstream series only."""
    stats = AccessLogStats()
    for line in datagrams(fixtures):
        stats.observe_datagram(line)
    assert site_requests(stats) == {}
    assert parse_datagram(datagrams(fixtures)[0]).site is None
    assert parse_datagram(site_datagrams(fixtures)[6]).site == ""


def test_site_label_values_are_bounded_and_idle_ones_expire() -> None:
    now = [0.0]
    stats = AccessLogStats(max_upstreams=2, idle_expiry=3600, clock=lambda: now[0])
    for site in ("a", "b", "c", "", "a"):
        stats.observe(AccessLogEntry("", "2xx", 0.01, 0, site))
    assert site_requests(stats) == {("a", "2xx"): 2, ("b", "2xx"): 1, ("__other__", "2xx"): 2}
    now[0] = 3000.0
    stats.observe(AccessLogEntry("", "5xx", 0.01, 0, "a"))
    now[0] = 3700.0
    assert site_requests(stats) == {("a", "2xx"): 2, ("a", "5xx"): 1}  # b and __other__ idle: dropped
    stats.observe(AccessLogEntry("", "4xx", 0.01, 0, ""))  # the freed slot, not __other__
    assert site_requests(stats) == {("a", "2xx"): 2, ("a", "5xx"): 1, ("__unclaimed__", "4xx"): 1}
